"""Proxy training speed on one CPU core: the trainer's CPU paths against the plain paths, and one whole proxy.

One command: ``.venv/bin/python benchmarks/proxy_bench.py [--steps 12] [--manifest M] [--proxy-tokens 1048576]``.

* **Paired steps** (always): two trainers of the same preset (``proxy`` by default: 6 layers, d = 128, 512-token
  rows, 4,096 tokens a step) on the same manifest, same seed, in one process pinned to one core with one torch
  thread, stepped in turn A B A B ... so load from other jobs falls on both alike:
  ``plain`` = the trainer before the CPU paths (``backend: sdpa_dense`` — one dense document mask for the whole
  batch — and ``loss_chunk_rows: 0`` — the whole ``tokens × vocabulary`` logits and ``F.cross_entropy``);
  ``cpu`` = the CPU defaults (attention one document at a time through ``is_causal``, the loss in 256-token
  chunks). Prints
  tokens/s per core of each (wall, and per CPU-second of the process: on a shared machine the CPU time is the
  figure that does not count the time the core spent on other jobs), the median of the per-step ratios, and the
  largest difference between their step losses (they train the same model: the difference is float summation
  order).
* **One whole proxy** (``--proxy-tokens N``): :func:`refinery.training.api.train_on_manifest` with the defaults
  of ``--device`` (``cpu``: one core, per-document attention, chunked loss; ``cuda``: FlexAttention, bf16
  autocast), as the mix optimizer's task runs it (the shared vocabulary built first and timed apart, as the
  optimizer builds it once; set-up and evaluation included): wall and CPU seconds, tokens/s (per core on CPU).
  ``--steps 0 --proxy-tokens 1048576 --device cuda`` is the proxy figure of ``benchmarks/gpu_check.sh``; without
  a GPU it stops with a message.

The manifest: ``--manifest`` (e.g. a mix optimizer's ``optimizer/pool/manifest.json``: the natural mix of a run),
or by default one built from the sample corpus's documents (three buckets, 120 documents each, up to 40,000
characters; ``tests/training_fixtures.py``). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer's pool: the process stays on one core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import load_documents, peak_rss_mb, pin_one_core

PLAIN = {"backend": "sdpa_dense", "loss_chunk_rows": 0}


def paired_steps(manifest: Path, size: str, steps: int, folder: Path) -> dict:
    """Interleaved steps of the plain and the CPU paths; tokens/s per core and the loss difference."""
    from refinery.training.trainer import Trainer, preset

    trainers = {
        name: Trainer(
            manifest, folder / name, preset(size, token_budget=10**12, eval_sequences=1, **overrides), device="cpu"
        )
        for name, overrides in {"plain": PLAIN, "cpu": {}}.items()
    }
    for trainer in trainers.values():
        trainer.train_step()  # warm-up (allocator, kernels' first calls)
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in trainers}
    losses: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(steps):
        for name, trainer in trainers.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            losses[name].append(trainer.train_step()["loss"])
            seconds[name].append(time.perf_counter() - started)
            cpu_seconds[name].append(time.process_time() - cpu_started)
    per_step = trainers["cpu"].config.tokens_per_step
    return {
        "size": size,
        "steps": steps,
        "tokens_per_step": per_step,
        "vocab_size": trainers["cpu"].vocabulary.size,
        "parameters": sum(p.numel() for p in trainers["cpu"].model.parameters()),
        "tokens_per_s": {name: round(steps * per_step / sum(s), 1) for name, s in seconds.items()},
        "tokens_per_cpu_s": {name: round(steps * per_step / sum(s), 1) for name, s in cpu_seconds.items()},
        "speedup_median": round(
            statistics.median(p / c for p, c in zip(seconds["plain"], seconds["cpu"], strict=True)), 3
        ),
        "cpu_speedup_median": round(
            statistics.median(p / c for p, c in zip(cpu_seconds["plain"], cpu_seconds["cpu"], strict=True)), 3
        ),
        "max_loss_difference": max(abs(a - b) for a, b in zip(losses["plain"], losses["cpu"], strict=True)),
        "last_loss": losses["cpu"][-1],
    }


def whole_proxy(manifest: Path, size: str, tokens: int, folder: Path, device: str, eval_every: int) -> dict:
    """One proxy as the optimizer's task trains it: set-up, training and evaluation in the wall time."""
    from refinery.pipelines.models import load_tokenizer
    from refinery.training.api import read_log, train_on_manifest
    from refinery.training.trainer import preset
    from refinery.training.vocab import build_vocabulary

    started, cpu_started = time.perf_counter(), time.process_time()
    vocab_max = preset(size).vocab_max  # built once per optimisation and shared, as the optimizer does
    vocabulary = None if vocab_max is None else build_vocabulary(manifest, load_tokenizer(), vocab_max)
    vocabulary_s = (time.perf_counter() - started, time.process_time() - cpu_started)
    started, cpu_started = time.perf_counter(), time.process_time()
    summary = train_on_manifest(
        manifest,
        config=size,
        token_budget=tokens,
        output_dir=folder / "proxy",
        vocabulary=vocabulary,
        threads=1,
        device=device,
        eval_sequences=32,  # the mix optimizer's default per target
        eval_every=eval_every or None,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "vocabulary_wall_s": round(vocabulary_s[0], 1),
        "vocabulary_cpu_s": round(vocabulary_s[1], 1),
        "heldout_mean_by_tokens": {r["tokens"]: round(r["mean"], 4) for r in read_log(folder / "proxy", "eval")},
        "device": summary["device"],
        "backend": summary["backend"],
        "tokens": summary["tokens"],
        "steps": summary["steps"],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "tokens_per_s": round(summary["tokens"] / wall, 1),
        "mean_eval_loss": summary["mean_eval_loss"],
        "parameters": summary["parameters"],
        "vocab_size": summary["vocab_size"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, help="a mix manifest (default: built from the sample corpus)")
    parser.add_argument("--size", default="proxy", help="trainer preset (default proxy)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps of each path (0: skip the paired steps)")
    parser.add_argument("--proxy-tokens", type=int, default=0, help="also train one whole proxy of this many tokens")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the whole proxy's device")
    parser.add_argument("--eval-every", type=int, default=0, help="the whole proxy's held-out evaluation, in steps")
    args = parser.parse_args()
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible on this machine (nothing measured)")
    pin_one_core()  # the CPU figures are per core; on CUDA one core feeds the GPU, as in one optimizer task

    torch.set_num_threads(1)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="proxy-bench-") as temporary:
        folder = Path(temporary)
        manifest = args.manifest
        if manifest is None:
            from training_fixtures import build_manifest

            manifest = build_manifest(load_documents(), folder / "mix", per_bucket=120, max_chars=40_000)
        if args.steps:
            paired = paired_steps(manifest, args.size, args.steps, folder)
            result["paired"] = paired
            wall, cpu = paired["tokens_per_s"], paired["tokens_per_cpu_s"]
            print(
                f"{args.size} ({paired['parameters']:,} parameters, vocabulary {paired['vocab_size']:,}), "
                f"{paired['steps']} steps of {paired['tokens_per_step']:,} tokens each, one core, interleaved:\n"
                f"{'':34}{'tokens/s (wall)':>16}{'tokens/CPU-s':>14}\n"
                f"  plain (dense mask, whole logits){wall['plain']:>16,.0f}{cpu['plain']:>14,.0f}\n"
                f"  cpu (per-document, chunked loss){wall['cpu']:>16,.0f}{cpu['cpu']:>14,.0f}\n"
                f"  speed-up, median of per-step ratios: {paired['speedup_median']:.2f}x wall, "
                f"{paired['cpu_speedup_median']:.2f}x CPU time; "
                f"max |step loss difference| {paired['max_loss_difference']:.2e}",
                flush=True,
            )
        if args.proxy_tokens:
            proxy = whole_proxy(manifest, args.size, args.proxy_tokens, folder, args.device, args.eval_every)
            result["proxy"] = proxy
            where = "per core" if proxy["device"] == "cpu" else f"on {proxy['device']} ({proxy['backend']})"
            print(
                f"one whole proxy: {proxy['tokens']:,} tokens ({proxy['steps']} steps) in {proxy['wall_s']:.0f} s "
                f"wall ({proxy['cpu_s']:.0f} CPU-s) = {proxy['tokens_per_s']:,.0f} tokens/s {where} "
                f"(set-up and evaluation included; the vocabulary before it: {proxy['vocabulary_cpu_s']:.0f} CPU-s); "
                f"mean held-out loss {proxy['mean_eval_loss']:.3f}",
                flush=True,
            )
            for tokens, loss in proxy["heldout_mean_by_tokens"].items():
                print(f"  held-out mean loss after {tokens:>11,} tokens: {loss:.3f}")
    result["peak_rss_mb"] = round(peak_rss_mb())
    result["manifest"] = str(args.manifest) if args.manifest else "sample corpus (tests/training_fixtures.py)"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
