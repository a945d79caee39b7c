"""Phase ``drops`` and the decision: one keeper per component, per-shard drop lists, rejection per shard.

Per component (one task sees whole components: members are partitioned by label) the keeper is the first member
by the ``keep`` rule (:func:`refinery.dedup.keyed.keeper_sort_keys`: highest ``quality_score`` when the column
exists, else most recent ``date``, ties by smallest id). Every member gets the cluster's name (the keeper's id);
the others are dropped naming the keeper. Rows are written partitioned by shard index, so the decision stage
reads only its shard's list. Each task also returns its clusters' size histogram, removals per source and the
first few (kept, removed) pairs by label, for the cluster summary.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from refinery.dedup.decisions import ShardDecider
from refinery.dedup.keyed import apply_drops, drop_lookup, keeper_sort_keys
from refinery.dedup.phases import writers
from refinery.pipelines.documents import ID, SOURCE
from refinery.pipelines.partitions import read_partition, write_partitioned
from refinery.pipelines.stages import StageResult, split_by_mask

DUPLICATE = "minhash_duplicate_of"
CLUSTER = "minhash_cluster"
EXAMPLES_PER_TASK = 5


def drop_partition(job: dict[str, Any]) -> dict[str, Any]:
    table = read_partition(job["in"], job["partition"], job["writers"])
    stats: dict[str, Any] = {"clusters": 0, "sizes": {}, "removed": 0, "removed_by_source": {}, "examples": []}
    if table is None or table.num_rows == 0:
        empty = pa.table({ID: pa.array([], pa.string()), DUPLICATE: pa.array([], pa.string())})
        empty = empty.append_column(CLUSTER, pa.array([], pa.string()))
        write_partitioned(job["out"], job["writer"], empty, np.zeros(0, np.int64), job["shards"])
        return stats
    columns = [c for c in ("quality_score", "date") if table.column(c).null_count < table.num_rows]
    table = table.sort_by([("label", "ascending"), *keeper_sort_keys(job["keep"], columns)])
    label = table.column("label").to_numpy()
    first = np.concatenate([[True], label[1:] != label[:-1]])
    keeper = np.maximum.accumulate(np.where(first, np.arange(table.num_rows), 0))
    ids = table.column(ID)
    keeper_ids = ids.take(pa.array(keeper))
    rows = pa.table({ID: ids, DUPLICATE: pc_where(~first, keeper_ids), CLUSTER: keeper_ids})
    shards = (table.column("g").to_numpy() >> np.uint64(32)).astype(np.int64)
    write_partitioned(job["out"], job["writer"], rows, shards, job["shards"])
    sizes = np.bincount(keeper)[np.flatnonzero(first)]
    stats["clusters"] = int(first.sum())
    stats["sizes"] = {str(k): int(v) for k, v in sorted(Counter(sizes.tolist()).items())}
    stats["removed"] = int((~first).sum())
    stats["removed_by_source"] = dict(Counter(table.column(SOURCE).filter(pa.array(~first)).to_pylist()))
    g = table.column("g").to_numpy()
    size_of = np.bincount(keeper, minlength=table.num_rows)[keeper]
    for row in np.flatnonzero(~first & (np.arange(table.num_rows) == keeper + 1))[:EXAMPLES_PER_TASK].tolist():
        kept = int(keeper[row])
        stats["examples"].append(
            {
                "label": int(label[row]),
                "size": int(size_of[row]),
                "kept": {"id": ids[kept].as_py(), "g": int(g[kept])},
                "removed": {"id": ids[row].as_py(), "g": int(g[row])},
            }
        )
    return stats


def pc_where(mask: np.ndarray, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` where ``mask`` is true, null elsewhere."""
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), values, pa.scalar(None, pa.string()))


class MinhashDecision(ShardDecider):
    """Per shard: reject the documents on the shard's drop list; name every clustered document's cluster."""

    stage_name = "minhash_dedup"
    columns: ClassVar[list[str]] = [DUPLICATE, CLUSTER]
    drops_dir: str
    partitions: int

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(DUPLICATE, pa.string()), pa.field(CLUSTER, pa.string())]

    def load(self, shard_index: int) -> Any:
        return drop_lookup(self.drops_dir, shard_index, writers(self.partitions), [DUPLICATE, CLUSTER])

    def decide(self, batch: pa.Table, data: Any) -> StageResult:
        _, (duplicate_of, cluster) = apply_drops(batch, data, [DUPLICATE, CLUSTER])
        keep = np.asarray(duplicate_of.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        table = batch.append_column(DUPLICATE, duplicate_of).append_column(CLUSTER, cluster)
        return split_by_mask(table, keep, [self.reason("duplicate")] * len(keep))
