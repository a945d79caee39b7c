"""sha256 of the files stages load (models, tokenizers, word lists, prompts), cached by path, mtime and size.

A segment's fingerprint folds in the digests of every file its stages (and the stages before it) load, so a
student retrained into the same folder recomputes the segments that depend on it instead of reusing their shards
(see :meth:`refinery.pipelines.stages.Stage.loaded_files`). Validation computes them, so they must be cheap on the
second call: each file's digest is cached under (resolved path, modification time in ns, size), in memory and in
``$REFINERY_DIGEST_CACHE`` (default ``~/.cache/refinery/file_digests.json``). A change that keeps a file's size and
modification time (``cp -p`` over it, say) is not seen; every ordinary rewrite is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path

CACHE_ENV = "REFINERY_DIGEST_CACHE"

_memory: dict[str, str] = {}
_disk_loaded = False


def cache_path() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "refinery" / "file_digests.json"


def _load_disk_cache() -> None:
    global _disk_loaded
    if _disk_loaded:
        return
    _disk_loaded = True
    with contextlib.suppress(OSError, ValueError):
        _memory.update(json.loads(cache_path().read_text()))


def _save_disk_cache() -> None:
    """Best effort: a lost or unwritable cache only means a file is hashed again."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        temporary.write_text(json.dumps(_memory, sort_keys=True))
        os.replace(temporary, path)
    except OSError:
        pass


def _key(path: Path) -> str:
    status = path.stat()
    return f"{path}\x00{status.st_mtime_ns}\x00{status.st_size}"


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_digest(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted); cached per file."""
    _load_disk_cache()
    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    changed = False
    combined = hashlib.sha256()
    for file in files:
        key = _key(file)
        if key not in _memory:
            prefix = f"{file}\x00"
            for stale in [k for k in _memory if k.startswith(prefix)]:  # the file's earlier versions
                del _memory[stale]
            _memory[key] = _hash_file(file)
            changed = True
        name = str(file.relative_to(path)) if path.is_dir() else ""
        combined.update(f"{name}\x00{_memory[key]}\n".encode())
    if changed:
        _save_disk_cache()
    return combined.hexdigest() if path.is_dir() else _memory[_key(path)]


def loaded_files_digest(paths: list[str]) -> str:
    """One digest of the contents of ``paths`` in order (not their locations: moving a model changes nothing)."""
    return hashlib.sha256("\n".join(path_digest(p) for p in paths).encode()).hexdigest()[:16]
