"""Where an export reads and writes: a local folder or any fsspec URL (``s3://``, ``gs://``, ``file://``, ...).

Every file operation of an export (parts, markers, the Megatron merge, stale cleanup, blends, ``export.json``)
goes through fsspec with paths built here, so the same code writes a local folder and an object store. A local
path stays a ``Path`` for the caller (local exports print and return as before); a URL stays a string (``Path``
would fold ``s3://b`` into ``s3:/b``). Paths inside an export are ``/``-separated and relative to its root.
"""

from __future__ import annotations

from pathlib import Path

from refinery.pipelines import storage


def is_url(path: str | Path) -> bool:
    """An fsspec URL (``scheme://...``) rather than a local path."""
    return isinstance(path, str) and "://" in path


def root_of(path: str | Path) -> str:
    """The export folder as the string every job carries: ``str(Path(path))`` locally (as before), the URL
    without a trailing ``/`` otherwise."""
    return path.rstrip("/") if is_url(path) else str(Path(path))


def read_bytes(path: str | Path) -> bytes:
    """A whole (small) file: an index, a marker, a JSON manifest."""
    fs, inner = storage.filesystem(str(path))
    return fs.cat_file(inner)


def files_under(root: str, folder: str) -> list[str]:
    """Every file below ``root/folder``, as sorted paths relative to ``root`` ([] when the folder is absent).
    One recursive listing (``find``), not a request per file, on an object store."""
    fs, inner_root = storage.filesystem(root)
    inner_root = inner_root.rstrip("/")
    found = fs.find(storage.join(inner_root, folder))
    return sorted(path[len(inner_root) + 1 :] for path in found if path.startswith(inner_root + "/"))


def remove_tree(root: str, folder: str) -> None:
    """Remove ``root/folder`` and everything in it; nothing when it is absent."""
    fs, inner_root = storage.filesystem(root)
    path = storage.join(inner_root, folder)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def process_memory(path: str | Path) -> bool:
    """Whether ``path`` lives in this process's memory (fsspec's ``memory://``), which Ray workers cannot reach."""
    if not is_url(path):
        return False
    fs, _ = storage.filesystem(str(path))
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "memory" in protocols
