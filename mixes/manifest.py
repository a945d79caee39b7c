"""The manifest: the one JSON file a trainer reads to know exactly what is in a mix and where it came from.

Format (``format_version`` 1)::

    {
      "format": "refinery-manifest", "format_version": 1,
      "producer": {"refinery_version": "0.1.0", "git_commit": "abc123..." | null},
      "recipe": {"fingerprint": "...", "recipe": {...}},         # the recipe that produced the run
      "run": {"fingerprint": "..."},                             # fingerprint of the run directory's output
      "tokenizer": {"reference": "package:...", "sha256": "...", "vocab_size": 128256,
                    "bos_id": 128000, "eos_id": 128001},
      "seed": 0,
      "bucket_column": "source",
      "selection": {...},                                        # how the weights were chosen (free-form)
      "buckets": {"NAME": {"weight": 0.5, "documents": 10, "tokens": 12345, "epochs": 1.5,
                           "available_documents": 7, "available_tokens": 8000, "max_epochs": 4.0}},
      "shards": [{"path": "shards/part-00000.parquet", "rows": 10, "tokens": 12345,
                  "bytes": 4567, "sha256": "..."}],
      "heldout": {"NAME": {"path": "heldout/NAME.parquet", "rows": 3, "tokens": 900,
                           "bytes": 1234, "sha256": "..."}}
    }

Fields added by the writer (format_version 1 stays compatible: readers ignore keys they do not know):
``producer.writer_version``; ``run.shards`` / ``run.documents`` (the run's final kept shards and documents);
``tokenizer.special_tokens_counted`` (false: ``n_tokens`` and every ``tokens`` count content tokens only);
``weights`` (the weights file as validated), ``plan_fingerprint`` (what the shards' completion markers carry),
``total_tokens`` / ``total_documents`` (training shards); per bucket ``target_tokens``, ``whole_epochs``,
``heldout_documents`` and ``heldout_tokens``. ``weight`` is the bucket's planned share of the training tokens,
``tokens`` / ``documents`` what the shards hold (repeats included), ``epochs`` = ``tokens / available_tokens``.
Every shard holds the run's kept columns plus ``bucket``, ``n_tokens`` and ``epoch`` (0 for a first pass).

Paths are relative to the manifest's folder and may never leave it: an absolute path, a URL or a ``..``
component is refused when the manifest is read, so a manifest cannot make a trainer read arbitrary files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "refinery-manifest"
FORMAT_VERSION = 1


class ManifestError(ValueError):
    """A manifest that is malformed, unsafe, or whose shards do not match what it records."""


def safe_relative_path(path: str) -> str:
    """``path`` if it is a relative path inside the manifest's folder; else :class:`ManifestError`."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"shard path {path!r} is not a non-empty string")
    if "://" in path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise ManifestError(f"shard path {path!r} is absolute; manifest paths must be relative to the manifest")
    parts = posixpath.normpath(path.replace("\\", "/")).split("/")
    if ".." in path.replace("\\", "/").split("/") or parts[0] == "..":
        raise ManifestError(f"shard path {path!r} leaves the manifest's folder")
    return path


def file_digest(path: str | Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class ShardEntry:
    path: str
    rows: int
    tokens: int
    bytes: int
    sha256: str
    bucket: str | None = None


def load_manifest(path: str | Path) -> dict[str, Any]:
    """Read and structurally check a manifest (format, version, safe paths); shards are not read here."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"{path}: cannot read manifest: {error}") from None
    if data.get("format") != FORMAT:
        raise ManifestError(f"{path}: not a Refinery manifest (format {data.get('format')!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
    for entry in shard_entries(data):
        safe_relative_path(entry.path)
    return data


def shard_entries(manifest: dict[str, Any], include_heldout: bool = True) -> list[ShardEntry]:
    """Every file the manifest lists: training shards, then held-out sets (with their bucket)."""
    fields = ("path", "rows", "tokens", "bytes", "sha256")

    def entry(record: Any, bucket: str | None) -> ShardEntry:
        if not isinstance(record, dict) or any(k not in record for k in fields):
            raise ManifestError(f"shard entry {record!r} lacks one of {fields}")
        return ShardEntry(**{k: record[k] for k in fields}, bucket=bucket)

    entries = [entry(s, None) for s in manifest.get("shards", [])]
    if include_heldout:
        for bucket, s in sorted(manifest.get("heldout", {}).items()):
            entries.append(entry(s, bucket))
    return entries


def verify_manifest(path: str | Path) -> list[str]:
    """Check every listed file's existence, size and sha256; return one problem line per bad file."""
    path = Path(path)
    manifest = load_manifest(path)
    problems: list[str] = []
    for entry in shard_entries(manifest):
        file = path.parent / safe_relative_path(entry.path)
        if not file.is_file():
            problems.append(f"{entry.path}: missing")
            continue
        size, digest = file_digest(file)
        if size != entry.bytes:
            problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
        elif digest != entry.sha256:
            problems.append(f"{entry.path}: sha256 {digest[:12]}..., manifest says {entry.sha256[:12]}...")
    return problems


def resolve_shard(manifest_path: str | Path, entry: ShardEntry) -> Path:
    """The local file of a shard entry (its path checked to stay inside the manifest's folder)."""
    return Path(manifest_path).parent / safe_relative_path(entry.path)
