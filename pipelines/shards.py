"""Input shards: the unit of work. One shard is one input file, named from its path, never from run order.

Globs and fsspec URLs are expanded here, on the driver, into a sorted list, so that the same recipe over the
same files always plans the same shards. A shard's ``key`` is its path relative to the input's root (the part
of the pattern before the first wildcard), so the same files read from a local copy or from object storage
get the same ids and the same output names.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass

import fsspec

from refinery.pipelines.recipe import InputSpec

GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Shard:
    """One input file of one recipe input."""

    source: str
    path: str
    key: str

    @property
    def name(self) -> str:
        """The file-system-safe output name: readable, unique per (source, key), independent of run order."""
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key).strip("_")[:80]
        digest = hashlib.blake2b(f"{self.source}\x00{self.key}".encode(), digest_size=4).hexdigest()
        return f"{self.source}--{readable}--{digest}"


def _root_of(stripped_pattern: str) -> str:
    """The folder a pattern's keys are relative to: up to the last '/' before any wildcard."""
    match = GLOB_CHARS.search(stripped_pattern)
    head = stripped_pattern[: match.start()] if match else stripped_pattern
    return head.rsplit("/", 1)[0] if "/" in head else ""


class InputNotFoundError(FileNotFoundError):
    """A recipe input matched no file; a run never silently proceeds without one of its inputs."""


def _files(fs: fsspec.AbstractFileSystem, pattern: str) -> list[str]:
    """Files matching a path or glob, from one listing (no request per file on object stores)."""
    if GLOB_CHARS.search(pattern):
        listing = fs.glob(pattern, detail=True)
        return sorted(path for path, info in listing.items() if info.get("type") != "directory")
    if not fs.exists(pattern):
        return []
    if fs.isdir(pattern):
        return sorted(path for path, info in fs.find(pattern, detail=True).items() if info.get("type") == "file")
    return [pattern]


def discover_shards(spec: InputSpec) -> list[Shard]:
    """Expand an input's paths and globs into its shards, sorted by key, each file once."""
    shards: dict[str, Shard] = {}
    for pattern in spec.paths:
        fs, stripped = fsspec.core.url_to_fs(pattern, **spec.storage_options)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        is_local = "file" in protocols
        root = _root_of(stripped)
        matched = _files(fs, stripped)
        if not matched:
            raise InputNotFoundError(f"input {spec.name!r}: {pattern!r} matched no file")
        for path in matched:
            key = posixpath.relpath(path, root) if root else posixpath.basename(path)
            full = path if is_local else fs.unstrip_protocol(path)
            shards.setdefault(key, Shard(source=spec.name, path=full, key=key))
    return [shards[key] for key in sorted(shards)]
