"""NSFW URL filter: the UT1-derived domain and URL blocklists datatrove ships, plus banned words in URLs.

Rules, in datatrove's ``URLFilter`` order: ``url_blocklist:domain`` (the host or any parent domain is listed:
``a.b.example.com`` is checked as itself, ``b.example.com`` and ``example.com``, which covers datatrove's
registered-domain and full-host checks without a public-suffix list), ``url_blocklist:url`` (the exact URL is
listed), ``url_blocklist:hard_banned_word``, ``url_blocklist:soft_banned_words`` (at least
``soft_word_threshold`` of them) and ``url_blocklist:banned_subword`` (a banned sub-word inside the URL with
punctuation removed). Documents without a URL are kept.

Memory: datatrove holds the 4.56 M domains as a Python set (~800 MB per worker). Here each listed domain and URL
is a 64-bit BLAKE2b digest in one sorted NumPy array (~37 MB), built once from datatrove's archive, cached on
disk and memory-mapped, so every worker of a node shares the same pages. A false positive needs a 64-bit
collision with one of 4.6 M entries: about 1 in 4 million million URLs.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr

from refinery.pipelines.documents import URL
from refinery.pipelines.stages import MapStage, StageResult, register_stage, split_by_mask

ARCHIVE = "url_filterblacklistsv0_3_0.tar.gz"
WORD_LISTS = {"banned": "banned_words.txt", "soft": "soft_banned_words.txt", "subword": "banned_subwords.txt"}
NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")


def datatrove_assets() -> Path:
    """datatrove's asset folder, found without importing datatrove (which pulls in much more)."""
    import importlib.util

    spec = importlib.util.find_spec("datatrove")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the URL blocklists ship in the 'datatrove' package: pip install datatrove")
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def digests(values: list[str]) -> np.ndarray:
    """64-bit BLAKE2b digests, as unsigned integers (stable across processes and machines)."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little") for v in values],
        dtype=np.uint64,
    )


def _read_list(lines: list[str], normalise: bool) -> set[str]:
    entries = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    return {NON_ALNUM.sub("", e).lower() for e in entries} if normalise else entries


@cache
def word_lists(folder: str) -> dict[str, frozenset[str]]:
    base = Path(folder)
    return {
        name: frozenset(_read_list((base / file).read_text().splitlines(), normalise=True))
        for name, file in WORD_LISTS.items()
    }


def blocklist_digests(archive: Path, cache_dir: Path) -> np.ndarray:
    """Sorted digests of every listed domain and URL; built once per archive version, then memory-mapped."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir / f"url-blocklist-{key}.npy"
    if not cached.exists():
        values: list[str] = []
        with tarfile.open(archive, "r:gz") as tar:
            for member in ("domains", "urls"):
                handle = tar.extractfile(member)
                assert handle is not None
                values.extend(line.strip() for line in handle.read().decode("utf-8", "replace").splitlines())
        array = np.unique(digests([v for v in values if v and not v.startswith("#")]))
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(temporary, array)
        temporary.replace(cached)
    return np.load(cached, mmap_mode="r")


def _host_and_parents(url: str) -> list[str]:
    without_scheme = url.split("://", 1)[-1]
    host = without_scheme.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    labels = host.lower().strip(".").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] if len(labels) > 1 else [host.lower()]


@register_stage("url_blocklist")
class UrlBlocklistFilter(MapStage):
    """Reject documents whose URL is on the adult/malware blocklists or carries banned words."""

    soft_word_threshold: int = Field(default=2, ge=1)
    extra_domains: list[str] = Field(default_factory=list)
    assets_dir: str | None = Field(default=None, description="folder with the lists; default: datatrove's assets")
    cache_dir: str | None = Field(default=None, description="where the digest array is cached; default: temp dir")

    _blocked: np.ndarray | None = PrivateAttr(default=None)

    def setup(self) -> None:
        if self._blocked is None:
            assets = Path(self.assets_dir) if self.assets_dir else datatrove_assets()
            cache_dir = Path(self.cache_dir) if self.cache_dir else Path(tempfile.gettempdir()) / "refinery-cache"
            listed = blocklist_digests(assets / ARCHIVE, cache_dir)
            if self.extra_domains:
                listed = np.union1d(listed, digests([d.lower() for d in self.extra_domains]))
            self._blocked = listed
            self._words = word_lists(str(assets))

    def _listed(self, values: list[str]) -> np.ndarray:
        hashed = digests(values)
        positions = np.searchsorted(self._blocked, hashed)
        positions = np.minimum(positions, len(self._blocked) - 1)
        return np.asarray(self._blocked[positions] == hashed)

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        urls = batch.column(URL).to_pylist() if URL in batch.column_names else [None] * batch.num_rows
        reasons: list[str | None] = [None] * batch.num_rows
        candidates = [(row, _host_and_parents(url)) for row, url in enumerate(urls) if url]
        flat = [name for _, names in candidates for name in names]
        domain_hits = self._listed(flat) if flat else np.zeros(0, dtype=bool)
        offset = 0
        for row, names in candidates:
            if domain_hits[offset : offset + len(names)].any():
                reasons[row] = self.reason("domain")
            offset += len(names)
        present = [row for row, url in enumerate(urls) if url and reasons[row] is None]
        if present:
            exact = self._listed([urls[row].split("://", 1)[-1] for row in present])
            for row, hit in zip(present, exact, strict=True):
                if hit:
                    reasons[row] = self.reason("url")
            self._word_rules([row for row in present if reasons[row] is None], urls, reasons)
        keep = np.array([reason is None for reason in reasons], dtype=bool)
        return split_by_mask(batch, keep, reasons)

    def _word_rules(self, rows: list[int], urls: list[str | None], reasons: list[str | None]) -> None:
        if not rows:
            return
        lowered = pa.array([urls[row].lower() for row in rows], pa.string())
        words = pc.split_pattern_regex(lowered, "[^a-z0-9]+")
        normalised = pc.replace_substring_regex(lowered, "[^a-z0-9]+", "")
        subword_pattern = "|".join(re.escape(w) for w in sorted(self._words["subword"]) if w)
        subword_hits = pc.match_substring_regex(normalised, subword_pattern).to_pylist() if subword_pattern else []
        for position, row in enumerate(rows):
            url_words = set(words[position].as_py())
            if url_words & self._words["banned"]:
                reasons[row] = self.reason("hard_banned_word")
            elif len(url_words & self._words["soft"]) >= self.soft_word_threshold:
                reasons[row] = self.reason("soft_banned_words")
            elif subword_hits and subword_hits[position]:
                reasons[row] = self.reason("banned_subword")
