"""``refinery mix RUN_DIR --config MIX.yaml --output DIR``: the data-mix optimizer as a CLI verb.

Verbs are discovered from ``refinery.mixes.commands``; until that module imports this one, run the verb with
``python -m refinery.mixes.optimizer mix RUN_DIR --config MIX.yaml --output DIR`` (same arguments, same code).
Heavy imports stay inside the handler so ``refinery --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from refinery.pipelines.commands import register_command


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory (run.json lists its kept shards)")
    parser.add_argument("--config", required=True, help="mix config YAML (docs/mix.md, recipes/mixes/mix_sample.yaml)")
    parser.add_argument("--output", required=True, help="output directory: the chosen mix, mix_report.json, plots")
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: embedded")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: the config's, else all)")
    parser.add_argument("--workers", type=int, help="proxies trained at once (default: the config's, else the CPUs)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


@register_command("mix", "choose a data mix with proxy runs and a fitted mixing law; write it as shards", _configure)
def mix(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from refinery.mixes.sampling import MixPlanError

    from .config import load_config
    from .optimize import optimize

    try:
        config = load_config(args.config)
    except (OSError, ValueError, ValidationError) as error:
        print(f"refinery mix: invalid config {args.config}: {error}", file=sys.stderr)
        return 2
    ray = config.ray.model_copy(
        update={
            k: v
            for k, v in (("address", args.address), ("num_cpus", args.num_cpus), ("workers", args.workers))
            if v is not None
        }
    )
    config = config.model_copy(update={"ray": ray})
    try:
        report = optimize(args.run_dir, config, args.output, progress=not args.quiet)
    except (MixPlanError, FileNotFoundError, ValueError) as error:
        print(f"refinery mix: {error}", file=sys.stderr)
        return 2
    chosen = report["chosen"]["weights"]
    summary = report["comparison"]["summary"]
    print(f"{'bucket':<28}{'natural':>10}{'uniform':>10}{'chosen':>10}")
    for name in report["buckets"]["names"]:
        mixes = report["comparison"]["mixes"]
        print(f"{name:<28}{mixes['natural'][name]:>10.4f}{mixes['uniform'][name]:>10.4f}{chosen[name]:>10.4f}")
    print(
        f"fit: {report['fit']['family']} (cross-validated Spearman {report['fit']['cv_spearman']:.3f}); "
        f"held-out mixes Spearman {report['validation']['heldout']['spearman']}"
    )
    for name in ("chosen", "natural", "uniform"):
        s = summary[name]
        print(f"{name:<8} objective {s['mean']:.4f} ± {s['std']:.4f} over seeds {s['seeds']}")
    print(f"manifest: {args.output}/{report['manifest']}; report: {args.output}/mix_report.json")
    return 0
