"""Phases ``components-rNN`` and ``clusters``: connected components with no process holding all edges.

The verified edges are stored in both directions, partitioned by source node. Rounds alternate the two steps of
Kiveris et al.'s *Connected Components in MapReduce and Beyond* (2014), each a Ray map with one task per
partition that sees every edge of its source nodes and nothing else:

* **large-star** (even rounds): for each node ``u`` with smallest neighbour-or-self ``m(u)``, every neighbour
  ``v > u`` is linked to ``m(u)``;
* **small-star** (odd rounds): for each node ``u``, its neighbours ``v < u`` and ``u`` itself are linked to the
  smallest of them.

The new edges are written (both directions) partitioned by source node for the next round. Each task returns
an order-free hash of the distinct edges it read; when a large-star/small-star pair leaves the edge set as it was
the graph is a forest of stars whose centres are the components' smallest nodes, and the rounds stop (their
count is recorded). Memory per task is one partition of edges. ``clusters`` then labels each node with its
star's centre and joins the document's metadata (id, source, date, quality_score; written beside the edges by
the ``edges`` phase), re-partitioned by label so one task sees each whole component.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from refinery.dedup.minhash.bands import unique_pairs
from refinery.pipelines.documents import DATE, ID, SOURCE
from refinery.pipelines.partitions import (
    IntermediateError,
    partition_of,
    read_partition,
    splitmix64,
    write_partitioned,
)

QUALITY = "quality_score"


def read_edges(job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    table = read_partition(job["in"], job["partition"], job["writers"])
    if table is None:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    return unique_pairs(table.column("src").to_numpy(), table.column("dst").to_numpy())


def edge_set_hash(src: np.ndarray, dst: np.ndarray) -> int:
    """Order-free hash of a set of directed edges (sum of mixed pairs mod 2**64)."""
    with np.errstate(over="ignore"):
        return int(np.sum(splitmix64(splitmix64(src) ^ dst), dtype=np.uint64))


def smallest_neighbour(src: np.ndarray, dst: np.ndarray, only_smaller: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per edge, the minimum over its source's neighbours (optionally only those below the source) and itself."""
    candidate = np.where(dst < src, dst, src) if only_smaller else np.minimum(dst, src)
    if not len(src):
        return candidate, candidate
    starts = np.flatnonzero(np.concatenate([[True], src[1:] != src[:-1]]))
    minimum = np.minimum.reduceat(candidate, starts)
    return minimum[np.repeat(np.arange(len(starts)), np.diff(np.concatenate([starts, [len(src)]])))], starts


def star_round(job: dict[str, Any]) -> dict[str, Any]:
    """One large-star or small-star step over one partition (edges sorted by source by ``read_edges``)."""
    src, dst = read_edges(job)
    before = edge_set_hash(src, dst)
    if job["step"] == "large":
        m, _ = smallest_neighbour(src, dst, only_smaller=False)
        chosen = dst > src
        new_a, new_b = dst[chosen], m[chosen]
    else:
        m, starts = smallest_neighbour(src, dst, only_smaller=True)
        chosen = dst < src
        nodes = src[starts]
        node_m = m[starts]
        new_a = np.concatenate([dst[chosen], nodes])
        new_b = np.concatenate([m[chosen], node_m])
    keep = new_a != new_b
    new_a, new_b = new_a[keep], new_b[keep]
    out_src, out_dst = np.concatenate([new_a, new_b]), np.concatenate([new_b, new_a])
    write_partitioned(
        job["out"],
        job["writer"],
        pa.table({"src": pa.array(out_src, pa.uint64()), "dst": pa.array(out_dst, pa.uint64())}),
        partition_of(out_src, job["partitions"]),
        job["partitions"],
    )
    return {"edges_in": len(src), "hash_in": str(before)}


def label_partition(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``clusters``: each node's component label joined with its metadata, partitioned by label.

    The metadata comes from the ``edges`` phase's ``nodes`` (written by the few edge tasks), not from the
    signatures' per-shard files: a task here reads a file per partition, not one per input shard.
    """
    src, dst = read_edges(job)
    m, starts = smallest_neighbour(src, dst, only_smaller=False)
    nodes, labels = src[starts] if len(src) else src, m[starts] if len(src) else m
    meta = read_partition(job["meta"], job["partition"], job["meta_writers"]) if len(nodes) else None
    if meta is None:
        if len(nodes):
            raise IntermediateError(
                job["meta"], f"no metadata for the {len(nodes)} nodes of partition {job['partition']}"
            )
        table = pa.table({"label": pa.array([], pa.uint64()), "g": pa.array([], pa.uint64())})
        rows = table
    else:
        g = meta.column("g").to_numpy()
        order = np.argsort(g, kind="stable")
        position = np.minimum(np.searchsorted(g, nodes, sorter=order), len(g) - 1)
        index = order[position]
        if not np.array_equal(g[index], nodes):
            raise IntermediateError(job["meta"], "a clustered document's metadata is missing")
        picked = meta.take(pa.array(index))
        rows = pa.table(
            {
                "label": pa.array(labels),
                "g": pa.array(nodes),
                ID: picked.column(ID),
                SOURCE: picked.column(SOURCE),
                DATE: picked.column(DATE),
                QUALITY: picked.column(QUALITY),
            }
        )
    write_partitioned(
        job["out"],
        job["writer"],
        rows,
        partition_of(rows.column("label").to_numpy(), job["partitions"]),
        job["partitions"],
    )
    return {"nodes": len(nodes)}
