"""``optimize``: steps 1–6 in order — buckets, candidates, proxies, fit and search, validation, the chosen mix.

Output directory::

    manifest.json, shards/, heldout/   the chosen mix, written by the shards writer (train on this manifest)
    mix_report.json                    everything below, plus timings
    plots/*.png                        see :mod:`refinery.mixes.optimizer.report`
    optimizer/buckets.json             step 1: documents, tokens, held-out and available tokens, epoch caps
    optimizer/pool/                    the pool mix (held-out sets, vocabulary source; see buckets.py)
    optimizer/vocabulary.safetensors   the compact vocabulary every proxy shares
    optimizer/targets/                 the quality target, when the score column exists
    optimizer/proxies/NAME/            one folder per proxy (see proxies.py); result.json marks it done
    optimizer/fit.json                 the chosen model's parameters and every family's cross-validation

The manifest's ``selection`` records how the weights were chosen: every proxy (weights, seed, losses,
objective), the fit (family, cross-validated Spearman of each family), the search, and the validation. It holds no
timings, so the same run directory, config and seeds give the same manifest (proxy training on CPU with one
torch thread is deterministic).

Resume: every step writes its files before the next starts, the shards writer skips shards it already wrote, and
a proxy with a current ``result.json`` is never retrained: running the same command again after a kill redoes
only unfinished proxies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from refinery.pipelines import storage
from refinery.pipelines.manifest import load_manifest

from .buckets import BucketTable, bucket_table, scan_buckets, write_pool
from .candidates import Mix, candidate_mixes, validation_mixes
from .config import MixConfig, load_config
from .fit import choose_model
from .proxies import ProxyContext, ProxySpec, base_fingerprint, run_proxies, weights_file
from .report import slice_curves, write_plots
from .search import search
from .targets import objective, quality_target_name, target_weights, write_quality_target
from .validate import heldout_validation, seed_comparison

REPORT = "mix_report.json"


def _json(path: Path, data: Any) -> None:
    storage.write_json_file(path, data)


def ensure_vocabulary(pool_manifest: Path, config: MixConfig, path: Path) -> Path:
    """The compact vocabulary of the pool (the proxy preset's size), built once and reused while the pool is."""
    from refinery.pipelines.models import load_tokenizer
    from refinery.training.model import VOCAB_SIZE
    from refinery.training.trainer import preset
    from refinery.training.vocab import Vocabulary, build_vocabulary, save_vocabulary

    pool = load_manifest(pool_manifest)
    max_size = preset(config.proxy.config, **config.proxy.overrides).vocab_max
    key = {"pool": pool["plan_fingerprint"], "run": pool["run"]["fingerprint"], "max_size": max_size}
    stamp = path.with_suffix(".json")
    if path.exists() and stamp.exists() and json.loads(stamp.read_text()) == key:
        return path
    if max_size is None:
        vocabulary = Vocabulary(ids=np.arange(VOCAB_SIZE, dtype=np.int64))
    else:
        vocabulary = build_vocabulary(pool_manifest, load_tokenizer(pool["tokenizer"]["reference"]), max_size)
    save_vocabulary(vocabulary, path)
    _json(stamp, key)
    return path


def _comparison_specs(
    config: MixConfig, chosen: tuple[float, ...], anchors: list[Mix]
) -> tuple[list[ProxySpec], dict[str, dict[int, str]]]:
    """Chosen, natural and uniform at every comparison seed; the anchors at the proxy seed are the candidates."""
    specs, names = [], {}
    for label, weights, base in (
        ("chosen", chosen, None),
        ("natural", anchors[0].weights, anchors[0].name),
        ("uniform", anchors[1].weights, anchors[1].name),
    ):
        names[label] = {}
        for seed in config.validation.seeds:
            if base is not None and seed == config.proxy.seed:
                names[label][seed] = base
                continue
            spec = ProxySpec(f"{label}-s{seed}", weights, seed, "comparison")
            specs.append(spec)
            names[label][seed] = spec.name
    return specs, names


def _selection(report: dict[str, Any]) -> dict[str, Any]:
    """What the manifest records about how its weights were chosen (no timings: the manifest stays reproducible)."""
    fit = report["fit"]
    return {
        "method": "refinery-mix",
        "description": "RegMix-style proxies on Dirichlet candidates, regression chosen by cross-validated Spearman",
        "config": report["config"],
        "objective": report["objective"],
        "proxies": [
            {k: p[k] for k in ("name", "role", "seed", "weights", "losses", "objective")} for p in report["proxies"]
        ],
        "fit": {
            "family": fit["family"],
            "cv_spearman": fit["cv_spearman"],
            "cross_validation": [
                {k: s[k] for k in ("family", "spearman", "rmse", "per_target_spearman")}
                for s in fit["cross_validation"]
            ],
            "parameters": "optimizer/fit.json",
        },
        "search": {
            k: report["search"][k] for k in ("predicted_objective", "lower", "upper", "samples", "refine_rounds")
        },
        "validation": {
            "heldout_spearman": report["validation"]["heldout"]["spearman"],
            "heldout_rmse": report["validation"]["heldout"]["rmse"],
            "comparison": {
                m: {k: v for k, v in s.items() if k in ("mean", "std", "objective", "seeds")}
                for m, s in report["comparison"]["summary"].items()
                if isinstance(s, dict) and "mean" in s
            },
        },
    }


def optimize(
    run_dir: str | Path, config: str | Path | dict | MixConfig, output_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Run steps 1–6 (see the module docstring); returns the report also written to ``mix_report.json``."""
    from refinery.mixes.writer import write_mix
    from refinery.pipelines.ray_session import ray_session

    config = load_config(config)
    run_dir, output = str(run_dir).rstrip("/"), Path(output_dir)
    work = output / "optimizer"
    timings: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now
        if progress:
            print(f"[mix] {name}: {timings[name]:.1f} s", file=sys.stderr)

    def say(message: str) -> None:
        if progress:
            print(f"[mix] {message}", file=sys.stderr)

    with ray_session(config.ray.address, config.ray.num_cpus) as resources:
        workers = config.ray.workers or max(1, int(resources.get("CPU", 1)))
        # 1. buckets and the pool
        scan = scan_buckets(run_dir, config.buckets.columns)
        pool = write_pool(
            run_dir, config.buckets, scan, config.proxy.vocabulary_tokens, work / "pool", config.proxy.seed
        )
        table: BucketTable = bucket_table(config.buckets, scan, pool)
        _json(work / "buckets.json", table.to_dict())
        vocabulary = ensure_vocabulary(pool, config, work / "vocabulary.safetensors")
        quality = None
        if config.targets.quality is not None:
            quality = write_quality_target(pool, config.targets.quality, work / "targets" / "quality.parquet")
        extra = {quality["name"]: Path(quality["path"]) for quality in [quality] if quality is not None}
        with_heldout = [n for n, d in zip(table.names, table.heldout_documents, strict=True) if d > 0]
        weights_by_target = target_weights(
            config.targets, table.names, with_heldout, quality_target_name(config.targets.quality) if quality else None
        )
        lap("buckets")
        sizes = zip(table.names, table.available_tokens, strict=True)
        say("buckets: " + ", ".join(f"{n} ({t:,} tokens)" for n, t in sizes))
        # 2. candidates
        budget = config.proxy.token_budget
        candidates = candidate_mixes(table, config.candidates, budget, config.seed)
        held = validation_mixes(table, config.candidates, budget, config.seed, config.validation.heldout_mixes)
        context = ProxyContext(
            run_dir=run_dir,
            root=work,
            table=table,
            buckets=config.buckets,
            proxy=config.proxy,
            vocabulary_path=vocabulary,
            extra_targets=extra,
            base_fingerprint=base_fingerprint(pool, vocabulary, config.proxy, extra),
        )
        seed = config.proxy.seed
        specs = [ProxySpec(m.name, m.weights, seed, "candidate") for m in candidates]
        specs += [ProxySpec(m.name, m.weights, seed, "validation") for m in held]
        lap("candidates")
        # 3. proxies (candidates and held-out mixes in one parallel batch)
        results = run_proxies(context, specs, workers, progress)
        lap("proxies")
        # 4. fit and search (candidates only)
        names = [m.name for m in candidates]
        x = np.asarray([m.weights for m in candidates])
        targets = list(weights_by_target)
        losses = np.asarray([[results[n]["losses"][t] for t in targets] for n in names])
        model, cv = choose_model(
            list(config.fit.families), x, losses, targets, weights_by_target, config.fit.folds, config.seed
        )
        found = search(
            model, table, config.search, config.candidates.concentrations, budget, config.output.total_tokens, x
        )
        _json(work / "fit.json", {"model": model.to_dict(), "cross_validation": cv})
        lap("fit")
        # 5. validation: the chosen mix at every seed, natural and uniform beside it
        chosen = tuple(found["weights"])
        comparison_specs, comparison_names = _comparison_specs(config, chosen, candidates[:2])
        results.update(run_proxies(context, comparison_specs, workers, progress))
        lap("validation")
        chosen_at_seed = comparison_names["chosen"].get(seed)
        validation_names = [m.name for m in held] + ([chosen_at_seed] if chosen_at_seed else [])
        report: dict[str, Any] = {
            "format": "refinery-mix-report",
            "run_dir": run_dir,
            "config": config.model_dump(mode="json"),
            "buckets": table.to_dict() | {"natural": table.natural.tolist(), "uniform": table.uniform.tolist()},
            "objective": {"targets": weights_by_target, "quality_target": quality},
            "proxies": [
                {**results[s.name], "objective": objective(results[s.name]["losses"], weights_by_target)}
                for s in specs + comparison_specs
            ],
            "fit": {
                "family": model.family,
                "cv_spearman": next(s["spearman"] for s in cv if s["family"] == model.family),
                "cross_validation": cv,
                "candidates": names,
            },
            "search": found
            | {"slices": slice_curves(model, table.names, found["weights"], found["lower"], found["upper"])},
            "chosen": {
                "weights": dict(zip(table.names, found["weights"], strict=True)),
                "predicted_objective": found["predicted_objective"],
            },
            "validation": {"heldout": heldout_validation(model, validation_names, results, table.names)},
            "comparison": {
                "mixes": {
                    "chosen": dict(zip(table.names, chosen, strict=True)),
                    "natural": dict(zip(table.names, candidates[0].weights, strict=True)),
                    "uniform": dict(zip(table.names, candidates[1].weights, strict=True)),
                },
                "proxies": comparison_names,
                "summary": seed_comparison(
                    {m: {s: results[n] for s, n in by.items()} for m, by in comparison_names.items()},
                    weights_by_target,
                ),
            },
        }
        # 6. the chosen mix through the shards writer
        final = weights_file(context, chosen, config.output.total_tokens)
        final.pop("shard_rows", None)
        if config.output.shard_rows is not None:
            final["shard_rows"] = config.output.shard_rows
        elif config.output.shard_bytes is not None:
            final["shard_bytes"] = config.output.shard_bytes
        manifest = write_mix(run_dir, final, output, seed=config.output.seed, selection=_selection(report))
        lap("write")
    report["manifest"] = str(manifest.relative_to(output)) if manifest.is_relative_to(output) else str(manifest)
    report["plots"] = write_plots(report, output / "plots")
    proxy_seconds = sum(p["train_seconds"] + p["write_seconds"] for p in report["proxies"])
    timings["total"] = round(time.perf_counter() - started, 3)
    report["timings"] = timings | {"proxy_core_seconds": round(proxy_seconds, 3), "workers": workers}
    _json(output / REPORT, report)
    return report
