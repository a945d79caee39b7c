"""``semantic_dedup``: SemDeDup on Ray, CPU by default. The phases, in order (one module each):

1. ``sample``     — a seeded, stratified sample of embeddings from the input shards (Ray map over shards);
2. ``kmeans``     — spherical k-means (faiss, seeded, one thread) on the sample → centroids (one Ray task);
3. ``assign``     — every document's nearest centroid and distance, hash-partitioned by cluster into files
                    (Ray map over shards);
4. ``similarity`` — per partition: inside each cluster, keep order, chunked pairwise cosine similarity, the
                    greedy SemDeDup rule for every ε of the report in one pass → per-shard decisions (Ray map
                    over partitions);
5. ``report``     — the summary JSON (cluster sizes, removals per ε, borderline pairs with text);

then :class:`~refinery.dedup.semantic.decision.SemanticDedupDecision` applies the decisions per shard:
removed documents are rejected as ``semantic_dedup:duplicate`` with ``semantic_duplicate_of`` naming the kept
document they duplicate; every document gets ``semantic_cluster`` and ``semantic_similarity`` (its highest
similarity to an earlier kept document of its cluster). Each phase records a marker with its inputs; a resumed
run skips finished phases, and every intermediate is validated against its writer's checksums when read.

Needs the ``embedding`` column (put ``embed`` before it). The added columns are prefixed ``semantic_`` so this
stage can run in the same recipe as the other dedup stages.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import pyarrow as pa
from pydantic import Field, field_validator

from refinery.dedup.embed import EMBEDDING
from refinery.dedup.semantic import assign, kmeans, report, sample, similarity
from refinery.dedup.semantic.decision import SemanticDedupDecision, semantic_columns
from refinery.pipelines import storage
from refinery.pipelines.documents import ID
from refinery.pipelines.partitions import PARTITION_BYTES, index_path, partition_count
from refinery.pipelines.stages import GlobalContext, GlobalStage, MapStage, register_stage

SUMMARY_FILE = "report/semantic_summary.json"


@register_stage("semantic_dedup")
class SemanticDedup(GlobalStage):
    """Remove documents whose embedding is within 1 − ε cosine similarity of a kept one in the same cluster."""

    n_clusters: int = Field(default=100, ge=1, le=10_000_000, description="k-means clusters (capped by the sample)")
    sample_size: int = Field(default=100_000, ge=10, description="embeddings k-means is fitted on")
    kmeans_iterations: int = Field(default=20, ge=1, le=1_000)
    epsilon: float = Field(default=0.05, gt=0.0, lt=1.0, description="remove above similarity 1 - epsilon")
    report_epsilons: list[float] = Field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1])
    keep: Literal["farthest_from_centroid", "quality_score"] = "farthest_from_centroid"
    partitions: int | None = Field(default=None, ge=1, le=65_536, description="cluster partitions; null: by size")
    partition_bytes: int = Field(default=PARTITION_BYTES, ge=1, description="input bytes per cluster partition")
    chunk_size: int = Field(default=2048, ge=16, le=65_536, description="rows per similarity block")
    examples: int = Field(default=8, ge=0, le=200, description="borderline pairs shown in the report")

    @field_validator("report_epsilons")
    @classmethod
    def _epsilons_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0.0 < e < 1.0 for e in value):
            raise ValueError("every epsilon must lie in (0, 1)")
        return value

    def added_columns(self) -> list[pa.Field]:
        return semantic_columns()

    def epsilons(self) -> list[float]:
        return sorted(set(self.report_epsilons) | {self.epsilon})

    def prepare(self, context: GlobalContext) -> MapStage:
        work = context.work_dir.rstrip("/")
        names = list(context.shard_names)
        paths = [context.input_path(name) for name in names]
        parts = partition_count(context, self.partitions, self.partition_bytes)
        shard_index_file = f"{work}/sample/index.json"
        if not context.phase_done("sample"):
            self._sample(context, names, paths, shard_index_file)
        shards = kmeans.read_json(shard_index_file)["shards"]
        if not any(s["rows"] for s in shards):  # nothing reached this stage: nothing to cluster or decide
            return SemanticDedupDecision(
                decisions=f"{work}/similarity",
                writers=[],
                first_ids={},
                shard_rows=[0] * len(shards),
                decisions_digest="empty",
            )
        centroids_file = f"{work}/kmeans/centroids.json"
        if not context.phase_done("kmeans"):
            samples = [(f"{work}/sample/{s['name']}.parquet", s["record"]) for s in shards]
            job = {
                "samples": samples,
                "n_clusters": self.n_clusters,
                "iterations": self.kmeans_iterations,
                "seed": context.seed,
                "out": f"{work}/kmeans/centroids.parquet",
            }
            (fit,) = context.map(kmeans.fit_centroids, [job])
            kmeans.write_json(centroids_file, fit)
            context.mark_phase_done("kmeans", outputs=["kmeans"])
        fit = kmeans.read_json(centroids_file)
        if not context.phase_done("assign"):
            jobs = [
                {
                    "path": path,
                    "centroids": f"{work}/kmeans/centroids.parquet",
                    "centroids_record": fit["record"],
                    "shard_index": position,
                    "partitions": parts,
                    "out": f"{work}/assign",
                    "writer": name,
                }
                for position, (name, path) in enumerate(zip(names, paths, strict=True))
            ]
            context.map(assign.assign_shard, jobs)
            context.mark_phase_done("assign", outputs=["assign/_index"])
        writers = [f"part-{p:05d}" for p in range(parts)]
        stats_file = f"{work}/similarity/stats.json"
        if not context.phase_done("similarity"):
            jobs = [
                {
                    "directory": f"{work}/assign",
                    "partition": p,
                    "writers": names,
                    "epsilons": self.epsilons(),
                    "epsilon": self.epsilon,
                    "keep": self.keep,
                    "chunk": self.chunk_size,
                    "examples": self.examples,
                    "out": f"{work}/similarity",
                    "writer": writers[p],
                    "shards": len(names),
                }
                for p in range(parts)
            ]
            merged = report.merge_stats(context.map(similarity.dedup_partition, jobs), self.epsilons(), self.examples)
            kmeans.write_json(stats_file, merged)
            context.mark_phase_done("similarity", outputs=["similarity/_index", "similarity/stats.json"])
        if not context.phase_done("report"):
            summary = {
                **kmeans.read_json(stats_file),
                "clusters": fit["clusters"],
                "sample_rows": fit["sample_rows"],
                "epsilon": self.epsilon,
                "keep": self.keep,
            }
            (summary,) = context.map(report.attach_snippets, [{"summary": summary, "paths": paths, "names": names}])
            kmeans.write_json(f"{work}/{SUMMARY_FILE}", summary)
            fs, section = storage.filesystem(f"{work}/report_section.html")  # included in the run report
            storage.write_bytes_atomic(fs, section, report.semantic_report_html(summary).encode())
            context.mark_phase_done("report", outputs=["report", "report_section.html"])
        return SemanticDedupDecision(
            decisions=f"{work}/similarity",
            writers=writers,
            first_ids={s["first_id"]: i for i, s in enumerate(shards) if s["first_id"] is not None},
            shard_rows=[s["rows"] for s in shards],
            decisions_digest=_indexes_digest(f"{work}/similarity", writers),
        )

    def _sample(self, context: GlobalContext, names: list[str], paths: list[str], index_file: str) -> None:
        required = [ID, EMBEDDING] + (["quality_score"] if self.keep == "quality_score" else [])
        facts = context.map(sample.shard_facts, [{"path": p, "required": required} for p in paths])
        missing = sorted({c for f in facts for c in f["missing"]})
        if missing:
            hint = " (put the `embed` stage before semantic_dedup)" if EMBEDDING in missing else ""
            raise ValueError(f"semantic_dedup: the input lacks column(s) {missing}{hint}")
        quotas = sample.quotas([f["rows"] for f in facts], self.sample_size)
        work = context.work_dir.rstrip("/")
        jobs = [
            {"path": p, "seed": context.seed, "quota": q, "out": f"{work}/sample/{n}.parquet"}
            for n, p, q in zip(names, paths, quotas, strict=True)
        ]
        records = context.map(sample.sample_shard, jobs)
        shards = [
            {"name": n, "rows": f["rows"], "first_id": f["first_id"], "quota": q, "record": r}
            for n, f, q, r in zip(names, facts, quotas, records, strict=True)
        ]
        kmeans.write_json(index_file, {"shards": shards})
        context.mark_phase_done("sample", outputs=["sample"])


def _indexes_digest(directory: str, writers: list[str]) -> str:
    digest = hashlib.sha256()
    for writer in writers:
        fs, inner = storage.filesystem(index_path(directory, writer))
        with fs.open(inner, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()
