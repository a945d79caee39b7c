"""Step 1: the buckets of a run — documents, tokens, held-out slice, epoch cap — and the pool every mix draws from.

Token counts come in two passes, both through the shards writer's own code so nothing here can disagree with it:

1. :func:`scan_buckets` — a Ray task per final kept shard reads only the bucket column(s) and ``n_tokens`` (or
   counts tokens like the ``token_count`` stage when the run has no ``n_tokens``) and returns per-bucket totals;
   their shares are the natural distribution the candidates are drawn around.
2. :func:`write_pool` — one mix of every bucket at its natural share, at most once over each document (capped at
   ``vocabulary_tokens``), written by :func:`refinery.mixes.writer.write_mix` with the optimizer's held-out
   settings. Its manifest gives what the writer will use for every later mix: each bucket's held-out set and the
   tokens available outside it. Its held-out files are byte-identical to every candidate's (held-out sets depend
   on the ids and the held-out settings only), and its shards feed the one vocabulary every proxy shares.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.mixes import buckets as writer_buckets
from refinery.mixes.token_count import N_TOKENS, cached_tokenizer, count_tokens
from refinery.pipelines.manifest import load_manifest

from .config import BucketSettings


def _scan_shard(job: tuple[str, list[str], str]) -> dict[str, list[int]]:
    """Per bucket [documents, tokens] of one kept shard (reads only the columns it needs)."""
    from refinery.pipelines import storage

    path, columns, tokenizer = job
    fs, inner = storage.filesystem(path)
    totals: dict[str, list[int]] = {}
    with fs.open(inner, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: bucket column(s) {missing} not in the run's kept output (columns: {names})")
        wanted = list(dict.fromkeys([*columns, N_TOKENS if N_TOKENS in names else "text"]))
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=wanted)
            if N_TOKENS in names:
                tokens = table.column(N_TOKENS).fill_null(0).to_numpy().astype(np.int64)
            else:
                tokens = count_tokens(cached_tokenizer(tokenizer), table.column("text")).astype(np.int64)
            labels = writer_buckets.bucket_labels(table, columns).to_numpy(zero_copy_only=False)
            names_here, inverse = np.unique(labels, return_inverse=True)
            docs = np.bincount(inverse, minlength=len(names_here))
            sums = np.bincount(inverse, weights=tokens, minlength=len(names_here))
            for name, d, t in zip(names_here.tolist(), docs.tolist(), sums.tolist(), strict=True):
                entry = totals.setdefault(name, [0, 0])
                entry[0] += int(d)
                entry[1] += round(t)
    return totals


def scan_buckets(run_dir: str, columns: list[str], tokenizer: str | None = None) -> dict[str, dict[str, int]]:
    """``{bucket: {"documents", "tokens"}}`` over the run's final kept shards (Ray tasks, one per shard)."""
    from refinery.mixes.writer import ray_map, read_run, recipe_tokenizer
    from refinery.pipelines import storage
    from refinery.pipelines.models import DEFAULT_TOKENIZER

    _run, recipe, kept = read_run(run_dir)
    reference = recipe_tokenizer(recipe) or tokenizer or DEFAULT_TOKENIZER
    parts = ray_map(_scan_shard, [(storage.join(run_dir, k), columns, reference) for k in kept])
    merged: dict[str, list[int]] = {}
    for part in parts:
        for name, (docs, tokens) in part.items():
            entry = merged.setdefault(name, [0, 0])
            entry[0] += docs
            entry[1] += tokens
    return {name: {"documents": d, "tokens": t} for name, (d, t) in sorted(merged.items())}


@dataclass(frozen=True)
class BucketTable:
    """The buckets in a fixed (sorted) order; every weight vector of the optimizer uses this order."""

    names: list[str]
    documents: list[int]
    tokens: list[int]
    available_tokens: list[int]  # outside the held-out set: what training shards can hold per epoch
    heldout_documents: list[int]
    heldout_tokens: list[int]
    max_epochs: list[float]

    @property
    def natural(self) -> np.ndarray:
        """The natural mix: each bucket's share of the tokens available for training."""
        available = np.asarray(self.available_tokens, dtype=np.float64)
        return available / available.sum()

    @property
    def uniform(self) -> np.ndarray:
        return np.full(len(self.names), 1.0 / len(self.names))

    def max_weights(self, budget: int) -> np.ndarray:
        """The largest share of ``budget`` tokens each bucket can fill within its epoch cap (slightly under it).

        The margin (one part in 10^6 and 2 tokens) absorbs the writer's rounding of token targets, so a mix that
        passes here never fails the writer's own epoch check.
        """
        available = np.asarray(self.available_tokens, dtype=np.float64)
        caps = np.asarray(self.max_epochs, dtype=np.float64)
        return np.clip((available * caps * (1 - 1e-6) - 2) / budget, 0.0, 1.0)

    def feasible(self, weights: np.ndarray, budget: int) -> np.ndarray:
        """Row mask: every bucket of the mix within its epoch cap at ``budget`` tokens."""
        return np.all(np.atleast_2d(weights) <= self.max_weights(budget) + 1e-12, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BucketTable:
        return cls(**data)


def pool_weights(settings: BucketSettings, scan: dict[str, dict[str, int]], vocabulary_tokens: int) -> dict[str, Any]:
    """The pool's weights file: natural shares, at most one pass, the optimizer's held-out settings."""
    names = selected_buckets(settings, scan)
    total = sum(scan[n]["tokens"] for n in names)
    return {
        "bucket_column": settings.column,
        "total_tokens": vocabulary_tokens if total > 2 * vocabulary_tokens else None,
        "max_epochs": 1.0,
        "heldout_fraction": settings.heldout_fraction,
        "heldout_max_documents": settings.heldout_max_documents,
        "heldout_seed": settings.heldout_seed,
        "buckets": {n: {"weight": float(scan[n]["tokens"])} for n in names},
    }


def selected_buckets(settings: BucketSettings, scan: dict[str, dict[str, int]]) -> list[str]:
    """The buckets taking part, sorted; an ``include`` naming a bucket the run lacks is an error."""
    if settings.include is None:
        names = [n for n in scan if scan[n]["tokens"] > 0]
    else:
        unknown = sorted(set(settings.include) - set(scan))
        if unknown:
            raise ValueError(f"buckets.include names {unknown}, not in the run (buckets: {sorted(scan)})")
        names = list(settings.include)
    if len(names) < 2:
        raise ValueError(f"a mix needs at least two buckets with tokens; the run has {names}")
    return sorted(names)


def write_pool(
    run_dir: str, settings: BucketSettings, scan: dict, vocabulary_tokens: int, output: Path, seed: int
) -> Path:
    """Write the pool mix (see the module docstring) at the proxies' seed; returns its manifest path."""
    from refinery.mixes.writer import write_mix

    return write_mix(run_dir, pool_weights(settings, scan, vocabulary_tokens), output, seed=seed)


INDEX_FOLDER = ("_work", "index")  # the shards writer's per-input-shard index and its markers


def seed_index(pool_dir: Path, mix_dir: Path) -> int:
    """Hard-link (or copy) the pool's per-shard indexes into a proxy's mix folder; returns the files linked.

    The index of an input shard depends on the run, the bucket column(s), the tokenizer, the held-out seed and the
    sampling seed — not on the weights — and its marker records a fingerprint of exactly those, which the writer
    checks before reusing it. So a proxy at the pool's seed reuses the pool's indexes instead of reading (and, in a
    run without ``n_tokens``, tokenising) every kept shard again; at another seed the fingerprints differ and the
    writer rebuilds them. A missing or changed layout only costs that time, never correctness.
    """
    source = pool_dir.joinpath(*INDEX_FOLDER)
    if not source.is_dir():
        return 0
    target = mix_dir.joinpath(*INDEX_FOLDER)
    target.mkdir(parents=True, exist_ok=True)
    linked = 0
    for path in sorted(source.iterdir()):
        destination = target / path.name
        if destination.exists() or not path.is_file() or path.name.startswith("."):
            continue
        try:
            os.link(path, destination)
        except OSError:
            shutil.copyfile(path, destination)
        linked += 1
    return linked


def bucket_table(settings: BucketSettings, scan: dict[str, dict[str, int]], pool_manifest: Path) -> BucketTable:
    """The table of the selected buckets, with held-out and available tokens as the pool's writer planned them."""
    manifest = load_manifest(pool_manifest)
    names = selected_buckets(settings, scan)
    entries = [manifest["buckets"][n] for n in names]
    return BucketTable(
        names=names,
        documents=[scan[n]["documents"] for n in names],
        tokens=[scan[n]["tokens"] for n in names],
        available_tokens=[int(e["available_tokens"]) for e in entries],
        heldout_documents=[int(e["heldout_documents"]) for e in entries],
        heldout_tokens=[int(e["heldout_tokens"]) for e in entries],
        max_epochs=[settings.cap(n) for n in names],
    )


def heldout_table(pool_manifest: Path) -> pa.Table:
    """Every held-out document of the pool (all buckets), in manifest order."""
    manifest = load_manifest(pool_manifest)
    parts = [pq.read_table(Path(pool_manifest).parent / e["path"]) for _, e in sorted(manifest["heldout"].items())]
    return pa.concat_tables(parts) if parts else pa.table({})
