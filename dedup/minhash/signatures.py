"""Phase ``signatures``: word 5-gram shingles and MinHash signatures of whole batches (compiled loops).

Shingling (documented, and what the benchmark's ground truth uses): the text is FineWeb-normalised
(:mod:`refinery.dedup.normalise`), split on spaces into words, and every run of ``ngram`` consecutive words is a
shingle; a document with fewer words than ``ngram`` (but at least one) is one shingle of all its words; a
document with no word has no signature and is never a duplicate. A word has a seeded 64-bit universal hash; a
shingle's 64-bit hash is the splitmix64 finaliser of a weighted sum of its words' hashes (a distinct odd
constant per position). The loops are in :mod:`.kernels` (numba).

Signature: **one-permutation hashing with optimal densification** (Li et al. 2012; Shrivastava 2017) instead of
``k`` independent permutations. Each shingle hash falls in one of ``k`` bins (by its high bits) and each bin keeps
its minimum; an empty bin copies the bin found by a fixed probe sequence (the same for every document). For two
documents, each bin's values agree with probability equal to their Jaccard similarity, as with ``k`` permutations,
but the cost is one pass over the shingles instead of ``k``: this is how the stage beats rensa's compiled
``k``-permutation kernel. (rensa was not used as the kernel: its digests are 32-bit and it hashes
its own tokens, so its shingling and hashing could not match the documented 64-bit scheme.)

Two sketches come from the same shingles: the LSH signature (``bands × rows`` 64-bit values, banded into
candidate keys) and a larger verification sketch (``verify_bins`` values of 16 bits, from an independent
rehash), whose share of equal bins estimates the Jaccard similarity of a candidate pair (standard error 0.0125
at J = 0.8 with 1,024 bins; see :mod:`.candidates` for the cut).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.dedup.keyed import QUALITY, read_columns
from refinery.dedup.minhash.kernels import shingle_sketches
from refinery.dedup.minhash.words import word_hashes
from refinery.pipelines import storage
from refinery.pipelines.documents import DATE, DATE_TYPE, ID, SOURCE, TEXT
from refinery.pipelines.partitions import partition_of, splitmix64, write_partitioned

CHUNK_DOCUMENTS = 1_000
_POSITION = splitmix64(np.arange(1, 65, dtype=np.uint64)) | np.uint64(1)
_VERIFY_SALT = np.uint64(0x9E3779B97F4A7C15)


def sketches(texts: pa.Array, ngram: int, seed: int, lsh_bins: int, verify_bins: int) -> tuple:
    """(LSH signature uint64 (n, lsh_bins), verification sketch uint16 (n, verify_bins), has-words mask)."""
    words, parent = word_hashes(texts, seed)
    counts = np.bincount(parent, minlength=len(texts)).astype(np.int64)
    lsh, verify = shingle_sketches(
        words, counts, ngram, np.uint64(seed), _POSITION[:ngram], _VERIFY_SALT, lsh_bins, verify_bins
    )
    return lsh, (verify & np.uint64(0xFFFF)).astype(np.uint16), counts > 0


def band_keys(signature: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) 64-bit keys: each band's ``rows`` values and the band's index hashed together."""
    keys = np.zeros((signature.shape[0], bands), np.uint64)
    with np.errstate(over="ignore"):
        for band in range(bands):
            acc = np.full(signature.shape[0], np.uint64(band + 1) * np.uint64(0xD6E8FEB86659FD93), np.uint64)
            for r in range(rows):
                acc = splitmix64(acc ^ signature[:, band * rows + r])
            keys[:, band] = acc
    return keys


def fixed_binary(matrix: np.ndarray) -> pa.Array:
    """Rows of a 2-D array as a fixed-size binary column (zero-copy in, one buffer out)."""
    matrix = np.ascontiguousarray(matrix)
    width = matrix.shape[1] * matrix.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(matrix), [None, pa.py_buffer(matrix.tobytes())])


def shard_sketches(job: dict[str, Any], shard: int, path: str) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """One shard's band keys (``key``, ``g``) and sketches with metadata (``g``, ``sketch``, ``id``, ...)."""
    bands, rows = job["bands"], job["rows"]
    meta = read_columns(path, [ID, SOURCE, DATE, QUALITY])
    fs, inner = storage.filesystem(path)
    band_parts, sketch_parts, keep_parts = [], [], []
    with fs.open(inner, "rb") as handle:
        offset = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=CHUNK_DOCUMENTS, columns=[TEXT]):
            lsh, verify, has = sketches(batch.column(0), job["ngram"], job["seed"], bands * rows, job["verify_bins"])
            g = (np.uint64(shard) << np.uint64(32)) + np.arange(offset, offset + batch.num_rows, dtype=np.uint64)
            keys = band_keys(lsh[has], bands, rows)
            band_parts.append((keys.reshape(-1), np.repeat(g[has], bands)))
            sketch_parts.append((g[has], verify[has]))
            keep_parts.append(has)
            offset += batch.num_rows
    key = np.concatenate([k for k, _ in band_parts]) if band_parts else np.zeros(0, np.uint64)
    band_g = np.concatenate([g for _, g in band_parts]) if band_parts else np.zeros(0, np.uint64)
    sketch_g = np.concatenate([g for g, _ in sketch_parts]) if sketch_parts else np.zeros(0, np.uint64)
    verify_all = (
        np.concatenate([v for _, v in sketch_parts]) if sketch_parts else np.zeros((0, job["verify_bins"]), np.uint16)
    )
    has_all = np.concatenate(keep_parts) if keep_parts else np.zeros(0, bool)
    meta_columns = document_metadata(meta).filter(pa.array(has_all))
    sketch_table = pa.table({"g": pa.array(sketch_g, pa.uint64()), "sketch": fixed_binary(verify_all)})
    for name in meta_columns.column_names:
        sketch_table = sketch_table.append_column(name, meta_columns.column(name))
    stats = {"documents": meta.num_rows, "sketched": int(has_all.sum()), "quality": QUALITY in meta.column_names}
    return pa.table({"key": pa.array(key, pa.uint64()), "g": pa.array(band_g, pa.uint64())}), sketch_table, stats


def signature_group(job: dict[str, Any]) -> dict[str, Any]:
    """Sketch a group of consecutive shards (``job["members"]``: shard index and path each) as one writer.

    Band keys and sketches (with each document's metadata) are hash-partitioned once for the whole group, in
    shard order, so a partition holds the same rows in the same order as with one writer per shard, and the
    reduce phases read one file per group instead of one per shard.
    """
    partitions = job["partitions"]
    band_tables, sketch_tables, stats = [], [], []
    for member in job["members"]:
        bands_table, sketch_table, shard_stats = shard_sketches(job, member["shard"], member["path"])
        band_tables.append(bands_table)
        sketch_tables.append(sketch_table)
        stats.append(shard_stats)
    bands_all = pa.concat_tables(band_tables)
    sketch_all = pa.concat_tables(sketch_tables, promote_options="permissive")
    write_partitioned(
        job["bands_dir"],
        job["writer"],
        bands_all,
        partition_of(bands_all.column("key").to_numpy(), partitions),
        partitions,
    )
    write_partitioned(
        job["sketch_dir"],
        job["writer"],
        sketch_all,
        partition_of(sketch_all.column("g").to_numpy(), partitions),
        partitions,
    )
    return {
        "documents": sum(s["documents"] for s in stats),
        "sketched": sum(s["sketched"] for s in stats),
        "quality": any(s["quality"] for s in stats),
        "shards": len(stats),
    }


#: What the ``drops`` phase needs of a clustered document to choose its component's keeper and report it.
METADATA = (ID, SOURCE, DATE, QUALITY)


def document_metadata(meta: pa.Table) -> pa.Table:
    """``id``, ``source``, ``date`` and ``quality_score`` of a shard's documents (nulls for absent columns).

    Stored beside each document's verification sketch (same partition, same row): the ``join`` and ``edges``
    phases read the sketches anyway, so the metadata of the documents that become edges travels with them to
    ``clusters``, which then reads one small file per edge writer instead of one per input shard.
    """
    rows = meta.num_rows
    date = meta.column(DATE).cast(DATE_TYPE) if DATE in meta.column_names else pa.nulls(rows, DATE_TYPE)
    quality = meta.column(QUALITY).cast(pa.float64()) if QUALITY in meta.column_names else pa.nulls(rows, pa.float64())
    return pa.table({ID: meta.column(ID), SOURCE: meta.column(SOURCE), DATE: date, QUALITY: quality})
