"""Phase 3 (per partition): SemDeDup's rule inside every cluster, for several ε in one pass.

Inside a cluster, documents are put in keep order (``farthest_from_centroid``: SemDeDup's default, most
distant from the centroid first; or ``quality_score``: highest first; ties by distance, then id). A document is
removed when its cosine similarity to an **earlier kept** document exceeds ``1 − ε``; it then names the most
similar earlier kept document as ``duplicate_of``.

What is computed, precisely (:func:`cluster_decisions`): for every ε of the report and every document ``j``,
``best[ε, j] = max over earlier documents i kept under ε of sim(i, j)``. ``j`` is removed under ε exactly when
``best[ε, j] > 1 − ε``. This is the exact greedy rule for each ε, not an approximation: the similarity blocks
(document chunk × earlier chunk) are computed once, and each ε only masks the columns of documents it removed
before taking the row maximum, which is cheap next to the matrix product (a comparison per pair against 384
multiply-adds). Within a chunk, only documents with an earlier in-chunk neighbour above the threshold are
decided one by one (their neighbours' fates are known by then); all others are decided by vectors.
``any_max[j]`` = max similarity to *any* earlier document is recorded too: removing where it exceeds 1 − ε is
what SemDeDup's reference code does (a superset of the greedy rule: a document close only to a removed one is
removed as well), and the report shows both counts.

Memory: one cluster's embeddings (float32) and one ``chunk × chunk`` block per ε; never an n × n matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.dedup.embed import EMBEDDING, embedding_matrix
from refinery.dedup.semantic.assign import CLUSTER, DISTANCE, QUALITY, ROW, SHARD
from refinery.dedup.semantic.kmeans import unit_rows
from refinery.pipelines.documents import ID
from refinery.pipelines.partitions import read_partition, write_partitioned

DUPLICATE_OF, SIMILARITY = "duplicate_of", "similarity"


@dataclass
class ClusterDecisions:
    """Per ε (rows) and document in keep order (columns)."""

    kept: np.ndarray  # bool (E, n)
    best: np.ndarray  # float32 (E, n): max similarity to an earlier document kept under ε; -inf if none
    best_index: np.ndarray  # int64 (E, n): position of that document; -1 if none
    any_max: np.ndarray  # float32 (n,): max similarity to any earlier document; -inf for the first


def cluster_decisions(vectors: np.ndarray, thresholds: np.ndarray, chunk: int = 2048) -> ClusterDecisions:
    """SemDeDup's greedy rule for each threshold (1 − ε) over unit ``vectors`` already in keep order."""
    n, count = len(vectors), len(thresholds)
    kept = np.zeros((count, n), dtype=bool)
    best = np.full((count, n), -np.inf, dtype=np.float32)
    best_index = np.full((count, n), -1, dtype=np.int64)
    any_max = np.full(n, -np.inf, dtype=np.float32)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        rows = np.arange(b - a)
        block_rows = vectors[a:b]
        for s in range(0, a, chunk):
            sims = block_rows @ vectors[s : s + chunk].T
            np.maximum(any_max[a:b], sims.max(axis=1), out=any_max[a:b])
            for e in range(count):
                _take_better(best[e, a:b], best_index[e, a:b], np.where(kept[e, s : s + chunk], sims, -np.inf), s, rows)
        sims = np.where(np.tri(b - a, k=-1, dtype=bool), block_rows @ block_rows.T, -np.inf).astype(np.float32)
        in_chunk_max = sims.max(axis=1)
        np.maximum(any_max[a:b], in_chunk_max, out=any_max[a:b])
        for e, threshold in enumerate(thresholds):
            keep = best[e, a:b] <= threshold
            for j in np.flatnonzero(keep & (in_chunk_max > threshold)):
                if np.any(sims[j, :j][keep[:j]] > threshold):
                    keep[j] = False
            kept[e, a:b] = keep
            _take_better(best[e, a:b], best_index[e, a:b], np.where(keep[None, :], sims, -np.inf), a, rows)
    return ClusterDecisions(kept, best, best_index, any_max)


def _take_better(best: np.ndarray, index: np.ndarray, sims: np.ndarray, offset: int, rows: np.ndarray) -> None:
    """Update running row maxima (and where they are) from a block whose columns start at ``offset``."""
    column = sims.argmax(axis=1)
    value = sims[rows, column]
    better = value > best
    best[better] = value[better]
    index[better] = offset + column[better]


def keep_order(table: pa.Table, keep: str) -> np.ndarray:
    """Row order: by cluster, then the keep policy, then distance (farthest first), then id."""
    ids = np.array(table.column(ID).to_pylist(), dtype=object).astype(str)
    distance = table.column(DISTANCE).to_numpy()
    cluster = table.column(CLUSTER).to_numpy()
    keys = [ids, -distance]
    if keep == "quality_score":
        quality = table.column(QUALITY).to_numpy(zero_copy_only=False).astype(np.float64)
        keys.append(-np.nan_to_num(quality, nan=-np.inf))
    keys.append(cluster)
    return np.lexsort(keys)


def dedup_partition(job: dict[str, Any]) -> dict[str, Any]:
    """Decide every document of one cluster partition; write per-shard decisions; return report material."""
    table = read_partition(job["directory"], job["partition"], job["writers"])
    epsilons = job["epsilons"]
    thresholds = np.array([1.0 - e for e in epsilons], dtype=np.float64)
    decide = epsilons.index(job["epsilon"])
    stats: dict[str, Any] = {
        "documents": 0,
        "clusters": [],
        "removed": [0] * len(epsilons),
        "removed_any": [0] * len(epsilons),
        "examples": {"removed": [], "kept": []},
    }
    if table is None:  # no cluster hashed here: still write an (empty) index so readers can check every writer
        write_partitioned(job["out"], job["writer"], _decisions_schema().empty_table(), np.array([]), job["shards"])
        return stats
    if job["keep"] == "quality_score" and table.column(QUALITY).null_count == table.num_rows:
        raise ValueError("semantic_dedup keep: quality_score needs a quality_score column (run a scorer before it)")
    examples: dict[str, list[dict[str, Any]]] = {"removed": [], "kept": []}
    table = table.take(pa.array(keep_order(table, job["keep"])))
    vectors = unit_rows(embedding_matrix(table.column(EMBEDDING)))
    clusters = table.column(CLUSTER).to_numpy()
    ids = table.column(ID).to_pylist()
    duplicate_of: list[str | None] = [None] * table.num_rows
    similarity = np.full(table.num_rows, np.nan, dtype=np.float32)
    bounds = np.flatnonzero(np.diff(clusters)) + 1
    for start, end in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(clusters)].tolist(), strict=True):
        result = cluster_decisions(vectors[start:end], thresholds, job["chunk"])
        stats["clusters"].append([int(clusters[start]), end - start])
        for e, threshold in enumerate(thresholds):
            stats["removed"][e] += int((~result.kept[e]).sum())
            stats["removed_any"][e] += int((result.any_max > threshold).sum())
        best, where = result.best[decide], result.best_index[decide]
        finite = np.isfinite(best)
        similarity[start:end][finite] = best[finite]
        for j in np.flatnonzero(~result.kept[decide]):
            duplicate_of[start + j] = ids[start + where[j]]
        _collect_examples(examples, result, decide, start, job["examples"])
    stats["documents"] = table.num_rows
    decisions = pa.table(
        [
            table.column(ID),
            table.column(CLUSTER),
            pa.array(duplicate_of, pa.string()),
            pa.array(similarity, pa.float32(), mask=np.isnan(similarity)),
            table.column(SHARD),
            table.column(ROW),
        ],
        schema=_decisions_schema(),
    )
    write_partitioned(job["out"], job["writer"], decisions, decisions.column(SHARD).to_numpy(), job["shards"])
    located = {k: [_locate(table, item) for item in items] for k, items in examples.items()}
    stats["examples"] = located
    return stats


def _decisions_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field(ID, pa.string()),
            pa.field(CLUSTER, pa.int32()),
            pa.field(DUPLICATE_OF, pa.string()),
            pa.field(SIMILARITY, pa.float32()),
            pa.field(SHARD, pa.int32()),
            pa.field(ROW, pa.int64()),
        ]
    )


def _collect_examples(examples: dict[str, list], result: ClusterDecisions, decide: int, start: int, limit: int) -> None:
    """Keep the ``limit`` borderline pairs: removed with the lowest similarity, kept with the highest."""
    best, where, kept = result.best[decide], result.best_index[decide], result.kept[decide]
    removed = np.flatnonzero(~kept)
    near = np.flatnonzero(kept & np.isfinite(best))
    for name, chosen in (
        ("removed", removed[np.argsort(best[removed], kind="stable")][:limit]),
        ("kept", near[np.argsort(-best[near], kind="stable")][:limit]),
    ):
        for j in chosen.tolist():
            examples[name].append({"similarity": float(best[j]), "doc": start + j, "other": start + int(where[j])})
    for name, reverse in (("removed", False), ("kept", True)):
        examples[name].sort(key=lambda item: item["similarity"], reverse=reverse)
        del examples[name][limit:]


def _locate(table: pa.Table, item: dict[str, Any]) -> dict[str, Any]:
    """An example's two documents as (id, shard, row), the cluster and the similarity."""

    def where(position: int) -> dict[str, Any]:
        return {
            "id": table.column(ID)[position].as_py(),
            "shard": table.column(SHARD)[position].as_py(),
            "row": table.column(ROW)[position].as_py(),
        }

    return {
        "similarity": round(item["similarity"], 6),
        "cluster": table.column(CLUSTER)[item["doc"]].as_py(),
        "doc": where(item["doc"]),
        "other": where(item["other"]),
    }
