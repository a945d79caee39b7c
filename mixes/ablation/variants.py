"""Held-out targets and one training set per variant, each written as Parquet shards with a manifest.

Common random numbers: every document gets one seeded 64-bit key, and shard ``j`` of every variant holds the
documents whose key falls in the ``j``-th of ``shards`` equal key ranges, in key order. The trainer reads shards in
an order drawn from its seed alone, so at a budget smaller than the data two variants see the same documents
wherever they share them, and differ only where their data differ: the ablation measures the stage, not the
sampling noise of two unrelated draws.

Held-out targets are chosen from the run's output (a seeded slice per bucket) before any variant is built, and
no variant trains on them: every variant drops the held-out ids, any document recorded as a duplicate of one
(``*_duplicate_of``) and any document whose text equals a held-out text. Putting dedup back would otherwise score
a model on documents it trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery import pipelines
from refinery.mixes.buckets import bucket_file_name
from refinery.mixes.shard_index import seeded_keys
from refinery.mixes.token_count import cached_tokenizer, count_tokens
from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION
from refinery.pipelines.manifest import write_manifest as write_checked_manifest
from refinery.pipelines.models import file_sha256, tokenizer_file
from refinery.pipelines.storage import atomic_output, file_digest, filesystem

from .config import HeldoutSettings

ROW_GROUP_ROWS = 256


@dataclass(frozen=True)
class Heldout:
    """The held-out targets: per name, the file (relative to the output folder) and its ids/texts to exclude."""

    files: dict[str, Path]
    ids: frozenset[str]
    text_hashes: frozenset[str]


def _text_hashes(texts: pa.ChunkedArray | pa.Array) -> list[str]:
    return [hashlib.sha256((t or "").encode()).hexdigest() for t in texts.to_pylist()]


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fs, _ = filesystem(str(path.parent))
    with atomic_output(fs, str(path)) as temporary:
        pq.write_table(table, temporary, compression="zstd", row_group_size=ROW_GROUP_ROWS)


def choose_heldout(kept: pa.Table, settings: HeldoutSettings, output: Path) -> Heldout:
    """Per bucket of the output, the documents whose seeded key is lowest (``fraction``, at most ``max_documents``)."""
    keys = seeded_keys(kept.column("id").to_pylist(), f"refinery-ablation-heldout-{settings.seed}")
    buckets = np.asarray(kept.column("bucket").to_pylist(), dtype=object)
    files: dict[str, Path] = {}
    chosen_ids: set[str] = set()
    hashes: set[str] = set()
    for bucket in sorted(set(buckets.tolist())):
        rows = np.flatnonzero(buckets == bucket)
        take = min(settings.max_documents, int(np.floor(settings.fraction * rows.size)))
        if take < 1:
            continue  # a bucket too small to spare a held-out slice trains whole and is not a target
        order = rows[np.argsort(keys[rows], kind="stable")][:take]
        table = kept.take(pa.array(np.sort(order))).select(["id", "text", "bucket"])
        relative = Path("heldout") / f"{bucket_file_name(bucket)}.parquet"
        _write_parquet(table, output / relative)
        files[bucket] = relative
        chosen_ids.update(table.column("id").to_pylist())
        hashes.update(_text_hashes(table.column("text")))
    for name, source in sorted(settings.sets.items()):
        table = pq.read_table(source, columns=["text"])
        table = table.append_column("bucket", pa.array([name] * table.num_rows, pa.string()))
        relative = Path("heldout") / f"@{bucket_file_name(name)}.parquet"
        _write_parquet(table, output / relative)
        files[f"@{name}"] = relative
        hashes.update(_text_hashes(table.column("text")))
    return Heldout(files=files, ids=frozenset(chosen_ids), text_hashes=frozenset(hashes))


def training_rows(documents: pa.Table, heldout: Heldout) -> pa.Table:
    """``documents`` without any held-out document, duplicate of one, or copy of one's text."""
    ids = pa.array(sorted(heldout.ids), pa.string())
    drop = pc.or_kleene(
        pc.is_in(documents.column("id"), value_set=ids),
        pc.fill_null(pc.is_in(documents.column("duplicate_of"), value_set=ids), False),
    )
    hashes = np.asarray(_text_hashes(documents.column("text")), dtype=object)
    copies = np.isin(hashes, np.asarray(sorted(heldout.text_hashes), dtype=object))
    keep = np.logical_not(np.logical_or(np.asarray(pc.fill_null(drop, False)), copies))
    return documents.filter(pa.array(keep))


def _entry(output: Path, relative: Path, rows: int, tokens: int) -> dict[str, Any]:
    size, digest = file_digest(output / relative)
    return {"path": relative.as_posix(), "rows": rows, "tokens": tokens, "bytes": size, "sha256": digest}


def with_tokens(documents: pa.Table, tokenizer_reference: str) -> pa.Table:
    """``documents`` with ``n_tokens`` (content tokens of the manifest's tokenizer, as the shards writer counts)."""
    tokens = count_tokens(cached_tokenizer(tokenizer_reference), documents.column("text"))
    return documents.append_column("n_tokens", pa.array(tokens, pa.int32()))


def write_variant(documents: pa.Table, output: Path, folder: Path, shards: int, salt: str) -> list[dict[str, Any]]:
    """Write ``documents`` as ``shards`` key-range shards under ``output/folder`` (empty ranges skipped).

    Returns the manifest entries of the shards (paths relative to ``output``).
    """
    keys = seeded_keys(documents.column("id").to_pylist(), salt)
    shard_of = (keys // np.uint64((2**64) // shards)).astype(np.int64).clip(0, shards - 1)
    order = np.lexsort((keys, shard_of))
    documents = documents.take(pa.array(order)).select(["id", "text", "bucket", "n_tokens"])
    shard_of = shard_of[order]
    tokens = documents.column("n_tokens").to_numpy()
    bounds = np.searchsorted(shard_of, np.arange(shards + 1))
    entries = []
    for shard in range(shards):
        start, stop = int(bounds[shard]), int(bounds[shard + 1])
        if start == stop:
            continue
        relative = folder / f"part-{shard:05d}.parquet"
        _write_parquet(documents.slice(start, stop - start), output / relative)
        entries.append(_entry(output, relative, stop - start, int(tokens[start:stop].sum())))
    return entries


def heldout_entries(output: Path, heldout: Heldout, tokenizer_reference: str) -> dict[str, dict[str, Any]]:
    """Manifest entries of the held-out targets (shared by every variant's manifest)."""
    entries = {}
    for target, relative in sorted(heldout.files.items()):
        texts = pq.read_table(output / relative, columns=["text"]).column("text")
        tokens = int(count_tokens(cached_tokenizer(tokenizer_reference), texts).sum())
        entries[target] = _entry(output, relative, len(texts), tokens)
    return entries


def write_manifest(
    path: Path,
    shards: list[dict[str, Any]],
    heldout: dict[str, dict[str, Any]],
    tokenizer_reference: str,
    run_fingerprint: str,
    selection: dict[str, Any],
) -> Path:
    """A variant's manifest beside its shards and the shared held-out targets (paths relative to its folder)."""
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": {"refinery_version": pipelines.__version__, "tool": "refinery ablate"},
        "run": {"fingerprint": run_fingerprint},
        "tokenizer": {"reference": tokenizer_reference, "sha256": file_sha256(tokenizer_file(tokenizer_reference))},
        "bucket_column": "bucket",
        "selection": selection,
        "buckets": {},
        "shards": shards,
        "heldout": heldout,
        "total_tokens": sum(s["tokens"] for s in shards),
        "total_documents": sum(s["rows"] for s in shards),
    }
    return write_checked_manifest(path.parent, manifest, path.name)
