"""The stage skeleton shared by ``url_dedup`` and ``exact_dedup``: phases ``keys`` → ``groups`` → drop lists.

``keys`` runs a task (and a writer) per group of consecutive shards (:mod:`refinery.dedup.shard_groups`);
``groups`` reads as many writers as the ``keys`` phase recorded results, so a resumed run reads what was written.

See :mod:`refinery.dedup.keyed` for what each phase computes. The decision stage rejects the dropped documents
with the stage's rule and writes the id of the kept twin into the stage's ``*_duplicate_of`` column (one column
per dedup stage: a recipe runs several dedup stages and a column may be added only once).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
from pydantic import Field

from refinery.dedup.decisions import ShardDecider, check_decision_list, write_shard_list
from refinery.dedup.keyed import DUPLICATE, apply_drops, drop_lookup, group_partition, key_group, merge_stats
from refinery.dedup.phases import phase_dir, run_phase, writer_name, writers
from refinery.dedup.shard_groups import shard_group_jobs
from refinery.pipelines import storage
from refinery.pipelines.partitions import KEY_MIN_PARTITIONS, KEY_PARTITION_BYTES, partition_count
from refinery.pipelines.stages import GlobalContext, GlobalStage, StageResult, split_by_mask


class KeyedDecision(ShardDecider):
    """Per shard: reject the documents on the shard's drop list, naming their kept twin."""

    rule: ClassVar[str] = "duplicate"
    column: ClassVar[str] = DUPLICATE
    drops_dir: str
    partitions: int

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.string())]

    def load(self, shard_index: int) -> Any:
        return drop_lookup(self.drops_dir, shard_index, writers(self.partitions), [DUPLICATE])

    def counters(self, batch: pa.Table) -> dict[str, int]:
        return {}

    def decide(self, batch: pa.Table, data: Any) -> StageResult:
        keep, (duplicate_of,) = apply_drops(batch, data, [DUPLICATE])
        result = split_by_mask(
            batch.append_column(self.column, duplicate_of), keep, [self.reason(self.rule)] * len(keep)
        )
        result.counters = self.counters(batch)
        return result


class KeyedDedup(GlobalStage):
    """Base of the exact-key dedup stages; subclasses say how a document is keyed."""

    decision: ClassVar[type[KeyedDecision]]
    num_partitions: int | None = Field(
        default=None, ge=1, le=65_536, description="hash partitions of the key shuffle; null: from partition_bytes"
    )
    partition_bytes: int = Field(default=KEY_PARTITION_BYTES, ge=1, description="input bytes per partition")

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(self.decision.column, pa.string())]

    def key_job(self) -> dict[str, Any]:
        raise NotImplementedError

    def keep_rule(self) -> str:
        raise NotImplementedError

    def prepare(self, context: GlobalContext) -> KeyedDecision:
        shards_file, shards_sha = write_shard_list(context)
        keys_dir, drops_dir = phase_dir(context, "keys", "rows"), phase_dir(context, "groups", "drops")
        parts = partition_count(context, self.num_partitions, self.partition_bytes, KEY_MIN_PARTITIONS)
        jobs = shard_group_jobs(
            context, self.partition_bytes, out=keys_dir, partitions=parts, seed=context.seed, **self.key_job()
        )
        keyed = run_phase(context, "keys", key_group, jobs, partitioned=["rows"])
        groups_written = len(keyed)  # from the phase's results: a resumed run reads what was written
        group_jobs = [
            {
                "partition": k,
                "in": keys_dir,
                "writers": writers(groups_written),
                "out": drops_dir,
                "writer": writer_name(k),
                "shards": max(len(context.shard_names), 1),
                "keep": self.keep_rule(),
            }
            for k in range(parts)
        ]
        stats = merge_stats(run_phase(context, "groups", group_partition, group_jobs, partitioned=["drops"]))
        check = [
            {"directory": drops_dir, "shard": i, "writers": writers(parts)} for i in range(len(context.shard_names))
        ]
        context.map(check_decision_list, check)
        fs, work = storage.filesystem(context.work_dir)
        storage.write_json_atomic(fs, storage.join(work, "groups", "summary.json"), {"stage": self.stage_name, **stats})
        return self.decision(
            shards_file=shards_file,
            shards_sha256=shards_sha,
            drops_dir=drops_dir,
            partitions=parts,
            **self.decision_fields(),
        )

    def decision_fields(self) -> dict[str, Any]:
        """Extra parameters the decision stage needs."""
        return {}
