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


class ShardNameCollision(ValueError):
    """Two different files of one input would get the same shard name; refused rather than one silently dropped."""


def _common_root(roots: list[str]) -> str:
    """The deepest folder that holds every pattern's root (keys stay unique across folders)."""
    if not roots:
        return ""
    split = [root.split("/") if root else [] for root in roots]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if any(len(parts) < len(common) for parts in split):
        return ""
    return "/".join(common)


def discover_shards(spec: InputSpec) -> list[Shard]:
    """Expand an input's paths and globs into its shards, sorted by key, each file once.

    Keys are relative to the folder common to all of the input's patterns, so ``a/part-0.parquet`` and
    ``b/part-0.parquet`` (one folder per crawl, say) are two shards, never one. A file matched by two patterns
    is one shard. Two different files that would still share a key (the same path on two filesystems) are an
    error naming both.
    """
    matches: list[tuple[str, str, bool, str, object]] = []
    for pattern in spec.paths:
        fs, stripped = fsspec.core.url_to_fs(pattern, **spec.storage_options)
        protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        matched = _files(fs, stripped)
        if not matched:
            raise InputNotFoundError(f"input {spec.name!r}: {pattern!r} matched no file")
        root = _root_of(stripped)
        for path in matched:
            matches.append((pattern, path, "file" in protocols, root, fs))
    roots = [m[3] for m in matches]
    root = _common_root(roots)
    flat = not any(roots)  # bare file names: keys are base names, as for a single pattern
    shards: dict[str, Shard] = {}
    for pattern, path, is_local, _, fs in matches:
        key = posixpath.relpath(path, root) if root else posixpath.basename(path) if flat else path.lstrip("/")
        full = path if is_local else fs.unstrip_protocol(path)  # type: ignore[attr-defined]
        existing = shards.get(key)
        if existing is not None and existing.path != full:
            raise ShardNameCollision(
                f"input {spec.name!r}: {existing.path!r} and {full!r} (from {pattern!r}) would be the same shard "
                f"{key!r}; give them separate inputs"
            )
        shards.setdefault(key, Shard(source=spec.name, path=full, key=key))
    return [shards[key] for key in sorted(shards)]
