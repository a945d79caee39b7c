"""Phase ``pairs``: each band-key partition grouped into candidate pairs.

Rows (band key, document) of one partition are sorted by key and document; every key shared by two or more
documents is a bucket. A bucket of up to ``max_bucket_pairs + 1`` documents gives all its pairs; a larger one
(boilerplate pages, templated records) gives each document paired with its ``max_bucket_pairs`` predecessors and
with the bucket's first document, so the pairs stay linear in the bucket size while the bucket stays connected.
Pairs ``(a, b)`` have ``a < b`` (global document numbers) and are written partitioned by ``a`` for the join.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from refinery.pipelines.partitions import partition_of, read_partition, write_partitioned


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs, sorted."""
    if not len(a):
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.concatenate([[True], (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    return a[keep], b[keep]


def bucket_pairs(keys: np.ndarray, docs: np.ndarray, max_bucket_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs from (key, document) rows: see the module docstring."""
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    new = np.concatenate([[True], keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(new, np.arange(len(keys)), 0)) if len(keys) else np.zeros(0, np.int64)
    rank = np.arange(len(keys)) - start
    firsts, seconds = [], []
    for distance in range(1, max_bucket_pairs + 1):
        ok = rank[distance:] >= distance
        firsts.append(docs[:-distance][ok])
        seconds.append(docs[distance:][ok])
    far = rank > max_bucket_pairs
    firsts.append(docs[start[far]])
    seconds.append(docs[far])
    a = np.concatenate(firsts) if firsts else np.zeros(0, np.uint64)
    b = np.concatenate(seconds) if seconds else np.zeros(0, np.uint64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    same = a != b
    return unique_pairs(a[same], b[same])


def pair_partition(job: dict[str, Any]) -> dict[str, int]:
    """One band partition → its candidate pairs, partitioned by the first document."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    if table is None:
        a = b = np.zeros(0, np.uint64)
        rows = 0
    else:
        rows = table.num_rows
        a, b = bucket_pairs(table.column("key").to_numpy(), table.column("g").to_numpy(), job["max_bucket_pairs"])
    write_partitioned(
        job["out"],
        job["writer"],
        pa.table({"a": pa.array(a), "b": pa.array(b)}),
        partition_of(a, job["partitions"]),
        job["partitions"],
    )
    return {"band_rows": rows, "pairs": len(a)}
