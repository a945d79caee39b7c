"""Dedup by an exact key (a normalised URL, a text hash): the shared phases of ``url_dedup`` and ``exact_dedup``.

1. ``keys`` (a Ray task per group of consecutive shards, one writer each: see :mod:`refinery.dedup.shard_groups`):
   each document's 128-bit key, hash-partitioned with :func:`refinery.pipelines.partitions.write_partitioned`
   together with what the keeper rule needs (id, date, ``quality_score`` when the column exists, source, shard
   index);
2. ``groups`` (a Ray task per partition): rows sorted by key and then by the keeper rule; the first row of each
   key is kept, every other is dropped with the id of that keeper; the drops are written partitioned by shard
   index, so each shard's drop list is one partition (see :mod:`refinery.dedup.decisions`).

Memory per task is one input shard and its group's key rows, or one partition. The kept document of a key
depends only on the rows, never on the number of partitions, groups or workers (ties are broken by id).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.dedup.normalise import hash128, normalise
from refinery.dedup.url_normalise import normalise_urls
from refinery.pipelines import storage
from refinery.pipelines.documents import DATE, DATE_TYPE, ID, SOURCE, TEXT, URL
from refinery.pipelines.partitions import partition_of, read_partition, write_partitioned

QUALITY = "quality_score"
DUPLICATE = "duplicate_of"


def keeper_sort_keys(rule: str, columns: list[str]) -> list[tuple[str, str]]:
    """Sort keys that put the document to keep first among its duplicates.

    ``auto``: highest ``quality_score`` when the column exists, else the most recent ``date``, ties by smallest
    id; ``recent``: most recent date, then smallest id; ``smallest_id``: smallest id.
    """
    keys: list[tuple[str, str]] = []
    if rule == "auto" and QUALITY in columns:
        keys.append((QUALITY, "descending"))
    if rule in ("auto", "recent") and DATE in columns:
        keys.append((DATE, "descending"))
    return [*keys, (ID, "ascending")]


def read_columns(path: str, wanted: list[str]) -> pa.Table:
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        present = [c for c in wanted if c in parquet.schema_arrow.names]
        return parquet.read(columns=present)


def keys_of(table: pa.Table, job: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, has_key) 128-bit keys of a shard's documents for the job's key kind."""
    if job["key"] == "url":
        urls = normalise_urls(table.column(URL).to_pylist(), keep_query=job["keep_query"], unify_http=True)
        has_key = np.array([u is not None for u in urls], dtype=bool)
        high, low = hash128(pa.array([u or "" for u in urls], pa.large_string()), job["seed"])
        return high, low, has_key
    texts = normalise(table.column(TEXT), job["normalisation"])
    high, low = hash128(texts, job["seed"])
    return high, low, np.ones(table.num_rows, dtype=bool)


def shard_key_rows(job: dict[str, Any], shard: int, path: str) -> tuple[pa.Table, dict[str, int]]:
    """One shard's key rows (what ``groups`` needs of each keyed document) and its counts."""
    wanted = [ID, SOURCE, DATE, QUALITY, URL if job["key"] == "url" else TEXT]
    table = read_columns(path, wanted)
    high, low, has_key = keys_of(table, job)
    rows = pa.table(
        {
            "k1": pa.array(high[has_key]),
            "k2": pa.array(low[has_key]),
            ID: table.column(ID).filter(pa.array(has_key)),
            SOURCE: table.column(SOURCE).filter(pa.array(has_key)),
            DATE: (table.column(DATE) if DATE in table.column_names else pa.nulls(table.num_rows, DATE_TYPE))
            .cast(DATE_TYPE)
            .filter(pa.array(has_key)),
            QUALITY: (
                table.column(QUALITY) if QUALITY in table.column_names else pa.nulls(table.num_rows, pa.float64())
            )
            .cast(pa.float64())
            .filter(pa.array(has_key)),
            "shard": pa.array(np.full(int(has_key.sum()), shard, dtype=np.int32)),
        }
    )
    return rows, {"rows": table.num_rows, "keyed": int(has_key.sum()), "quality": QUALITY in table.column_names}


def key_group(job: dict[str, Any]) -> dict[str, Any]:
    """Phase ``keys``: key a group of consecutive shards (``job["members"]``) and hash-partition them as one writer.

    Each shard is read and keyed alone (a task holds one shard's text and its group's small key rows); the rows
    are partitioned once for the group, in shard order, so a partition holds the same rows in the same order as
    with one writer per shard and ``groups`` decides the same, reading one file per group instead of per shard.
    """
    tables, stats = [], []
    for member in job["members"]:
        rows, shard_stats = shard_key_rows(job, member["shard"], member["path"])
        tables.append(rows)
        stats.append(shard_stats)
    rows = pa.concat_tables(tables)
    keys = rows.column("k1").to_numpy()
    write_partitioned(job["out"], job["writer"], rows, partition_of(keys, job["partitions"]), job["partitions"])
    return {
        "rows": sum(s["rows"] for s in stats),
        "keyed": sum(s["keyed"] for s in stats),
        "quality": any(s["quality"] for s in stats),
        "shards": len(stats),
    }


def group_partition(job: dict[str, Any]) -> dict[str, Any]:
    """Phase ``groups``: keep the first document of each key by the keeper rule, drop the rest per shard."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    stats: dict[str, Any] = {"keys": 0, "duplicate_keys": 0, "removed": 0, "removed_by_source": {}}
    if table is None or table.num_rows == 0:
        drops = pa.table({ID: pa.array([], pa.string()), DUPLICATE: pa.array([], pa.string())})
        write_partitioned(job["out"], job["writer"], drops, np.zeros(0, np.int64), job["shards"])
        return stats
    columns = [c for c in (QUALITY, DATE) if table.column(c).null_count < table.num_rows]
    sort = [("k1", "ascending"), ("k2", "ascending"), *keeper_sort_keys(job["keep"], columns)]
    table = table.sort_by(sort)
    k1, k2 = table.column("k1").to_numpy(), table.column("k2").to_numpy()
    first = np.ones(table.num_rows, dtype=bool)
    first[1:] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
    keeper_row = np.maximum.accumulate(np.where(first, np.arange(table.num_rows), 0))
    dropped = ~first
    ids = table.column(ID)
    drops = pa.table(
        {
            ID: ids.filter(pa.array(dropped)),
            DUPLICATE: ids.take(pa.array(keeper_row[dropped])),
        }
    )
    shards = table.column("shard").to_numpy()[dropped]
    write_partitioned(job["out"], job["writer"], drops, shards, job["shards"])
    sources = table.column(SOURCE).filter(pa.array(dropped)).to_pylist()
    stats.update(
        keys=int(first.sum()),
        duplicate_keys=int(np.unique(keeper_row[dropped]).size),
        removed=int(dropped.sum()),
        removed_by_source=dict(Counter(sources)),
    )
    return stats


def merge_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-partition statistics of ``groups``."""
    total: dict[str, Any] = {"keys": 0, "duplicate_keys": 0, "removed": 0, "removed_by_source": Counter()}
    for result in results:
        for name in ("keys", "duplicate_keys", "removed"):
            total[name] += result[name]
        total["removed_by_source"].update(result["removed_by_source"])
    total["removed_by_source"] = dict(sorted(total["removed_by_source"].items()))
    return total


def drop_lookup(directory: str, shard: int, writers: list[str], columns: list[str]) -> dict[str, tuple]:
    """One shard's drop list as ``{id: (column values...)}``."""
    table = read_partition(directory, shard, writers)
    if table is None:
        return {}
    values = [table.column(c).to_pylist() for c in columns]
    return {row[0]: row[1:] for row in zip(table.column(ID).to_pylist(), *values, strict=True)}


def apply_drops(batch: pa.Table, drops: dict[str, tuple], columns: list[str]) -> tuple[np.ndarray, list[pa.Array]]:
    """(keep mask, one string column per name in ``columns``) for ``batch`` under a shard's drop list."""
    found = [drops.get(i) for i in batch.column(ID).to_pylist()]
    keep = np.array([f is None for f in found], dtype=bool)
    arrays = [pa.array([None if f is None else f[n] for f in found], pa.string()) for n in range(len(columns))]
    return keep, arrays
