"""Phase 1a: a seeded, stratified sample of embeddings to fit k-means on.

Each shard contributes a quota proportional to its rows (largest-remainder rounding, ties by shard name), and
inside a shard the rows with the smallest ``xxh64(seed, id)`` are taken. The sample therefore depends only on
the seed and the documents (never on the number of workers or on task order), and a shard's choice is stable
when other shards change size. The driver only holds row counts; each shard task writes its sample to a
checked file (:func:`refinery.pipelines.partitions.write_checked`) that the k-means task validates on read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from refinery.dedup.embed import EMBEDDING
from refinery.pipelines import storage
from refinery.pipelines.documents import ID
from refinery.pipelines.partitions import write_checked


def shard_facts(job: dict[str, Any]) -> dict[str, Any]:
    """Row count (from the Parquet footer), first document id and schema check of one input shard."""
    fs, path = storage.filesystem(job["path"])
    with fs.open(path, "rb") as handle:
        reader = pq.ParquetFile(handle)
        rows = reader.metadata.num_rows
        names = reader.schema_arrow.names
        first = None
        if rows:
            first = next(reader.iter_batches(batch_size=1, columns=[ID])).column(0)[0].as_py()
    missing = [c for c in job["required"] if c not in names]
    return {"rows": rows, "first_id": first, "missing": missing}


def quotas(rows: list[int], sample_size: int) -> list[int]:
    """Per-shard sample sizes summing to ``min(sample_size, sum(rows))``, proportional to ``rows``."""
    total = sum(rows)
    if total <= sample_size:
        return list(rows)
    exact = np.array(rows, dtype=np.float64) * sample_size / total
    base = np.floor(exact).astype(np.int64)
    remainder = exact - base
    extra = sample_size - int(base.sum())
    order = np.lexsort((np.arange(len(rows)), -remainder))  # largest remainder first, ties by position
    base[order[:extra]] += 1
    return np.minimum(base, np.array(rows, dtype=np.int64)).tolist()


def priorities(ids: list[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random 64-bit priority per document id (the smallest are sampled)."""
    prefix = f"{seed}:".encode()
    return np.fromiter((xxhash.xxh64_intdigest(prefix + i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def sample_shard(job: dict[str, Any]) -> dict[str, Any]:
    """Write ``quota`` sampled embeddings of one shard (rows in file order) and return the file's record."""
    fs, path = storage.filesystem(job["path"])
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle, columns=[ID])
        ids = table.column(ID).to_pylist()
        chosen = np.sort(np.argsort(priorities(ids, job["seed"]), kind="stable")[: job["quota"]])
        handle.seek(0)
        vectors = pq.read_table(handle, columns=[EMBEDDING]).column(EMBEDDING).take(pa.array(chosen))
    sample = pa.table({ID: table.column(ID).take(pa.array(chosen)), EMBEDDING: vectors})
    return write_checked(job["out"], sample)
