"""``export.json``: what an export holds, what it was made from, and how to check it.

Format ``refinery-export``, version 1::

    {
      "format": "refinery-export", "format_version": 1,
      "export_format": "megatron" | "datatrove",
      "producer": {"refinery_version": "0.1.0", "git_commit": "..." | null, "exporter_version": 1},
      "source": {"manifest_sha256": "...", "plan_fingerprint": "...", "run_fingerprint": "...",
                 "recipe_fingerprint": "..."},
      "tokenizer": {"reference": "package:...", "sha256": "...", "vocab_size": 128257,
                    "bos_id": 128000, "eos_id": 128001},
      "framing": {"bos": true, "eos": true, "token_dtype": "int32"},
      "datasets": [{"name": "train/web", "split": "train", "bucket": "web", "weight": 0.5012,
                    "manifest_weight": 0.5, "documents": 90, "tokens": 49560, "content_tokens": 49380,
                    "files": ["train/web.bin", "train/web.idx"]}],
      "blends": {"train": "blend.txt", ...},
      "sources": [{"path": "shards/part-00000.parquet", "sha256": "...", "documents": 160,
                   "content_tokens": 61728}],
      "files": [{"path": "train/web.bin", "bytes": 198240, "sha256": "..."}]
    }

``tokens`` count what the files hold (special tokens included); ``content_tokens`` what the source manifest
counts (none). A dataset's ``weight`` is its share of the split's tokens, the weight its blend gives it, so one
pass over the blend reads every exported document once and each bucket keeps the share the mix gave it
(``manifest_weight``). Paths are relative to ``export.json`` and may not leave its folder; ``files`` lists every
file a trainer reads, with its size and sha256, and :func:`verify_export` checks them all.

``export.json`` may be a local path or an fsspec URL (``s3://.../export.json``); on an object store (no symlinks)
the listed paths get the lexical check only, as a manifest's do.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from refinery.pipelines import storage
from refinery.pipelines.manifest import ManifestError, confined, lexically_safe, location
from refinery.pipelines.storage import file_digest

from .location import read_bytes

EXPORT_FORMAT = "refinery-export"
EXPORT_FORMAT_VERSION = 1
EXPORT_MANIFEST = "export.json"


def is_export_manifest(path: str | Path) -> bool:
    """Whether ``path`` is an ``export.json`` (cheap: reads the JSON's ``format`` only)."""
    try:
        return json.loads(read_bytes(location(path))).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):  # ValueError: not JSON, or not UTF-8
        return False


def load_export(path: str | Path) -> dict[str, Any]:
    """Read and structurally check an ``export.json`` (format, version, safe paths); files are not read."""
    path = location(path)
    try:
        data = json.loads(read_bytes(path))
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: cannot read export manifest: {error}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ManifestError(f"{path}: not a Refinery export manifest")
    if data.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version {data.get('format_version')!r}, expected {EXPORT_FORMAT_VERSION}")
    files = data.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and {"path", "bytes", "sha256"} <= set(f) for f in files
    ):
        raise ManifestError(f"{path}: 'files' must list path, bytes and sha256 per file")
    local_folder = _local_folder(path)
    for record in files:
        lexically_safe(record["path"])
        if local_folder is not None:  # resolved: a symlink may not lead a trainer outside the export
            confined(local_folder, record["path"])
    return data


def _local_folder(path: Path | str) -> Path | None:
    """The folder of a local ``export.json`` (a path or a ``file://`` URL), where symlinks exist; else None."""
    if isinstance(path, Path):
        return path.parent
    fs, inner = storage.filesystem(path)
    return Path(inner).parent if isinstance(fs, LocalFileSystem) else None


def _folder(path: Path | str) -> str:
    """The folder of ``export.json``: the root its listed paths are relative to."""
    return str(path.parent) if isinstance(path, Path) else posixpath.dirname(path)


def verify_export(path: str | Path) -> list[str]:
    """Check every file ``export.json`` lists (existence, size, sha256); one problem line per bad file."""
    path = location(path)
    folder = _folder(path)
    fs, root = storage.filesystem(folder)
    problems = []
    for record in load_export(path)["files"]:
        file = storage.join(folder, record["path"])
        if not fs.isfile(storage.join(root, record["path"])):
            problems.append(f"{record['path']}: missing")
            continue
        size, digest = file_digest(file)
        if size != record["bytes"]:
            problems.append(f"{record['path']}: {size} bytes, export manifest says {record['bytes']}")
        elif digest != record["sha256"]:
            problems.append(
                f"{record['path']}: sha256 {digest[:12]}..., export manifest says {record['sha256'][:12]}..."
            )
    return problems
