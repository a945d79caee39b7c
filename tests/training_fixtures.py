"""A small, valid Refinery manifest built from real sample-corpus documents, for the trainer's tests.

It follows the format documented in ``refinery.pipelines.manifest`` (what ``refinery shards`` writes): zstd Parquet
training shards with columns ``id, text, source, bucket, n_tokens, epoch`` holding a seeded shuffle of every
bucket, one held-out file per bucket, sizes and sha256 from ``file_digest``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION
from refinery.pipelines.models import DEFAULT_TOKENIZER, file_sha256, load_tokenizer, tokenizer_file
from refinery.pipelines.storage import file_digest

BUCKETS = ("python_docs", "postgresql_docs", "debian_changelog")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread (import it into a test module to apply it there): the tiny models' matrices are too
    small to share, and the CI cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _entry(folder: Path, relative: str, table: pa.Table) -> dict:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=64)
    size, digest = file_digest(path)
    return {
        "path": relative,
        "rows": table.num_rows,
        "tokens": int(pc.sum(table["n_tokens"]).as_py() or 0),
        "bytes": size,
        "sha256": digest,
    }


def build_manifest(
    documents: pa.Table,
    folder: Path,
    per_bucket: int = 24,
    heldout_per_bucket: int = 4,
    n_shards: int = 3,
    max_chars: int = 6000,
    seed: int = 0,
) -> Path:
    """Write ``folder/manifest.json``, ``folder/shards/``, ``folder/heldout/``; return the manifest's path.

    Takes, per bucket of :data:`BUCKETS`, the first ``per_bucket + heldout_per_bucket`` documents of at most
    ``max_chars`` characters (short real documents keep the tests fast), holds the last ones out, shuffles the rest
    with ``seed`` and deals them round-robin into ``n_shards`` shards.
    """
    tokenizer = load_tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    train_parts, heldout = [], {}
    buckets_meta = {}
    lengths = pc.utf8_length(documents["text"])
    for bucket in BUCKETS:
        mask = pc.and_(pc.equal(documents["source"], bucket), pc.less_equal(lengths, max_chars))
        chosen = documents.filter(mask).slice(0, per_bucket + heldout_per_bucket).select(["id", "text", "source"])
        n_tokens = [len(e.ids) for e in tokenizer.encode_batch(chosen["text"].to_pylist(), add_special_tokens=False)]
        chosen = chosen.append_column("bucket", pa.array([bucket] * chosen.num_rows))
        chosen = chosen.append_column("n_tokens", pa.array(n_tokens, pa.int64()))
        chosen = chosen.append_column("epoch", pa.array([0] * chosen.num_rows, pa.int32()))
        train_rows = chosen.num_rows - heldout_per_bucket
        train_parts.append(chosen.slice(0, train_rows))
        heldout[bucket] = _entry(folder, f"heldout/{bucket}.parquet", chosen.slice(train_rows))
        tokens = int(sum(n_tokens[:train_rows]))
        buckets_meta[bucket] = {
            "weight": 0.0,
            "documents": train_rows,
            "tokens": tokens,
            "epochs": 1.0,
            "available_documents": train_rows,
            "available_tokens": tokens,
            "max_epochs": 1.0,
        }
    train = pa.concat_tables(train_parts)
    total = sum(b["tokens"] for b in buckets_meta.values())
    for meta in buckets_meta.values():
        meta["weight"] = meta["tokens"] / total
    order = np.random.default_rng(seed).permutation(train.num_rows)
    train = train.take(order)
    shards = [
        _entry(folder, f"shards/part-{i:05d}.parquet", train.take(np.arange(i, train.num_rows, n_shards)))
        for i in range(n_shards)
    ]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": {"refinery_version": "0.1.0", "git_commit": None},
        "recipe": {"fingerprint": "test", "recipe": {}},
        "run": {"fingerprint": "test"},
        "tokenizer": {
            "reference": DEFAULT_TOKENIZER,
            "sha256": file_sha256(tokenizer_file()),
            "vocab_size": 128256,
            "bos_id": 128000,
            "eos_id": 128001,
        },
        "seed": seed,
        "bucket_column": "source",
        "selection": {"method": "natural token shares (test fixture)"},
        "buckets": buckets_meta,
        "shards": shards,
        "heldout": heldout,
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path
