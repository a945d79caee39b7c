"""Writing outputs so that a reader never sees half a file: temporary name, then rename, then a marker.

Everything goes through fsspec, so a run directory can be a local folder or an object-store URL that every
worker of a cluster can reach. Parquet is written with zstd, the compression that pyarrow, polars, duckdb and
HF ``datasets`` all read; statistics are kept so readers can prune row groups.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


def filesystem(root: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``root`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(root)
    return fs, path


def join(*parts: str) -> str:
    return posixpath.join(*parts)


TEMPORARY_PREFIX = ".tmp-"


def temporary_path(path: str) -> str:
    """A unique temporary name beside ``path`` (what ``is_temporary`` recognises), for a write then a rename."""
    head, tail = posixpath.split(path)
    return posixpath.join(head, f"{TEMPORARY_PREFIX}{uuid.uuid4().hex[:12]}-{tail}")


def is_temporary(path: str) -> bool:
    """A file a writer has not finished (or a killed writer left behind)."""
    return posixpath.basename(path).startswith(TEMPORARY_PREFIX)


@contextmanager
def atomic_output(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[str]:
    """The one atomic write: yield a temporary name beside ``path`` to write to; on success rename it to ``path``
    (so ``path`` is absent, old, or complete), on failure remove it. Writers that need a file name (safetensors,
    ``pq.write_table``) write to the yielded name; :func:`write_bytes_atomic` writes bytes through it."""
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
    except BaseException:
        if fs.exists(temporary):
            fs.rm(temporary)
        raise
    fs.mv(temporary, path)


def write_bytes_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent, old, or complete."""
    with atomic_output(fs, path) as temporary, fs.open(temporary, "wb") as handle:
        handle.write(data)


def write_json_atomic(fs: fsspec.AbstractFileSystem, path: str, data: Any) -> None:
    """JSON with sorted keys and a trailing newline: the same data always gives the same bytes."""
    write_bytes_atomic(fs, path, (json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode())


def write_json_file(path: str | os.PathLike, data: Any) -> None:
    """:func:`write_json_atomic` for a plain local or fsspec path (no filesystem object at hand)."""
    fs, inner = filesystem(str(path))
    write_json_atomic(fs, inner, data)


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, local or fsspec URL, read in 1 MiB blocks: the one file digest."""
    fs, inner = filesystem(str(path))
    digest = hashlib.sha256()
    size = 0
    with fs.open(inner, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def fingerprint(data: Any, length: int = 20) -> str:
    """The first ``length`` hex digits of the sha256 of ``data`` as canonical JSON (sorted keys; non-JSON values
    by ``str``): the one fingerprint of settings, plans and recipes."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:length]


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any:
    with fs.open(path, "rb") as handle:
        return json.loads(handle.read())


def read_marker(path: str, fingerprint: str) -> dict[str, Any] | None:
    """A completion marker's contents if it exists, parses and carries ``fingerprint``; else None (redo the work)."""
    fs, inner = filesystem(path)
    if not fs.exists(inner):
        return None
    try:
        done = read_json(fs, inner)
    except ValueError:
        return None
    return done if isinstance(done, dict) and done.get("fingerprint") == fingerprint else None


class HashingHandle:
    """A write-only file wrapper that hashes what passes through, so a writer knows its file's sha256 for free."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self.size += view.nbytes
        return self._handle.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._handle.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class ParquetSink:
    """Streams tables of one schema into a Parquet file under a temporary name; ``commit`` renames it.

    Each ``write`` becomes one row group, so memory stays bounded by the batch size, and since batches are cut
    by the recipe's ``batch_size`` the file layout (and bytes) depend only on the input and the recipe.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, schema: pa.Schema) -> None:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.fs = fs
        self.path = path
        self.schema = schema
        self.rows = 0
        self._temporary = temporary_path(path)
        self._handle = fs.open(self._temporary, "wb")
        self._hashing = HashingHandle(self._handle)
        self._writer = pq.ParquetWriter(self._hashing, schema, **PARQUET_OPTIONS)
        self.sha256: str | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def commit(self) -> None:
        """Close and rename into place; ``sha256`` then holds the digest of the file's bytes."""
        self._writer.close()
        self._handle.close()
        self.sha256 = self._hashing.hexdigest()
        self.fs.mv(self._temporary, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
            self._handle.close()
        finally:
            if self.fs.exists(self._temporary):
                self.fs.rm(self._temporary)


def worker_identity() -> dict[str, Any]:
    """Where a task ran: Ray node id when inside Ray, host and process id otherwise too."""
    identity: dict[str, Any] = {"host": os.uname().nodename, "pid": os.getpid()}
    try:
        import ray

        if ray.is_initialized():
            identity["node_id"] = ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    return identity
