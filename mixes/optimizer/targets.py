"""What a proxy is scored on: the held-out slice of every bucket, and the top-scored held-out documents.

The trainer evaluates every ``heldout`` entry of the manifest it trains on. The bucket targets are the writer's
own held-out sets (identical across mixes). The quality target — the top ``top_fraction`` of all held-out
documents by a score column (``quality_score`` from the classifiers, or any numeric kept column) — is one more
Parquet file written once; each proxy gets a copy inside its mix folder and a ``proxy_manifest.json`` that lists it
as one more held-out entry named ``@top:COLUMN``. The writer's ``manifest.json`` is left as written. Taking the
quality target from the held-out sets means no proxy ever trains on a document it is scored on.

The objective is the weighted mean of the target losses, ``sum(a_t L_t) / sum(a_t)``: a weighted sum kept on the
scale of a loss (nats per token), so objectives of configs with different weights stay readable side by side.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.mixes.buckets import seeded_keys
from refinery.pipelines.manifest import load_manifest, write_manifest
from refinery.pipelines.storage import file_digest

from .buckets import heldout_table
from .config import QualityTarget, TargetSettings

QUALITY_PREFIX = "@top:"


def quality_target_name(target: QualityTarget) -> str:
    return f"{QUALITY_PREFIX}{target.column}"


def write_quality_target(pool_manifest: Path, target: QualityTarget, path: Path) -> dict | None:
    """Write the top-scored held-out documents to ``path``; None when the column is absent (or nothing is held out).

    Ties are broken by id, so the file is the same bytes for the same held-out sets. The rows are stored in a
    seeded hash order of their ids, not bucket by bucket: the trainer scores the first ``eval_sequences`` packed
    sequences of a target, and those must be a fair sample of the whole target, not its alphabetically first
    buckets.
    """
    table = heldout_table(pool_manifest)
    if table.num_rows == 0 or target.column not in table.column_names:
        return None
    scores = pc.fill_null(table.column(target.column).cast(pa.float64()), float("-inf")).to_numpy()
    ids = np.asarray(table.column("id").to_pylist(), dtype=str)
    order = np.lexsort((ids, -scores))  # highest score first, then id
    take = max(1, round(target.top_fraction * table.num_rows))
    chosen = order[:take]
    shuffle = np.argsort(seeded_keys(ids[chosen].tolist(), "refinery-quality-target"), kind="stable")
    top = table.take(pa.array(chosen[shuffle]))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    pq.write_table(top, temporary, compression="zstd", row_group_size=1000)
    temporary.replace(path)
    return {
        "name": quality_target_name(target),
        "column": target.column,
        "documents": top.num_rows,
        "tokens": int(pc.sum(top.column("n_tokens")).as_py() or 0),
        "min_score": float(scores[order[take - 1]]),
        "path": str(path),
    }


def proxy_manifest(manifest_path: Path, extra_targets: dict[str, Path]) -> Path:
    """The manifest a proxy trains on: the writer's, plus each extra target as a held-out entry (copied in)."""
    manifest_path = Path(manifest_path)
    if not extra_targets:
        return manifest_path
    manifest = load_manifest(manifest_path)
    heldout = dict(manifest.get("heldout", {}))
    for index, (name, source) in enumerate(sorted(extra_targets.items())):
        relative = f"targets/target-{index:02d}.parquet"
        destination = manifest_path.parent / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        size, sha = file_digest(destination)
        rows = pq.ParquetFile(destination).metadata.num_rows
        tokens = int(pc.sum(pq.read_table(destination, columns=["n_tokens"]).column(0)).as_py() or 0)
        heldout[name] = {"path": relative, "rows": rows, "tokens": tokens, "bytes": size, "sha256": sha}
    manifest["heldout"] = heldout
    return write_manifest(manifest_path.parent, manifest, "proxy_manifest.json")


def target_weights(
    settings: TargetSettings, buckets: list[str], heldout: list[str], quality_name: str | None
) -> dict[str, float]:
    """The objective's weight per target name (targets with weight 0 are dropped).

    ``heldout`` lists the buckets that have a held-out set: a bucket too small for one (a handful of documents
    at ``heldout_fraction``) is mixed but cannot be a target; naming it in ``bucket_weights`` is an error.
    """
    weights: dict[str, float] = {}
    if settings.buckets:
        unknown = sorted(set(settings.bucket_weights) - set(buckets))
        if unknown:
            raise ValueError(f"targets.bucket_weights names {unknown}, not buckets of the mix ({buckets})")
        without = sorted(b for b in settings.bucket_weights if b not in heldout and settings.bucket_weights[b] > 0)
        if without:
            raise ValueError(f"targets.bucket_weights names {without}, which have no held-out documents")
        weights.update({b: float(settings.bucket_weights.get(b, 1.0)) for b in heldout})
    if quality_name is not None and settings.quality is not None:
        weights[quality_name] = float(settings.quality.weight)
    weights = {k: v for k, v in weights.items() if v > 0}
    if not weights:
        raise ValueError("every target has weight 0: the objective is empty")
    return weights


def objective(losses: dict[str, float], weights: dict[str, float]) -> float:
    """``sum(a_t L_t) / sum(a_t)`` over the weighted targets (every one must have a loss)."""
    missing = sorted(set(weights) - set(losses))
    if missing:
        raise KeyError(f"no loss for target(s) {missing}")
    total = sum(weights.values())
    return float(sum(weights[t] * losses[t] for t in weights) / total)
