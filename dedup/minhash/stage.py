"""``minhash_dedup``: near-duplicate documents removed by MinHash-LSH, verified pairs, distributed components.

The phases, in order (each a Ray map with a marker and validated partitioned files under ``work/PHASE/``):

1. ``signatures`` — per group of consecutive shards holding about 16 MB of input (one writer each, so a
   reduce task reads a file per group, not per shard): word 5-gram shingles, an 18 × 6
   one-permutation MinHash signature banded into band keys and a 1,024-bin verification sketch stored with
   the document's metadata, each hash-partitioned (:mod:`.signatures`);
2. ``pairs`` — per band partition: documents sharing a band key become candidate pairs (:mod:`.bands`);
3. ``join``, ``edges`` — per partition: each candidate pair verified by its estimated Jaccard similarity
   (``verify_threshold`` less ``recall_margin`` standard errors of the estimate); verified pairs become edges,
   and their documents' metadata ``nodes`` for ``clusters`` (:mod:`.candidates`);
4. ``components-r00``, ``-r01``, … — large-star / small-star rounds over edge partitions until the edge set no
   longer changes; ``clusters`` — every node labelled with its component (:mod:`.components`);
5. ``drops`` — per component, a keeper by ``keep``; the others dropped, per shard (:mod:`.apply`);
6. ``summary`` — cluster counts, size histogram, removals per source and a few removed/kept pairs with
   snippets, in ``work/summary/minhash_clusters.json`` (rendered by :func:`refinery.dedup.report.dedup_report_html`).

The decision stage then rejects ``minhash_dedup:duplicate`` with ``minhash_duplicate_of`` (the keeper's id) and
writes ``minhash_cluster`` (the keeper's id) on every clustered document. The documents removed do not depend on
the number of workers or of partitions.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, PrivateAttr

from refinery.dedup.decisions import check_decision_list, write_shard_list
from refinery.dedup.minhash.apply import CLUSTER, DUPLICATE, MinhashDecision, drop_partition
from refinery.dedup.minhash.bands import pair_partition
from refinery.dedup.minhash.candidates import edge_partition, join_partition, verification_cut
from refinery.dedup.minhash.components import label_partition, star_round
from refinery.dedup.minhash.signatures import signature_group
from refinery.dedup.phases import phase_dir, run_phase, writer_name, writers
from refinery.dedup.report import cluster_summary, dedup_report_html
from refinery.dedup.shard_groups import bytes_per_group, shard_group_jobs
from refinery.pipelines import storage
from refinery.pipelines.partitions import PARTITION_BYTES, partition_count
from refinery.pipelines.stages import GlobalContext, GlobalStage, register_stage

MAX_ROUNDS = 200
#: Clustered documents per partition of the ``clusters`` and ``drops`` phases (~150 bytes each in memory).
DROP_ROWS_PER_PARTITION = 2**20


#: Input bytes per ``signatures`` writer at most: what one task holds (about 20x this in sketches and copies).
SIGNATURE_GROUP_BYTES = 16 * 2**20


def signature_group_bytes(total_bytes: int, partition_bytes: int) -> int:
    """Input bytes per ``signatures`` writer: ``SIGNATURE_GROUP_BYTES`` (or ``partition_bytes`` if smaller), less
    when that would leave CPUs idle.

    Fewer writers mean fewer files for every reduce task to read (a task reads one per writer), but a writer's
    task holds its group's sketches (64 MB of input: 1.3 GB of task memory at 64x), and the phase needs at least
    two groups per CPU of the session to keep them busy (one group per shard at most).
    """
    return bytes_per_group(total_bytes, partition_bytes, SIGNATURE_GROUP_BYTES)


def drop_partition_count(final_edges: int, partitions: int) -> int:
    """How many partitions the drop lists are written by: from the clustered documents, not the corpus.

    Why: every shard's decision reads its drop list from each writer of the ``drops`` phase, so with one writer
    per corpus partition a shard's cost grew with the corpus (2 files per shard at 8x, 12 at 64x, 65,536 at the
    cap). Only clustered documents reach these phases (at most twice the edges of the converged star forest),
    so their count sets the partitions: one at the sizes the tests and benchmarks run, and never more than the
    stage's own count.
    """
    return max(1, min(partitions, -(-2 * final_edges // DROP_ROWS_PER_PARTITION)))


@register_stage("minhash_dedup")
class MinhashDedup(GlobalStage):
    """Remove near-duplicates: MinHash-LSH candidates, verified, clustered by distributed connected components."""

    ngram: int = Field(default=5, ge=1, le=64)
    # 18 x 6: a pair at J = 0.8 collides in some band with probability 0.996 (14 x 8: 0.924)
    bands: int = Field(default=18, ge=1)
    rows: int = Field(default=6, ge=1)
    verify_bins: int = Field(default=1024, ge=16, description="bins of the verification sketch (16 bits each)")
    verify_threshold: float = Field(default=0.8, ge=0.0, le=1.0, description="target Jaccard of a duplicate pair")
    recall_margin: float = Field(
        default=2.5, ge=0.0, le=10.0, description="standard errors of the estimate the cut lies below the target"
    )
    max_bucket_pairs: int = Field(default=16, ge=1, description="pairs per document inside one large LSH bucket")
    keep: Literal["auto", "recent", "smallest_id"] = "auto"
    num_partitions: int | None = Field(default=None, ge=1, le=65_536, description="null: from partition_bytes")
    partition_bytes: int = Field(default=PARTITION_BYTES, ge=1, description="input bytes per partition")
    _partitions: int = PrivateAttr(default=1)  # the count prepare() derived for this run

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(DUPLICATE, pa.string()), pa.field(CLUSTER, pa.string())]

    def _reduce_jobs(
        self,
        source: str,
        writer_count: int,
        out: str,
        tasks: int | None = None,
        outputs: int | None = None,
        **extra: Any,
    ) -> list[dict[str, Any]]:
        """One job per input partition (``tasks``, default the stage's count), each writing ``outputs`` partitions."""
        tasks = tasks or self._partitions
        return [
            {
                "partition": k,
                "in": source,
                "writers": writers(writer_count),
                "out": out,
                "writer": writer_name(k),
                "partitions": outputs or self._partitions,
                **extra,
            }
            for k in range(tasks)
        ]

    def prepare(self, context: GlobalContext) -> MinhashDecision:
        shards_file, shards_sha = write_shard_list(context)
        parts = self._partitions = partition_count(context, self.num_partitions, self.partition_bytes)
        shards = len(context.shard_names)
        signatures = {name: phase_dir(context, "signatures", name) for name in ("bands", "sketches")}
        jobs = shard_group_jobs(
            context,
            self.partition_bytes,
            sizing=signature_group_bytes,
            partitions=parts,
            bands=self.bands,
            rows=self.rows,
            ngram=self.ngram,
            verify_bins=self.verify_bins,
            seed=context.seed,
            bands_dir=signatures["bands"],
            sketch_dir=signatures["sketches"],
        )
        sketched = run_phase(context, "signatures", signature_group, jobs, partitioned=list(signatures))
        groups_written = len(sketched)  # from the phase's results: a resumed run reads what was written

        pairs_dir = phase_dir(context, "pairs", "rows")
        pair_jobs = self._reduce_jobs(
            signatures["bands"], groups_written, pairs_dir, max_bucket_pairs=self.max_bucket_pairs
        )
        run_phase(context, "pairs", pair_partition, pair_jobs, partitioned=["rows"])

        sketch_args = {
            "sketches": signatures["sketches"],
            "sketch_writers": writers(groups_written),
            "verify_bins": self.verify_bins,
        }
        join_dir, edges_dir = phase_dir(context, "join", "rows"), phase_dir(context, "edges", "rows")
        nodes_dir = phase_dir(context, "edges", "nodes")
        run_phase(
            context, "join", join_partition, self._reduce_jobs(pairs_dir, parts, join_dir, **sketch_args), ["rows"]
        )
        cut = verification_cut(self.verify_threshold, self.verify_bins, self.recall_margin)
        edge_jobs = self._reduce_jobs(join_dir, parts, edges_dir, verify_cut=cut, nodes=nodes_dir, **sketch_args)
        verified = run_phase(context, "edges", edge_partition, edge_jobs, partitioned=["rows", "nodes"])

        current, hashes, rounds = edges_dir, [], 0
        for rounds in range(MAX_ROUNDS):
            if len(hashes) >= 3 and hashes[-1] == hashes[-3]:
                break  # the last large-star / small-star pair changed nothing: a forest of stars
            out = phase_dir(context, f"components-r{rounds:02d}", "rows")
            step = "large" if rounds % 2 == 0 else "small"
            results = run_phase(
                context,
                f"components-r{rounds:02d}",
                star_round,
                self._reduce_jobs(current, parts, out, step=step),
                ["rows"],
            )
            hashes.append((sum(int(r["hash_in"]) for r in results) % 2**64, sum(r["edges_in"] for r in results)))
            current = out
        else:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
        final = phase_dir(context, f"components-r{rounds - 2:02d}", "rows") if rounds >= 2 else edges_dir

        members_dir, drops_dir = phase_dir(context, "clusters", "rows"), phase_dir(context, "drops", "rows")
        drop_parts = drop_partition_count(hashes[max(rounds - 1, 0)][1] if hashes else 0, parts)
        label_jobs = self._reduce_jobs(
            final, parts, members_dir, outputs=drop_parts, meta=nodes_dir, meta_writers=writers(parts)
        )
        run_phase(context, "clusters", label_partition, label_jobs, partitioned=["rows"])
        drop_jobs = self._reduce_jobs(
            members_dir, parts, drops_dir, tasks=drop_parts, shards=max(shards, 1), keep=self.keep
        )
        stats = run_phase(context, "drops", drop_partition, drop_jobs, partitioned=["rows"])
        context.map(
            check_decision_list,
            [{"directory": drops_dir, "shard": i, "writers": writers(drop_parts)} for i in range(shards)],
        )
        if not context.phase_done("summary"):
            summary = cluster_summary(
                stats,
                context,
                extra={
                    "documents": sum(s["documents"] for s in sketched),
                    "candidate_pairs": sum(v["candidates"] for v in verified),
                    "verified_pairs": sum(v["verified"] for v in verified),
                    "verify_cut": f"{cut} of {self.verify_bins} bins equal",
                    "component_rounds": rounds,
                    "removed_by_source": dict(sum((Counter(s["removed_by_source"]) for s in stats), Counter())),
                },
            )
            fs, root = storage.filesystem(phase_dir(context, "summary", "minhash_clusters.json"))
            storage.write_json_atomic(fs, root, summary)
            section = storage.join(root.rsplit("/", 2)[0], "report_section.html")
            storage.write_bytes_atomic(fs, section, dedup_report_html(summary).encode())  # in the run report
            context.mark_phase_done("summary", outputs=["summary/minhash_clusters.json", "report_section.html"])
        return MinhashDecision(
            shards_file=shards_file, shards_sha256=shards_sha, drops_dir=drops_dir, partitions=drop_parts
        )
