"""Phases ``join`` and ``edges``: every candidate pair verified before it may join a cluster.

A band collision only says two documents *might* be similar (at Jaccard 0.7, 18 × 6 bands collide 90% of the
time; the 14 × 8 layout used before collided 56% of the time). Each candidate pair's Jaccard similarity is
estimated from the documents' verification sketches: the share of equal bins of two ``verify_bins``
one-permutation sketches, each bin keeping the low 16 bits of its minimum (b-bit MinHash, Li & König 2010: two
different minima agree by chance with probability 2**-16, which raises the estimate by at most 0.00002).

The cut is below the target so that pairs *at* the target are kept: with ``k`` bins the estimate of a pair at
Jaccard ``t`` has standard error ``sqrt(t (1 - t) / k)`` (0.0125 at t = 0.8, k = 1,024), and a cut at exactly
``t`` keeps only half of them. :func:`verification_cut` places it ``recall_margin`` standard errors below ``t``
(2.5 by default: 99.4% of pairs at J = 0.80 pass, pairs at J = 0.70 are 5.6 standard errors below the cut and
essentially never do). No process holds all sketches: pairs are partitioned by their first document and joined
with that partition's sketches (``join``), then re-partitioned by the second document and joined again,
verified and written as edges in both directions, partitioned by source node for the connected components
(``edges``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.dedup.minhash.bands import unique_pairs
from refinery.dedup.minhash.signatures import METADATA, fixed_binary
from refinery.pipelines.partitions import IntermediateError, partition_of, read_partition, write_partitioned


def verification_cut(threshold: float, bins: int, recall_margin: float) -> int:
    """The least number of equal bins (of ``bins``) that makes a pair an edge: ``recall_margin`` standard errors
    of the estimate below ``threshold``."""
    standard_error = math.sqrt(threshold * (1.0 - threshold) / bins)
    return max(1, math.ceil((threshold - recall_margin * standard_error) * bins - 1e-9))


def sketches_of(job: dict[str, Any], metadata: bool = False) -> tuple[np.ndarray, np.ndarray, pa.Table | None]:
    """(sorted document numbers, their sketches as a uint16 matrix, their metadata in the same order or None)."""
    columns = None if metadata else ["g", "sketch"]
    table = read_partition(job["sketches"], job["partition"], job["sketch_writers"], columns=columns)
    if table is None:
        empty = pa.table({name: pa.array([], pa.string()) for name in METADATA}) if metadata else None
        return np.zeros(0, np.uint64), np.zeros((0, job["verify_bins"]), np.uint16), empty
    g = table.column("g").to_numpy()
    raw = table.column("sketch").combine_chunks()
    matrix = np.frombuffer(raw.buffers()[1], dtype=np.uint16)[raw.offset * job["verify_bins"] :]
    matrix = matrix[: len(g) * job["verify_bins"]].reshape(len(g), job["verify_bins"])
    order = np.argsort(g, kind="stable")
    meta = table.select(list(METADATA)).take(pa.array(order)) if metadata else None
    return g[order], matrix[order], meta


def lookup_rows(g: np.ndarray, wanted: np.ndarray, path: str) -> np.ndarray:
    """Row numbers in sorted ``g`` of the ``wanted`` documents (every one must be present)."""
    index = np.searchsorted(g, wanted)
    index = np.minimum(index, max(len(g) - 1, 0))
    if len(wanted) and (len(g) == 0 or not np.array_equal(g[index], wanted)):
        raise IntermediateError(path, "a candidate's sketch is missing from its partition")
    return index


def lookup(g: np.ndarray, sketch: np.ndarray, wanted: np.ndarray, path: str) -> np.ndarray:
    """Sketch rows of the ``wanted`` documents (every one must be present)."""
    return sketch[lookup_rows(g, wanted, path)]


def join_partition(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``join``: attach the first document's sketch and metadata, re-partition by the second document."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    a = table.column("a").to_numpy() if table is not None else np.zeros(0, np.uint64)
    b = table.column("b").to_numpy() if table is not None else np.zeros(0, np.uint64)
    a, b = unique_pairs(a, b)
    g, sketch, meta = sketches_of(job, metadata=True)
    rows_a = lookup_rows(g, a, job["sketches"])
    rows = pa.table({"a": pa.array(a), "b": pa.array(b), "sketch_a": fixed_binary(sketch[rows_a])})
    picked = meta.take(pa.array(rows_a, pa.int64()))
    for name in METADATA:
        rows = rows.append_column(f"{name}_a", picked.column(name))
    write_partitioned(job["out"], job["writer"], rows, partition_of(b, job["partitions"]), job["partitions"])
    return {"candidates": len(a)}


def edge_partition(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``edges``: pairs with ``verify_cut`` or more equal sketch bins become edges, in both directions.

    The metadata of every document on a verified edge is written too (``nodes``, one row per document,
    partitioned like the edges' sources), for ``clusters`` to join without reading a file per input shard.
    """
    table = read_partition(job["in"], job["partition"], job["writers"])
    bins = job["verify_bins"]
    g, sketch, meta = sketches_of(job, metadata=True)
    if table is None or table.num_rows == 0:
        a = b = np.zeros(0, np.uint64)
        equal = np.zeros(0, np.int64)
        meta_a = meta_b = meta.slice(0, 0)
    else:
        a, b = table.column("a").to_numpy(), table.column("b").to_numpy()
        raw = table.column("sketch_a").combine_chunks()
        sketch_a = np.frombuffer(raw.buffers()[1], dtype=np.uint16)[raw.offset * bins :][: len(a) * bins]
        rows_b = lookup_rows(g, b, job["sketches"])
        equal = (sketch_a.reshape(len(a), bins) == sketch[rows_b]).sum(axis=1)
        meta_a = table.select([f"{name}_a" for name in METADATA]).rename_columns(list(METADATA))
        meta_b = meta.take(pa.array(rows_b, pa.int64()))
    verified = equal >= job["verify_cut"]
    src = np.concatenate([a[verified], b[verified]])
    dst = np.concatenate([b[verified], a[verified]])
    write_partitioned(
        job["out"],
        job["writer"],
        pa.table({"src": pa.array(src), "dst": pa.array(dst)}),
        partition_of(src, job["partitions"]),
        job["partitions"],
    )
    mask = pa.array(verified)
    nodes = pa.concat_tables([meta_a.filter(mask), meta_b.filter(mask)]) if len(a) else meta_a
    nodes = nodes.add_column(0, "g", pa.array(src, pa.uint64()))
    nodes, node_g = unique_nodes(nodes)
    write_partitioned(job["nodes"], job["writer"], nodes, partition_of(node_g, job["partitions"]), job["partitions"])
    return {"candidates": len(a), "verified": int(verified.sum())}


def unique_nodes(nodes: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """One row per document number (the first), sorted by it: a document is on many edges."""
    g = nodes.column("g").to_numpy()
    unique, first = np.unique(g, return_index=True)
    return nodes.take(pa.array(first, pa.int64())), unique
