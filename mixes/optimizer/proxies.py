"""Step 3: proxy runs — per mix, its shards (the shards writer) and a small model trained on them (Ray tasks).

Every proxy of one optimisation trains the same trainer preset for the same token budget on shards drawn from the
same pool, shares one compact vocabulary (built once over the pool, so losses are comparable across mixes; see
:mod:`refinery.training.vocab`) and is scored on the same held-out files. What differs is the weights and, for the
seed comparison, the seed (the writer's sampling seed and the trainer's seed are the same number).

Layout under the optimizer's work folder::

    proxies/NAME/mix/            the writer's output (manifest.json, shards/, heldout/) + proxy_manifest.json
    proxies/NAME/train/          the trainer's folder (log.jsonl, loss.png, summary.json; checkpoints removed)
    proxies/NAME/result.json     the completion marker: fingerprint, weights, seed, losses per target, timings

Resume: a proxy whose ``result.json`` carries the current fingerprint (weights, seed, trainer settings, budget,
the pool's run fingerprint, the vocabulary and the target files) is done and is never redone; any other proxy
starts again from a clean ``train/`` folder (the writer itself skips shards it already wrote). ``result.json`` is
written atomically and last, so a killed optimisation redoes exactly the proxies without one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinery.pipelines import storage
from refinery.pipelines.executor import map_tasks
from refinery.pipelines.manifest import load_manifest

from .buckets import BucketTable
from .config import BucketSettings, ProxySettings

RESULT = "result.json"


@dataclass(frozen=True)
class ProxySpec:
    """One proxy to train: a named mix at a seed; ``role`` is candidate, validation or comparison."""

    name: str
    weights: tuple[float, ...]
    seed: int
    role: str


@dataclass
class ProxyContext:
    """What every proxy of one optimisation shares."""

    run_dir: str
    root: Path  # the optimizer's work folder
    table: BucketTable
    buckets: BucketSettings
    proxy: ProxySettings
    vocabulary_path: Path
    extra_targets: dict[str, Path] = field(default_factory=dict)
    base_fingerprint: str = ""

    def directory(self, spec: ProxySpec) -> Path:
        return self.root / "proxies" / spec.name


def _sha(data: Any) -> str:
    return storage.fingerprint(data)


def base_fingerprint(pool_manifest: Path, vocabulary_path: Path, proxy: ProxySettings, targets: dict[str, Path]) -> str:
    """What all proxies depend on besides their weights and seed."""
    pool = load_manifest(pool_manifest)
    return _sha(
        {
            "run": pool["run"]["fingerprint"],
            "heldout": {k: v["sha256"] for k, v in sorted(pool.get("heldout", {}).items())},
            "vocabulary": hashlib.sha256(Path(vocabulary_path).read_bytes()).hexdigest(),
            "proxy": proxy.model_dump(mode="json"),
            "targets": {k: hashlib.sha256(Path(p).read_bytes()).hexdigest() for k, p in sorted(targets.items())},
        }
    )


def proxy_fingerprint(context: ProxyContext, spec: ProxySpec) -> str:
    return _sha({"base": context.base_fingerprint, "weights": [repr(w) for w in spec.weights], "seed": spec.seed})


def weights_file(context: ProxyContext, weights: tuple[float, ...], total_tokens: int | None) -> dict[str, Any]:
    """The shards writer's weights for a mix: every bucket named (weight 0 too: its held-out set stays)."""
    table, settings = context.table, context.buckets
    data: dict[str, Any] = {
        "bucket_column": settings.column,
        "total_tokens": total_tokens,
        "heldout_fraction": settings.heldout_fraction,
        "heldout_max_documents": settings.heldout_max_documents,
        "heldout_seed": settings.heldout_seed,
        "buckets": {
            name: {"weight": float(w), "max_epochs": float(cap)}
            for name, w, cap in zip(table.names, weights, table.max_epochs, strict=True)
        },
    }
    if context.proxy.shard_rows is not None:
        data["shard_rows"] = context.proxy.shard_rows
    return data


def load_result(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A finished proxy's result, or None (missing, unreadable, another fingerprint, incomplete)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if result.get("fingerprint") != fingerprint or not result.get("complete"):
        return None
    return result


def train_proxy(job: dict[str, Any]) -> dict[str, Any]:
    """Train one proxy and write its ``result.json`` (runs inside a Ray task; one torch thread there)."""
    from refinery.training.api import read_log, train_on_manifest
    from refinery.training.vocab import load_vocabulary

    train_dir = Path(job["train_dir"])
    if train_dir.exists():  # a killed attempt's folder: the trainer refuses a folder holding a run
        shutil.rmtree(train_dir)
    vocabulary = load_vocabulary(job["vocabulary_path"])
    started = time.perf_counter()
    summary = train_on_manifest(
        job["manifest"],
        config=job["config"],
        token_budget=job["token_budget"],
        seed=job["seed"],
        output_dir=train_dir,
        vocabulary=vocabulary,
        eval_sequences=job["eval_sequences"],
        **job["overrides"],
    )
    seconds = time.perf_counter() - started
    shutil.rmtree(train_dir / "checkpoints", ignore_errors=True)  # ~40 MB per proxy, never resumed from
    step_rates = [record["tokens_per_s"] for record in read_log(train_dir, event="step")]
    result = {
        "name": job["name"],
        "role": job["role"],
        "fingerprint": job["fingerprint"],
        "weights": job["weights"],
        "seed": job["seed"],
        "losses": summary["eval_losses"],
        "tokens": summary["tokens"],
        "steps": summary["steps"],
        "parameters": summary["parameters"],
        "vocab_size": summary["vocab_size"],
        "write_seconds": job["write_seconds"],
        "train_seconds": round(seconds, 3),
        "train_tokens_per_s": round(step_rates[-1], 1) if step_rates else None,
        "complete": True,
    }
    storage.write_json_file(job["result_path"], result)
    return result


def write_proxy_mix(context: ProxyContext, spec: ProxySpec) -> tuple[Path, float]:
    """The proxy's shards through the shards writer; returns (the manifest it trains on, seconds)."""
    from refinery.mixes.writer import write_mix

    from .buckets import seed_index
    from .targets import proxy_manifest

    started = time.perf_counter()
    folder = context.directory(spec) / "mix"
    seed_index(context.root / "pool", folder)
    manifest = write_mix(
        context.run_dir,
        weights_file(context, spec.weights, context.proxy.token_budget),
        folder,
        seed=spec.seed,
        selection={"method": "refinery-mix proxy", "proxy": spec.name, "role": spec.role},
    )
    return proxy_manifest(manifest, context.extra_targets), time.perf_counter() - started


def run_proxies(
    context: ProxyContext, specs: list[ProxySpec], workers: int, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Results of every spec: finished ones read back, the others written and trained (``workers`` at once)."""

    results: dict[str, dict[str, Any]] = {}
    pending: list[tuple[ProxySpec, str]] = []
    for spec in specs:
        fingerprint = proxy_fingerprint(context, spec)
        done = load_result(context.directory(spec) / RESULT, fingerprint)
        if done is not None:
            results[spec.name] = done
        else:
            pending.append((spec, fingerprint))
    if progress:
        print(f"proxies: {len(results)} done before, {len(pending)} to train", file=sys.stderr)
    jobs = []
    for spec, fingerprint in pending:
        folder = context.directory(spec)
        stale = folder / RESULT
        if stale.exists():  # another fingerprint: its shards and run are of other settings
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        manifest, write_seconds = write_proxy_mix(context, spec)
        jobs.append(
            {
                "name": spec.name,
                "role": spec.role,
                "fingerprint": fingerprint,
                "weights": dict(zip(context.table.names, spec.weights, strict=True)),
                "seed": spec.seed,
                "manifest": str(manifest),
                "train_dir": str(folder / "train"),
                "result_path": str(folder / RESULT),
                "vocabulary_path": str(context.vocabulary_path),
                "config": context.proxy.config,
                "token_budget": context.proxy.token_budget,
                "eval_sequences": context.proxy.eval_sequences,
                "overrides": dict(context.proxy.overrides),
                "write_seconds": round(write_seconds, 3),
            }
        )
    trained = map_tasks(train_proxy, jobs, in_flight=workers, description="proxies" if progress else None)
    for job, result in zip(jobs, trained, strict=True):
        results[job["name"]] = result
        if progress:
            print(
                f"proxy {job['name']}: {result['train_seconds']:.1f} s, losses "
                + ", ".join(f"{k}={v:.3f}" for k, v in sorted(result["losses"].items())),
                file=sys.stderr,
            )
    return {spec.name: results[spec.name] for spec in specs}
