"""Mix optimizer benchmark: proxy training speed per core, and the whole optimisation's cost against K and workers.

One command: ``.venv/bin/python benchmarks/mix_bench.py --run-dir RUN [--config proxy|tiny] [--budget N]
[--counts 2,6] [--workers 1,2]`` (RUN: a finished run directory, e.g. ``refinery run recipes/llama3.yaml``).

* proxy training: ``train_on_manifest`` of the preset on the optimizer's pool mix in a process pinned to one core
  with one torch thread (what a proxy gets inside its Ray task); tokens/s over the optimizer steps after the
  first (the trainer's own per-step rate), and the whole call's wall time (set-up and evaluation included);
* optimisation: ``optimize`` end to end (buckets, pool, vocabulary, proxies, fit, search, validation, final
  write) for every K in ``--counts`` and every worker count in ``--workers``, each into a fresh folder, with one
  held-out mix and one comparison seed; wall seconds per step, proxies trained, the proxies' summed task seconds
  (core-seconds: a proxy task holds one core) and core-hours.

Results print as a table and land in ``/tmp/refinery-bench/mix_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path("/tmp/refinery-bench")


def _train_worker(manifest: str, config: str, budget: int, vocabulary: str) -> None:
    """Child process: one core, one thread, one proxy; prints one JSON line."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import numpy as np
    from safetensors.numpy import load_file

    from refinery.training.api import train_on_manifest
    from refinery.training.vocab import Vocabulary

    saved = load_file(vocabulary)
    vocab = Vocabulary(ids=saved["ids"].astype(np.int64), rare=bool(saved["rare"][0]))
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        summary = train_on_manifest(
            manifest, config=config, token_budget=budget, vocabulary=vocab, threads=1, output_dir=folder
        )
        wall = time.perf_counter() - started
        steps = [json.loads(line) for line in (Path(folder) / "log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["event"] == "step"]
    print(
        json.dumps(
            {
                "config": config,
                "tokens": summary["tokens"],
                "steps": summary["steps"],
                "tokens_per_s": steps[-1]["tokens_per_s"] if steps else None,
                "wall_s": round(wall, 2),
                "parameters": summary["parameters"],
            }
        )
    )


def proxy_speed(pool: Path, vocabulary: Path, config: str, budget: int) -> dict:
    command = [sys.executable, __file__, "--train-worker", str(pool), config, str(budget), str(vocabulary)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def optimisation(run_dir: str, config: str, budget: int, count: int, workers: int, folder: Path) -> dict:
    from refinery.mixes.optimizer.optimize import optimize

    mix = {
        "candidates": {"count": count},
        "proxy": {"config": config, "token_budget": budget, "eval_sequences": 8},
        "search": {"samples": 5000},
        "validation": {"heldout_mixes": 1, "seeds": [0]},
        "ray": {"num_cpus": workers, "workers": workers},
    }
    started = time.perf_counter()
    report = optimize(run_dir, mix, folder, progress=False)
    wall = time.perf_counter() - started
    proxies = report["proxies"]
    core_seconds = sum(p["train_seconds"] for p in proxies)
    return {
        "K": count,
        "workers": workers,
        "proxies": len(proxies),
        "wall_s": round(wall, 1),
        "steps_s": report["timings"],
        "proxy_core_s": round(core_seconds, 1),
        "core_hours": round((core_seconds + wall) / 3600, 4),  # proxies' cores + the driver's
        "cv_spearman": report["fit"]["cv_spearman"],
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--train-worker":
        _train_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--config", default="proxy", choices=("tiny", "proxy"))
    parser.add_argument("--budget", type=int, default=24576, help="tokens per proxy")
    parser.add_argument("--counts", default="2,6", help="K values (comma-separated)")
    parser.add_argument("--workers", default="1,2", help="worker counts (comma-separated)")
    parser.add_argument("--keep", action="store_true", help="keep the optimisation folders")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    base = Path(tempfile.mkdtemp(prefix="mix-bench-", dir=OUT if OUT.exists() else None))
    results: dict = {"config": args.config, "budget": args.budget, "cpus": os.cpu_count()}
    runs = []
    for count in [int(c) for c in args.counts.split(",")]:
        for workers in [int(w) for w in args.workers.split(",")]:
            runs.append(
                optimisation(args.run_dir, args.config, args.budget, count, workers, base / f"k{count}-w{workers}")
            )
            print(json.dumps(runs[-1]), flush=True)
    results["optimisation"] = runs
    first = base / f"k{runs[0]['K']}-w{runs[0]['workers']}" / "optimizer"
    results["proxy_training"] = [
        proxy_speed(first / "pool" / "manifest.json", first / "vocabulary.safetensors", c, args.budget)
        for c in ("tiny", "proxy")
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mix_bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{'preset':<8}{'tokens':>9}{'tokens/s/core':>15}{'wall s':>9}{'params':>11}")
    for row in results["proxy_training"]:
        print(
            f"{row['config']:<8}{row['tokens']:>9,}{row['tokens_per_s']:>15,.0f}{row['wall_s']:>9.1f}{row['parameters']:>11,}"
        )
    print(f"\n{'K':>3}{'workers':>9}{'proxies':>9}{'wall s':>9}{'proxy core-s':>14}{'core-h':>9}{'CV rho':>8}")
    for row in runs:
        print(
            f"{row['K']:>3}{row['workers']:>9}{row['proxies']:>9}{row['wall_s']:>9.1f}{row['proxy_core_s']:>14.1f}"
            f"{row['core_hours']:>9.4f}{row['cv_spearman']:>8.2f}"
        )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
