"""The per-shard half of ``semantic_dedup``: reject the documents phase 3 removed, label the rest's cluster.

The runner hands a map stage batches of one shard at a time, in file order, without naming the shard. The
decision stage recognises a shard by its first document id (recorded by the sample phase) and then loads that
shard's decisions, validated against their writers' checksums, into an id-keyed lookup; every later batch is
looked up by id, so batch boundaries never matter, and an id without a decision is an error, never a silent
keep. Memory: one shard's decisions (a few dozen bytes per document).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import PrivateAttr

from refinery.dedup.semantic.assign import CLUSTER
from refinery.dedup.semantic.similarity import DUPLICATE_OF, SIMILARITY
from refinery.pipelines.documents import ID
from refinery.pipelines.partitions import read_partition
from refinery.pipelines.stages import MapStage, StageResult, split_by_mask

SEMANTIC_CLUSTER = "semantic_cluster"
SEMANTIC_DUPLICATE_OF = "semantic_duplicate_of"
SEMANTIC_SIMILARITY = "semantic_similarity"


def semantic_columns() -> list[pa.Field]:
    return [
        pa.field(SEMANTIC_CLUSTER, pa.int32()),
        pa.field(SEMANTIC_DUPLICATE_OF, pa.string()),
        pa.field(SEMANTIC_SIMILARITY, pa.float32()),
    ]


class SemanticDedupDecision(MapStage):
    """Applies the drop lists of phase 3 to one shard at a time."""

    stage_name = "semantic_dedup"
    decisions: str
    writers: list[str]
    first_ids: dict[str, int]  # first document id of each non-empty shard -> shard index
    shard_rows: list[int]
    decisions_digest: str  # sha256 of the decision indexes: a new decision gives a new segment fingerprint

    _shard: int | None = PrivateAttr(default=None)
    _lookup: Any = PrivateAttr(default=None)
    _positions: dict[str, int] = PrivateAttr(default_factory=dict)

    def added_columns(self) -> list[pa.Field]:
        return semantic_columns()

    def _load(self, shard: int) -> None:
        table = read_partition(self.decisions, shard, self.writers, columns=[ID, CLUSTER, DUPLICATE_OF, SIMILARITY])
        if table is None or table.num_rows != self.shard_rows[shard]:
            found = 0 if table is None else table.num_rows
            raise RuntimeError(f"semantic_dedup: shard {shard} has {self.shard_rows[shard]} rows, {found} decisions")
        self._lookup = table
        self._positions = {doc_id: position for position, doc_id in enumerate(table.column(ID).to_pylist())}
        self._shard = shard

    def process(self, batch: pa.Table) -> StageResult:
        if batch.num_rows == 0:  # no id to find the shard by, and nothing to decide
            return split_by_mask(batch, np.ones(0, dtype=bool), [])
        first = batch.column(ID)[0].as_py()
        if first in self.first_ids and self.first_ids[first] != self._shard:
            self._load(self.first_ids[first])
        if self._lookup is None:
            raise RuntimeError("semantic_dedup: a batch that does not start a known shard came first")
        try:
            positions = [self._positions[doc_id] for doc_id in batch.column(ID).to_pylist()]
        except KeyError as missing:
            raise RuntimeError(f"semantic_dedup: document {missing} has no decision in shard {self._shard}") from None
        rows = self._lookup.take(pa.array(positions, pa.int64()))
        duplicate = rows.column(DUPLICATE_OF)
        annotated = (
            batch.append_column(semantic_columns()[0], rows.column(CLUSTER))
            .append_column(semantic_columns()[1], duplicate)
            .append_column(semantic_columns()[2], rows.column(SIMILARITY))
        )
        keep = np.asarray(pc.is_null(duplicate).to_numpy(zero_copy_only=False), dtype=bool)
        reasons = [None if k else self.reason("duplicate") for k in keep]
        return split_by_mask(annotated, keep, reasons)
