"""Phases ``join`` and ``edges``: every candidate pair verified before it may join a cluster.

A band collision only says two documents *might* be similar (at Jaccard 0.7, 14 × 8 bands still collide 45% of
the time). Each candidate pair's Jaccard similarity is estimated from the documents' verification sketches (the
share of equal bins of two ``verify_bins`` one-permutation sketches; standard error about 0.018 at J = 0.8 with
512 bins) and only pairs at or above ``verify_threshold`` become edges. No process holds all sketches: pairs are
partitioned by their first document and joined with that partition's sketches (``join``), then re-partitioned by
the second document and joined again, verified and written as edges in both directions, partitioned by source
node for the connected components (``edges``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from refinery.dedup.minhash.bands import unique_pairs
from refinery.dedup.minhash.signatures import fixed_binary
from refinery.pipelines.partitions import IntermediateError, partition_of, read_partition, write_partitioned


def sketches_of(job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted document numbers, their sketches as a uint32 matrix) of one partition."""
    table = read_partition(job["sketches"], job["partition"], job["sketch_writers"])
    if table is None:
        return np.zeros(0, np.uint64), np.zeros((0, job["verify_bins"]), np.uint32)
    g = table.column("g").to_numpy()
    raw = table.column("sketch").combine_chunks()
    matrix = np.frombuffer(raw.buffers()[1], dtype=np.uint32)[raw.offset * job["verify_bins"] :]
    matrix = matrix[: len(g) * job["verify_bins"]].reshape(len(g), job["verify_bins"])
    order = np.argsort(g, kind="stable")
    return g[order], matrix[order]


def lookup(g: np.ndarray, sketch: np.ndarray, wanted: np.ndarray, path: str) -> np.ndarray:
    """Sketch rows of the ``wanted`` documents (every one must be present)."""
    index = np.searchsorted(g, wanted)
    index = np.minimum(index, max(len(g) - 1, 0))
    if len(wanted) and (len(g) == 0 or not np.array_equal(g[index], wanted)):
        raise IntermediateError(path, "a candidate's sketch is missing from its partition")
    return sketch[index]


def join_partition(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``join``: attach the first document's sketch, re-partition by the second document."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    a = table.column("a").to_numpy() if table is not None else np.zeros(0, np.uint64)
    b = table.column("b").to_numpy() if table is not None else np.zeros(0, np.uint64)
    a, b = unique_pairs(a, b)
    g, sketch = sketches_of(job)
    rows = pa.table(
        {"a": pa.array(a), "b": pa.array(b), "sketch_a": fixed_binary(lookup(g, sketch, a, job["sketches"]))}
    )
    write_partitioned(job["out"], job["writer"], rows, partition_of(b, job["partitions"]), job["partitions"])
    return {"candidates": len(a)}


def edge_partition(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``edges``: estimate each pair's Jaccard; keep the verified ones as edges in both directions."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    bins = job["verify_bins"]
    if table is None or table.num_rows == 0:
        a = b = np.zeros(0, np.uint64)
        estimate = np.zeros(0)
    else:
        a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
        raw = table.column("sketch_a").combine_chunks()
        sketch_a = np.frombuffer(raw.buffers()[1], dtype=np.uint32)[raw.offset * bins :][: len(a) * bins]
        g, sketch = sketches_of(job)
        sketch_b = lookup(g, sketch, b, job["sketches"])
        estimate = (sketch_a.reshape(len(a), bins) == sketch_b).mean(axis=1)
    verified = estimate >= job["verify_threshold"]
    src = np.concatenate([a[verified], b[verified]])
    dst = np.concatenate([b[verified], a[verified]])
    write_partitioned(
        job["out"],
        job["writer"],
        pa.table({"src": pa.array(src), "dst": pa.array(dst)}),
        partition_of(src, job["partitions"]),
        job["partitions"],
    )
    return {"candidates": len(a), "verified": int(verified.sum())}
