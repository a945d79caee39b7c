"""The manifest: the one JSON file a trainer reads to know exactly what is in a mix and where it came from.

A spine contract: the shards writer (``refinery.mixes``) writes it through :func:`write_manifest`, the trainer
(``refinery.training``) reads it through :meth:`Manifest.read`, and ``refinery verify`` checks it with
:meth:`Manifest.verify`. It is parsed in this module only.

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

Fields added by the writer (format_version 1 stays compatible: readers keep keys they do not know):
``producer.writer_version``; ``run.shards`` / ``run.documents`` (the run's final kept shards and documents);
``tokenizer.special_tokens_counted`` (false: ``n_tokens`` and every ``tokens`` count content tokens only);
``weights`` (the weights file as validated), ``plan_fingerprint`` (what the shards' completion markers carry),
``total_tokens`` / ``total_documents`` (training shards); per bucket ``target_tokens``, ``whole_epochs``,
``heldout_documents`` and ``heldout_tokens``. ``weight`` is the bucket's planned share of the training tokens,
``tokens`` / ``documents`` what the shards hold (repeats included), ``epochs`` = ``tokens / available_tokens``.
Every shard holds the run's kept columns plus ``bucket``, ``n_tokens`` and ``epoch`` (0 for a first pass).

**Confinement.** Paths are relative to the manifest's folder and may never leave it. A path is refused when it
is absolute, a URL or holds a ``..`` component, and also when it *resolves* outside the folder (a symlinked
``shards`` folder pointing elsewhere): checked when the manifest is written and again when it is read, so a
manifest can never make a trainer read arbitrary files.

**Verification.** :meth:`Manifest.verify` with ``full=True`` hashes every file (``refinery verify``, and
``refinery train --verify-shards``); ``full=False`` checks that every file exists with its recorded size, which
costs one ``stat`` per file (the trainer's start-up check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from refinery.pipelines import storage

FORMAT = "refinery-manifest"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that is malformed, unsafe, or whose shards do not match what it records."""


class ShardRecord(BaseModel):
    """One file the manifest lists (a training shard or a bucket's held-out set)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    path: str = Field(min_length=1)
    rows: int = Field(ge=0)
    tokens: int = Field(ge=0)
    bytes: int = Field(ge=0)
    sha256: str


class Manifest(BaseModel):
    """The manifest as one typed model; keys it does not name are kept as they are (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["refinery-manifest"]
    format_version: Literal[1]
    tokenizer: dict[str, Any] = Field(default_factory=dict)
    shards: list[ShardRecord] = Field(default_factory=list)
    heldout: dict[str, ShardRecord] = Field(default_factory=dict)

    _folder: Path | None = PrivateAttr(default=None)

    # -- reading ------------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls, data: Any, where: str | Path = "manifest") -> Manifest:
        """Validate manifest data (no file is touched); errors name ``where`` and the field."""
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: a manifest is a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ManifestError(f"{where}: not a Refinery manifest (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ManifestError(f"{where}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
        try:
            manifest = cls.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ManifestError(f"{where}: {problems}") from None
        for record in manifest.records():
            lexically_safe(record.path)
        return manifest

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read, validate and confine a manifest file (every listed path resolves inside its folder)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ManifestError(f"{path}: cannot read manifest: {error}") from None
        manifest = cls.parse(data, path)
        manifest._folder = path.parent
        for record in manifest.records():
            confined(path.parent, record.path)
        return manifest

    @property
    def folder(self) -> Path:
        if self._folder is None:
            raise ManifestError("this manifest was not read from a file: its shards have no location")
        return self._folder

    def records(self, include_heldout: bool = True) -> list[ShardRecord]:
        records = list(self.shards)
        return records + [self.heldout[bucket] for bucket in sorted(self.heldout)] if include_heldout else records

    def entries(self, include_heldout: bool = True) -> list[ManifestEntry]:
        """Every listed file: training shards in order, then held-out sets by bucket name (with their bucket)."""
        entries = [ManifestEntry.of(record, None) for record in self.shards]
        if include_heldout:
            entries += [ManifestEntry.of(self.heldout[bucket], bucket) for bucket in sorted(self.heldout)]
        return entries

    def file(self, entry: ManifestEntry | ShardRecord) -> Path:
        """The local file of an entry, confined to the manifest's folder (resolved paths)."""
        return confined(self.folder, entry.path)

    def data(self) -> dict[str, Any]:
        """The manifest as JSON data (unknown keys included)."""
        return self.model_dump(mode="json")

    # -- verification -------------------------------------------------------------------------------------------
    def verify(self, full: bool = True) -> list[str]:
        """One problem line per bad file: missing, wrong size, and (``full``) wrong sha256."""
        problems: list[str] = []
        for entry in self.entries():
            file = self.file(entry)
            if not file.is_file():
                problems.append(f"{entry.path}: missing")
                continue
            size = file.stat().st_size
            if size != entry.bytes:
                problems.append(f"{entry.path}: {size} bytes, manifest says {entry.bytes}")
                continue
            if full:
                digest = storage.file_digest(str(file))[1]
                if digest != entry.sha256:
                    problems.append(f"{entry.path}: sha256 {digest[:12]}..., manifest says {entry.sha256[:12]}...")
        return problems


@dataclass(frozen=True)
class ManifestEntry:
    """A listed file and the bucket whose held-out set it is (None: a training shard)."""

    path: str
    rows: int
    tokens: int
    bytes: int
    sha256: str
    bucket: str | None = None

    @classmethod
    def of(cls, record: ShardRecord, bucket: str | None) -> ManifestEntry:
        return cls(record.path, record.rows, record.tokens, record.bytes, record.sha256, bucket)


def lexically_safe(path: str) -> str:
    """``path`` if it is written as a relative path inside the manifest's folder; else :class:`ManifestError`."""
    if not isinstance(path, str) or not path:
        raise ManifestError(f"shard path {path!r} is not a non-empty string")
    if "://" in path or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise ManifestError(f"shard path {path!r} is absolute; manifest paths must be relative to the manifest")
    if ".." in path.replace("\\", "/").split("/"):
        raise ManifestError(f"shard path {path!r} leaves the manifest's folder")
    return path


def confined(folder: Path, path: str) -> Path:
    """``folder / path`` if it *resolves* inside ``folder`` (symlinks followed); else :class:`ManifestError`."""
    lexically_safe(path)
    base = Path(folder).resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base):
        raise ManifestError(f"shard path {path!r} resolves to {target}, outside the manifest's folder {base}")
    return Path(folder) / path


def write_manifest(folder: str | Path, data: dict[str, Any], name: str = MANIFEST_NAME) -> Path:
    """Validate ``data``, check every listed file resolves inside ``folder``, and write it atomically."""
    manifest = Manifest.parse(data, f"{folder}/{name}")
    if "://" not in str(folder):  # an object store has no symlinks: the lexical check above is the whole check
        for record in manifest.records():
            confined(Path(folder), record.path)
    fs, root = storage.filesystem(str(folder))
    storage.write_json_atomic(fs, storage.join(root, name), data)
    return Path(folder) / name


def verify_manifest(path: str | Path, full: bool = True) -> list[str]:
    """Read ``path`` and verify its files (see :meth:`Manifest.verify`)."""
    return Manifest.read(path).verify(full)


def shard_entries(data: dict[str, Any], include_heldout: bool = True) -> list[ManifestEntry]:
    """The entries of manifest data (a dict from :func:`load_manifest`)."""
    return Manifest.parse(data).entries(include_heldout)


def load_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest's JSON data after :meth:`Manifest.read` validated and confined it (for tools that want dicts)."""
    return Manifest.read(path).data()
