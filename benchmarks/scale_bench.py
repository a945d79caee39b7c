"""Scale benchmark: every stage, phase and verb at 1x, 8x and 64x of a corpus of distinct real text.

One command (a benchmark, not a test; the corpora are built on demand by ``scripts/build_world_corpus.py``)::

    nice .venv/bin/python benchmarks/scale_bench.py --scales 1,8,64 [--steps recipe,shards,label,pool,loader]
    nice .venv/bin/python benchmarks/scale_bench.py --report        # table + plot from the results so far

1x is 16,384 documents (~17 MB of text); 64x is 1,048,576 documents (~1.1 GB). At each scale:

* ``recipe``: the default recipe (``recipes/llama3.yaml``) with its inputs replaced by the corpus;
* ``semantic``: ``recipes/llama3_semantic.yaml`` at ``--semantic-scales`` (default 1/16x and 1/8x: CPU embedding
  runs at ~13 documents per CPU-second, so 1x alone would take ~20 CPU-minutes here; on a GPU pass 1,8);
* ``shards``: ``refinery shards`` of the run at 1, 100 and 1,000 output shards (``shard_rows``);
* ``label``: ``refinery label`` sampling (``--limit 0``: the sample is drawn and written, no teacher is asked);
* ``pool``: the mix optimizer's pool (``scan_buckets`` + ``write_pool``);
* ``loader``: the trainer's data loader (``ManifestStream``) over the 100-shard mix: start-up seconds, then
  packed sequences of 2,048 tokens for up to 32 MB of text.

Per stage, phase and verb it reports seconds per MB of text (stages: task seconds / MB the stage saw, from
``run.json``; phases and verbs: wall seconds / MB of the run's input text), bytes read per input byte and peak
RSS per task (sampled every 0.25 s from ``/proc`` for every Ray worker, attributed to the task its process
title names: ``ray::process_shard``, ``ray::signature_group``, ...; ``read_chars``, so page-cache hits count as
reads), and the driver's peak RSS. Every command runs as a subprocess with an embedded Ray of ``--num-cpus``.
The goal it is read against (issue 17): at 64x, s/MB and RSS per task within 25% of 8x; the driver under 1 GB.
Figures are from a shared machine: read the ratios between scales, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BASE_DOCUMENTS = 16_384
RESULTS = REPO / "benchmarks" / "results" / "scale"
STEPS = ("recipe", "shards", "label", "pool", "loader")
SHARD_COUNTS = (1, 100, 1_000)
LOADER_BYTES = 32 * 2**20
MB = 1e6


# ------------------------------------------------------------------------------------------------- measuring


class Monitor:
    """Samples a process tree: the root's peak RSS, and per Ray task name its workers' peak RSS and bytes read."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import psutil

        self._psutil = psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.driver_peak = 0
        self.task_peak: dict[str, int] = {}
        self.task_read: dict[str, int] = {}
        self.cpu_by_pid: dict[int, float] = {}  # the latest CPU seconds seen of every process of the tree
        self._last_read: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        psutil = self._psutil
        try:
            self.driver_peak = max(self.driver_peak, self.root.memory_info().rss)
            times = self.root.cpu_times()
            self.cpu_by_pid[self.root.pid] = times.user + times.system
            children = self.root.children(recursive=True)
        except psutil.Error:
            return
        for process in children:
            try:
                title = " ".join(process.cmdline())[:80]
                rss = process.memory_info().rss
                read = process.io_counters().read_chars
                times = process.cpu_times()
                self.cpu_by_pid[process.pid] = times.user + times.system
            except (psutil.Error, OSError):
                continue
            previous = self._last_read.get(process.pid)
            self._last_read[process.pid] = read
            if not title.startswith("ray::") or title.startswith("ray::IDLE"):
                continue
            task = title[5:].split()[0]
            self.task_peak[task] = max(self.task_peak.get(task, 0), rss)
            if previous is not None:
                self.task_read[task] = self.task_read.get(task, 0) + max(0, read - previous)


def measured(command: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``command`` under a :class:`Monitor`; wall seconds, exit code, driver and per-task figures."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        with Monitor(process.pid) as monitor:
            code = process.wait()
    return {
        "command": [Path(command[0]).name, *command[1:]],
        "exit": code,
        "seconds": time.perf_counter() - started,
        # CPU seconds of the whole process tree (driver, Ray's processes, workers; up to each one's last sample)
        "cpu_seconds": sum(monitor.cpu_by_pid.values()),
        "driver_peak_rss": monitor.driver_peak,
        "task_peak_rss": dict(sorted(monitor.task_peak.items())),
        "task_bytes_read": dict(sorted(monitor.task_read.items())),
        "log": str(log),
    }


# ---------------------------------------------------------------------------------------------------- corpora


def corpus(corpora: Path, documents: int) -> Path:
    """The distinct corpus of ``documents`` (built once; deterministic from seed 0)."""
    folder = corpora / f"n{documents}"
    if not (folder / "contents.json").exists():
        per_shard = 2_048 if documents >= BASE_DOCUMENTS else 256  # same shard size at every small scale
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "build_world_corpus.py"), "distinct", "--documents",
             str(documents), "--per-shard", str(per_shard), "--output", str(folder)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return folder


def input_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for fmt in ("warc", "jsonl", "parquet") for p in (folder / fmt).glob("*"))


def recipe_with_inputs(template: Path, folder: Path, output: Path, target: Path) -> Path:
    """``template`` with its inputs replaced by the corpus in ``folder`` (absolute paths), as a JSON recipe."""
    import yaml

    recipe = yaml.safe_load(template.read_text())
    inputs = json.loads((folder / "recipe_inputs.json").read_text())
    recipe["inputs"] = [{**spec, "paths": [str(folder / p) for p in spec["paths"]]} for spec in inputs]
    recipe["output_dir"] = str(output)
    target.write_text(json.dumps(recipe))
    return target


# ------------------------------------------------------------------------------------------------------ steps


def refinery(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "refinery"), *args]


def run_recipe_step(template: Path, folder: Path, work: Path, num_cpus: int) -> dict[str, Any]:
    output = work / template.stem
    recipe = recipe_with_inputs(template, folder, output, work / f"{template.stem}.json")
    result = measured(
        refinery("run", str(recipe), "--num-cpus", str(num_cpus), "--quiet", "--fresh"), work / f"{template.stem}.log"
    )
    run_file = output / "run.json"
    if run_file.exists():
        run = json.loads(run_file.read_text())
        result["stages"] = [
            {
                "segment": seg["index"],
                "stage": st["stage"],
                "in": st["in"],
                "kept": st["kept"],
                "chars_in": st["chars_in"],
                "seconds": st["seconds"],
                "cpu_seconds": st.get("cpu_seconds"),
            }
            for seg in run["segments"]
            for st in seg["stages"]
        ]
        result["phases"] = [
            {
                "segment": seg["index"],
                "stage": seg["stages"][0]["stage"],
                "phase": phase,
                "seconds": seconds,
                "cpu_seconds": seg.get("phase_cpu_seconds", {}).get(phase),
            }
            for seg in run["segments"]
            for phase, seconds in seg.get("phase_seconds", {}).items()
        ]
        result["wall_seconds"] = run["wall_seconds"]
        result["accounting_ok"] = run["accounting"]["ok"]
        result["kept_documents"] = run["segments"][-1]["stages"][-1]["kept"]
        result["kept_chars"] = run["segments"][-1]["stages"][-1]["chars_kept"]
        result["kept_bytes"] = sum((output / k).stat().st_size for k in run["outputs"]["kept"])
    return result


def shards_step(run_dir: Path, work: Path, kept: int, count: int, num_cpus: int) -> dict[str, Any]:
    weights = work / f"weights-{count}.json"
    weights.write_text(json.dumps({
        "bucket_column": "source", "max_epochs": 1.0, "shard_rows": max(1, math.ceil(kept / count)),
        "heldout_fraction": 0.001, "buckets": {"*": {"weight": 1.0}},
    }))  # fmt: skip
    output = work / f"mix-{count}"
    return measured(
        refinery(
            "shards", str(run_dir), "--weights", str(weights), "--output", str(output), "--num-cpus", str(num_cpus)
        ),
        work / f"shards-{count}.log",
    )


def label_step(run_dir: Path, work: Path) -> dict[str, Any]:
    output = work / "labels"
    args = ["label", str(run_dir), "--prompt", "quality", "--output", str(output), "--size", "2000", "--limit", "0"]
    return measured(refinery(*args), work / "label.log")


def worker_step(name: str, work: Path, *args: str) -> dict[str, Any]:
    result = measured([sys.executable, __file__, "--worker", name, *args], work / f"{name}.log")
    lines = Path(result["log"]).read_text().strip().splitlines()
    if result["exit"] == 0 and lines:
        result.update(json.loads(lines[-1]))
    return result


def pool_worker(run_dir: str, output: str, num_cpus: str) -> dict[str, Any]:
    import ray

    try:  # the module's name on the mixes branch
        from refinery.mixes.optimizer.bucket_table import scan_buckets, write_pool
    except ImportError:
        from refinery.mixes.optimizer.buckets import scan_buckets, write_pool
    from refinery.mixes.optimizer.config import BucketSettings

    ray.init(num_cpus=int(num_cpus), include_dashboard=False, logging_level="WARNING")
    settings = BucketSettings()
    started = time.perf_counter()
    scan = scan_buckets(run_dir, settings.columns)
    scanned = time.perf_counter()
    write_pool(run_dir, settings, scan, 10**12, Path(output), seed=0)
    return {"scan_seconds": scanned - started, "write_seconds": time.perf_counter() - scanned}


def loader_worker(manifest: str) -> dict[str, Any]:
    from refinery.pipelines.models import load_tokenizer
    from refinery.training.data import ManifestStream
    from refinery.training.packing import PackConfig

    started = time.perf_counter()
    stream = ManifestStream(manifest, PackConfig(seq_len=2048), seed=0, tokenizer=load_tokenizer())
    stream.next_batch(1)
    startup = time.perf_counter() - started
    tokens = 2048
    clock = time.perf_counter()
    while tokens * 4 < LOADER_BYTES and stream.epoch == 0:  # ~4 bytes of text per token
        stream.next_batch(8)
        tokens += 8 * 2048
    return {"startup_seconds": startup, "tokens": tokens, "steady_seconds": time.perf_counter() - clock}


# ------------------------------------------------------------------------------------------------------ a scale


def bench_scale(scale: float, args: argparse.Namespace, steps: list[str]) -> dict[str, Any]:
    documents = int(BASE_DOCUMENTS * scale)
    folder = corpus(args.corpora, documents)
    contents = json.loads((folder / "contents.json").read_text())
    work = args.work / f"x{scale:g}"
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "scale": scale, "documents": documents, "text_bytes": contents["text_bytes"],
        "input_bytes": input_bytes(folder), "steps": {},
    }  # fmt: skip
    out_file = args.results / f"x{scale:g}{args.tag}.json"
    if out_file.exists():  # a later call with other steps adds to the same scale's results
        result["steps"] = json.loads(out_file.read_text())["steps"]

    def save() -> None:
        args.results.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(result, indent=1) + "\n")

    run_dir = work / "llama3"
    if "recipe" in steps:
        result["steps"]["recipe"] = run_recipe_step(REPO / "recipes" / "llama3.yaml", folder, work, args.num_cpus)
        save()
    kept = result["steps"].get("recipe", {}).get("kept_documents")
    if kept is None and (run_dir / "run.json").exists():
        kept = json.loads((run_dir / "run.json").read_text())["segments"][-1]["stages"][-1]["kept"]
    if "semantic" in steps:
        result["steps"]["semantic"] = run_recipe_step(
            REPO / "recipes" / "llama3_semantic.yaml", folder, work, args.num_cpus
        )
        save()
    if "shards" in steps and kept:
        for count in SHARD_COUNTS:
            result["steps"][f"shards_{count}"] = shards_step(run_dir, work, kept, count, args.num_cpus)
            save()
    if "label" in steps and kept:
        result["steps"]["label"] = label_step(run_dir, work)
        save()
    if "pool" in steps and kept:
        result["steps"]["pool"] = worker_step("pool", work, str(run_dir), str(work / "pool"), str(args.num_cpus))
        save()
    if "loader" in steps and (work / "mix-100" / "manifest.json").exists():
        result["steps"]["loader"] = worker_step("loader", work, str(work / "mix-100" / "manifest.json"))
        save()
    return result


# ----------------------------------------------------------------------------------------------------- report


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage, phase and verb: s/MB, bytes read per input byte, peak RSS per task, driver RSS.

    MB are millions of characters. Recipes and their phases are per MB of the corpus's text and read bytes are
    per byte of its input files; the verbs (shards, label, pool, loader) work on the run's kept output, so
    theirs are per MB of kept text and per byte of the kept Parquet files.
    """
    recipe = result["steps"].get("recipe", {})
    if recipe and "kept_bytes" not in recipe and (Path(recipe["log"]).with_suffix("") / "run.json").exists():
        run_dir = Path(recipe["log"]).with_suffix("")  # results of an older version of this script: fill in
        run = json.loads((run_dir / "run.json").read_text())
        recipe["kept_chars"] = run["segments"][-1]["stages"][-1]["chars_kept"]
        recipe["kept_bytes"] = sum((run_dir / k).stat().st_size for k in run["outputs"]["kept"])
    out = []
    for step_name, step in result["steps"].items():
        verb = step_name not in ("recipe", "semantic")
        text_mb = (recipe.get("kept_chars", 0) if verb else result["text_bytes"]) / MB or float("nan")
        base_bytes = recipe.get("kept_bytes", 0) if verb else result["input_bytes"]
        reads = sum(v for k, v in step.get("task_bytes_read", {}).items() if not k.endswith("Agent"))
        base = {
            "driver_mb": step.get("driver_peak_rss", 0) / 2**20,
            "task_mb": max((v for k, v in step.get("task_peak_rss", {}).items() if not k.endswith("Agent")), default=0)
            / 2**20,
            "read_per_input_byte": reads / base_bytes if base_bytes else None,
        }
        if step_name in ("recipe", "semantic"):
            for stage in step.get("stages", []):
                mb = stage["chars_in"] / MB
                cpu = stage.get("cpu_seconds")
                out.append({"name": f"{step_name}:{stage['segment']}·{stage['stage']}",
                            "s_per_mb": stage["seconds"] / mb if mb else None,
                            "cpu_s_per_mb": cpu / mb if mb and cpu is not None else None})  # fmt: skip
            for phase in step.get("phases", []):
                cpu = phase.get("cpu_seconds")
                out.append({"name": f"{step_name}:{phase['segment']}·{phase['stage']}:{phase['phase']}",
                            "s_per_mb": phase["seconds"] / text_mb,
                            "cpu_s_per_mb": cpu / text_mb if cpu is not None else None})  # fmt: skip
        if step_name == "loader" and "tokens" in step:
            out.append({"name": "loader:startup", "s_per_mb": step["startup_seconds"] / text_mb})
            out.append({"name": "loader:steady", "s_per_mb": step["steady_seconds"] / (step["tokens"] * 4 / MB)})
        if step_name == "pool" and "scan_seconds" in step:
            out.append({"name": "pool:scan", "s_per_mb": step["scan_seconds"] / text_mb})
            out.append({"name": "pool:write", "s_per_mb": step["write_seconds"] / text_mb})
        for task, peak in step.get("task_peak_rss", {}).items():
            if not task.endswith("Agent"):
                read = step.get("task_bytes_read", {}).get(task, 0)
                out.append({"name": f"{step_name}: ray::{task}", "task_mb": peak / 2**20,
                            "read_per_input_byte": read / base_bytes if base_bytes else None})  # fmt: skip
        cpu = step.get("cpu_seconds")
        out.append({"name": f"{step_name} (whole command)", "s_per_mb": step["seconds"] / text_mb, **base,
                    "cpu_s_per_mb": cpu / text_mb if cpu is not None else None,
                    "exit": step.get("exit")})  # fmt: skip
    return out


def report(results_dir: Path, tag: str, plot: Path | None) -> str:
    chosen = [p for p in results_dir.glob("x*.json") if (p.stem.endswith(tag) if tag else "-" not in p.stem)]
    results = sorted((json.loads(p.read_text()) for p in chosen), key=lambda r: r["scale"])
    by_scale = {r["scale"]: {row["name"]: row for row in rows(r)} for r in results}
    scales = sorted(by_scale)
    names = list(dict.fromkeys(name for s in scales for name in by_scale[s]))
    header = "| stage / phase / verb | " + " | ".join(f"{s:g}x s/MB" for s in scales)
    header += " | " + " | ".join(f"{s:g}x CPU s/MB" for s in scales)
    header += " | " + " | ".join(f"{s:g}x read/in B" for s in scales) + " | "
    header += (
        " | ".join(f"{s:g}x task RSS MB" for s in scales) + " | " + " | ".join(f"{s:g}x driver MB" for s in scales)
    )
    lines = [header + " |", "|" + "---|" * (1 + 5 * len(scales))]

    def cell(scale: float, name: str, key: str, fmt: str) -> str:
        value = by_scale[scale].get(name, {}).get(key)
        return "" if value is None else format(value, fmt)

    for name in names:
        cells = [cell(s, name, "s_per_mb", ".3f") for s in scales]
        cells += [cell(s, name, "cpu_s_per_mb", ".3f") for s in scales]
        cells += [cell(s, name, "read_per_input_byte", ".2f") for s in scales]
        cells += [cell(s, name, "task_mb", ".0f") for s in scales]
        cells += [cell(s, name, "driver_mb", ".0f") for s in scales]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sizes = ", ".join(f"{r['scale']:g}x = {r['documents']:,} documents, {r['text_bytes'] / MB:,.0f} MB text, "
                      f"{r['input_bytes'] / MB:,.0f} MB input files" for r in results)  # fmt: skip
    lines.append(f"\n{sizes}")
    if plot is not None and len(scales) > 1:
        draw(by_scale, scales, names, plot)
        lines.append(f"\nplot: {plot}")
    return "\n".join(lines)


def draw(by_scale: dict, scales: list[float], names: list[str], plot: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 7))
    for name in names:
        if "ray::" in name or name.count(":") > 1:  # stages and verbs only: phases are in the table
            continue
        key = "cpu_s_per_mb" if all(by_scale[s].get(name, {}).get("cpu_s_per_mb") for s in scales) else "s_per_mb"
        points = [(s, by_scale[s][name][key]) for s in scales if by_scale[s].get(name, {}).get(key)]
        if len(points) > 1 and max(v for _, v in points) > 0.01:
            axis.plot(*zip(*points, strict=True), marker="o", label=name)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("scale (1x = 16,384 documents, ~17 MB of text)")
    axis.set_ylabel("CPU seconds per MB of text (wall where CPU was not recorded)")
    axis.set_title("Refinery cost per MB against scale (stages: task CPU s; verbs: process-tree CPU s)")
    axis.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    plot.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(plot, dpi=110)


def partial(run_dir: Path) -> str:
    """What an unfinished run has done so far: per segment, finished shards and per stage s/MB (task seconds
    from the completion markers over the characters the finished shards' stats record)."""
    lines = []
    for segment in sorted((run_dir / "segments").glob("[0-9][0-9]")):
        markers = [json.loads(p.read_text()) for p in sorted((segment / "done").glob("*.json"))]
        stats = {p.stem: json.loads(p.read_text()) for p in (segment / "stats").glob("*.json")}
        seconds: dict[str, float] = {}
        chars: dict[str, int] = {}
        for marker in markers:
            for entry in marker["seconds"]:
                seconds[entry["stage"]] = seconds.get(entry["stage"], 0.0) + entry["seconds"]
            for stage in stats.get(marker["shard"], {}).get("stages", []):
                chars[stage["stage"]] = chars.get(stage["stage"], 0) + stage["chars_in"]
        phases = sorted(p.stem for p in (segment / "work" / "_phases").glob("*.json"))
        rates = ", ".join(
            f"{name} {seconds[name] / (chars[name] / MB):.3f} s/MB" for name in seconds if chars.get(name)
        )
        lines.append(f"segment {segment.name}: {len(markers)} shards done; phases done: {phases or '-'}; {rates}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,8,64")
    parser.add_argument("--semantic-scales", default="0.0625,0.125")
    parser.add_argument("--steps", default=",".join(STEPS) + ",semantic")
    parser.add_argument("--corpora", type=Path, default=Path("/tmp/refinery-world"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/refinery-scale-bench"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. -before)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="print the table (and plot) from the results")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "scale_cost_per_mb.png")
    parser.add_argument("--partial", type=Path, help="summarise an unfinished run directory so far")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        name, *rest = args.worker
        print(json.dumps({"pool": pool_worker, "loader": loader_worker}[name](*rest)))
        return
    if args.partial:
        print(partial(args.partial))
        return
    if args.report:
        print(report(args.results, args.tag, args.plot))
        return
    steps = args.steps.split(",")
    semantic_scales = [float(s) for s in args.semantic_scales.split(",")] if "semantic" in steps else []
    for scale in sorted({float(s) for s in args.scales.split(",")} | set(semantic_scales)):
        scales = {float(s) for s in args.scales.split(",")}
        chosen = [s for s in steps if s != "semantic"] if scale in scales else []
        chosen += ["semantic"] if scale in semantic_scales else []
        print(f"scale {scale:g}x: {', '.join(chosen)}", flush=True)
        bench_scale(scale, args, chosen)
    print(report(args.results, args.tag, None))


if __name__ == "__main__":
    main()
