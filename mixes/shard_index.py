"""Step 1 of a mix: one small index per input shard (bucket, tokens, two seeded keys per document).

A task per final kept shard of the run reads only ``id``, the bucket column(s) and ``n_tokens`` (or ``text``
when the run has no ``n_tokens``, counted with the same code as the ``token_count`` stage), and writes
``_work/index/NNNNN.parquet``: ``row`` (position in the input file), ``bucket``, ``n_tokens``, ``heldout_key``
and ``sample_key``. The keys are 64-bit hashes of the document id salted with a seed:

* ``heldout_key`` (``heldout_seed``): a document is held out iff its key is below ``fraction * 2**64`` (and, if a
  bucket's held-out set is capped, below the cap's cutoff), so held-out sets depend on the ids and the held-out
  seed only, never on the weights: every mix of one run is evaluated on the same documents;
* ``sample_key`` (``seed``): the order in which a down-sampled bucket, or the last partial epoch of an
  up-sampled one, takes its documents.

Every later decision reads these indexes, never the documents, and no process holds more than one shard's
index: the driver gets per-bucket histograms of the keys (4,096 bins of counts and tokens) and finds each
cutoff exactly by reading back only the documents of one bin.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from refinery.pipelines import storage
from refinery.pipelines.documents import ID, TEXT

from .buckets import BUCKET, bucket_labels
from .token_count import N_TOKENS, cached_tokenizer, count_tokens

BINS = 4096
BIN_SHIFT = np.uint64(64 - 12)
KEY_SPACE = 1 << 64
INDEX_SCHEMA = pa.schema(
    [
        pa.field("row", pa.int64()),
        pa.field(BUCKET, pa.string()),
        pa.field(N_TOKENS, pa.int64()),
        pa.field("heldout_key", pa.uint64()),
        pa.field("sample_key", pa.uint64()),
    ]
)


def seeded_keys(ids: list[str], salt: str) -> np.ndarray:
    """A uniform 64-bit key per id (xxh3 of ``salt`` and the id): the same on every machine and run."""
    prefix = salt.encode() + b"\x00"
    return np.fromiter((xxhash.xxh3_64_intdigest(prefix + i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def heldout_salt(heldout_seed: int) -> str:
    return f"refinery-heldout-{heldout_seed}"


def sample_salt(seed: int) -> str:
    return f"refinery-sample-{seed}"


def fraction_cutoff(fraction: float) -> int:
    """The key below which a ``fraction`` of uniform 64-bit keys fall."""
    return min(KEY_SPACE, round(fraction * KEY_SPACE))


def below(keys: np.ndarray, cutoff: int) -> np.ndarray:
    """``keys < cutoff`` where the cutoff may be 2**64 (everything)."""
    if cutoff >= KEY_SPACE:
        return np.ones(len(keys), dtype=bool)
    return keys < np.uint64(cutoff)


def file_sha256(path: str) -> tuple[int, str]:
    """(bytes, sha256) of a file through fsspec: the spine's one file digest."""
    return storage.file_digest(path)


def index_shard(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 1 for one input shard: write its index (unless a marker says it is current); return its summary.

    ``job``: ``path`` (input Parquet), ``sha256`` (what the run recorded when it wrote the file, or None: then
    the file is hashed here), ``index_path``, ``marker_path``, ``columns``, ``tokenizer``, ``seed``,
    ``heldout_seed``, ``fingerprint`` (of everything but the file's bytes).
    """
    if job.get("sha256"):
        input_fs, input_inner = storage.filesystem(job["path"])
        size, sha = int(input_fs.size(input_inner)), job["sha256"]
    else:
        size, sha = file_sha256(job["path"])
    fingerprint = hashlib.sha256(f"{job['fingerprint']}:{sha}".encode()).hexdigest()[:16]
    fs, marker = storage.filesystem(job["marker_path"])
    done = storage.read_marker(job["marker_path"], fingerprint)
    index_fs, index = storage.filesystem(job["index_path"])
    if done is not None and index_fs.exists(index):
        return done["summary"]
    in_fs, inner = storage.filesystem(job["path"])
    with in_fs.open(inner, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        missing = [c for c in job["columns"] if c not in names]
        if missing:
            raise ValueError(f"{job['path']}: bucket column(s) {missing} not in the run's output (columns: {names})")
        has_tokens = N_TOKENS in names
        wanted = [ID, *dict.fromkeys(job["columns"]), N_TOKENS if has_tokens else TEXT]
        pieces = []
        for group in range(parquet.num_row_groups):  # one row group at a time: text never all in memory
            table = parquet.read_row_group(group, columns=list(dict.fromkeys(wanted)))
            if has_tokens:
                tokens = pc.fill_null(table.column(N_TOKENS), 0).cast(pa.int64())
            else:
                tokens = pa.array(count_tokens(cached_tokenizer(job["tokenizer"]), table.column(TEXT)), pa.int64())
            pieces.append(
                table.select([ID])
                .append_column(BUCKET, bucket_labels(table, job["columns"]))
                .append_column(N_TOKENS, tokens)
            )
    table = (
        pa.concat_tables(pieces)
        if pieces
        else pa.table(
            {ID: pa.array([], pa.string()), BUCKET: pa.array([], pa.string()), N_TOKENS: pa.array([], pa.int64())}
        )
    )
    ids = table.column(ID).to_pylist()
    index = pa.Table.from_arrays(
        [
            pa.array(np.arange(table.num_rows, dtype=np.int64)),
            table.column(BUCKET).combine_chunks() if table.num_rows else pa.array([], pa.string()),
            table.column(N_TOKENS).combine_chunks() if table.num_rows else pa.array([], pa.int64()),
            pa.array(seeded_keys(ids, heldout_salt(job["heldout_seed"])), pa.uint64()),
            pa.array(seeded_keys(ids, sample_salt(job["seed"])), pa.uint64()),
        ],
        schema=INDEX_SCHEMA,
    )
    out_fs, index_inner = storage.filesystem(job["index_path"])
    sink = storage.ParquetSink(out_fs, index_inner, INDEX_SCHEMA)
    sink.write(index)
    sink.commit()
    buckets: dict[str, dict[str, int]] = {}
    if index.num_rows:
        grouped = index.group_by(BUCKET).aggregate([(N_TOKENS, "sum"), (N_TOKENS, "count")])
        for name, tokens, count in zip(
            *(grouped.column(c).to_pylist() for c in (BUCKET, f"{N_TOKENS}_sum", f"{N_TOKENS}_count")), strict=True
        ):
            buckets[name] = {"documents": int(count), "tokens": int(tokens)}
    summary = {
        "path": job["path"],
        "bytes": size,
        "sha256": sha,
        "rows": index.num_rows,
        "has_tokens": has_tokens,
        "buckets": buckets,
    }
    storage.write_json_atomic(fs, marker, {"fingerprint": fingerprint, "summary": summary})
    return summary


def read_index(path: str) -> pa.Table:
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        return pq.read_table(handle)


def key_histograms(
    path: str, key: str, buckets: dict[str, tuple[int, int]], exclude_heldout: dict[str, int] | None = None
) -> dict[str, list[list[int]]]:
    """Per bucket, counts and tokens of the index's documents per key bin (top 12 bits of ``key``).

    ``buckets`` maps a bucket to the key range ``[low, high)`` to count; ``exclude_heldout`` drops documents
    whose held-out key is below the bucket's held-out cutoff. Only non-empty bins are returned (sparse).
    """
    index = read_index(path)
    result: dict[str, list[list[int]]] = {}
    labels = index.column(BUCKET).to_numpy(zero_copy_only=False)
    keys = index.column(key).to_numpy()
    tokens = index.column(N_TOKENS).to_numpy()
    heldout = index.column("heldout_key").to_numpy()
    for bucket, (low, high) in buckets.items():
        mask = (labels == bucket) & ~below(keys, low) & below(keys, high)
        if exclude_heldout is not None:
            mask &= ~below(heldout, exclude_heldout.get(bucket, 0))
        if not mask.any():
            continue
        bins = (keys[mask] >> BIN_SHIFT).astype(np.int64)
        counts = np.bincount(bins, minlength=BINS)
        sums = np.bincount(bins, weights=tokens[mask].astype(np.float64), minlength=BINS).round().astype(np.int64)
        nonzero = np.flatnonzero(counts)
        result[bucket] = [nonzero.tolist(), counts[nonzero].tolist(), sums[nonzero].tolist()]
    return result


def bin_rows(
    path: str, key: str, bins: dict[str, int], exclude_heldout: dict[str, int] | None = None
) -> dict[str, list[list[int]]]:
    """Per bucket, the (key, tokens) of the documents in one bin, for finding a cutoff inside that bin."""
    index = read_index(path)
    labels = index.column(BUCKET).to_numpy(zero_copy_only=False)
    keys = index.column(key).to_numpy()
    tokens = index.column(N_TOKENS).to_numpy()
    heldout = index.column("heldout_key").to_numpy()
    result: dict[str, list[list[int]]] = {}
    for bucket, wanted in bins.items():
        mask = (labels == bucket) & ((keys >> BIN_SHIFT).astype(np.int64) == wanted)
        if exclude_heldout is not None:
            mask &= ~below(heldout, exclude_heldout.get(bucket, 0))
        if mask.any():
            result[bucket] = [keys[mask].tolist(), tokens[mask].tolist()]
    return result
