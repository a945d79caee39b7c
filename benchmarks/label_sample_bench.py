"""``refinery label``'s sampling: the driver's peak RSS and seconds, per-shard tasks against the in-memory sampler.

One command: ``.venv/bin/python benchmarks/label_sample_bench.py [--copies 2 16] [--shards 24] [--size 1000]``.

A run directory is built from the sample corpus's real documents (every document ingest keeps), repeated
``--copies`` times under new ids and cut into ``--shards`` kept shards plus as many rejected shards (a quarter of
the documents), with ``run.json``. Two contenders sample ``--size`` documents with ``include_rejected``, each in
its own process:

* ``in_memory`` (the peer: main's sampler before issue 17): every kept and rejected shard's id, text, source and
  lang read into one table in the driver, then stratified and ranked there;
* ``per_shard_tasks`` (``refinery.classifiers.sampling.sample_run``): counts and candidates in Ray tasks that read
  ``id``/``source``/``lang`` only, text read only from shards holding a sampled document; the driver holds the
  sample (its RSS includes Ray's client; the tasks run in Ray's worker processes).

Both must give the same sample (checked). Reported: the driver's peak RSS (``ru_maxrss``), wall seconds, and
the ratios against the peer measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb


def build_run(run_dir: Path, copies: int, shards: int) -> dict:
    documents = load_documents()
    documents = documents.filter(pc.greater(pc.utf8_length(pc.fill_null(documents["text"], "")), 0))
    parts = []
    for copy in range(copies):
        ids = pc.binary_join_element_wise(documents["id"], pa.scalar(f"{copy}"), "#")
        parts.append(documents.set_column(0, "id", ids))
    table = pa.concat_tables(parts)
    table = table.append_column("lang", pa.array(["en"] * table.num_rows, pa.string()))
    rejected_rows = table.num_rows // 4
    kept, rejected = table.slice(rejected_rows), table.slice(0, rejected_rows)
    for kind, part in (("kept", kept), ("rejected", rejected)):
        folder = run_dir / "segments" / "00" / kind
        folder.mkdir(parents=True)
        step = -(-part.num_rows // shards)
        for index in range(shards):
            pq.write_table(part.slice(index * step, step), folder / f"shard-{index:03d}.parquet")
    kept_files = [f"segments/00/kept/shard-{i:03d}.parquet" for i in range(shards)]
    (run_dir / "run.json").write_text(json.dumps({"outputs": {"kept": kept_files}}))
    return {"documents": table.num_rows, "text_mb": round(pc.sum(pc.utf8_length(table["text"])).as_py() / 1e6, 1)}


def in_memory_sample(run_dir: Path, size: int) -> pa.Table:
    """main's sampler before issue 17: every listed shard read whole into the driver, then stratified."""
    from refinery.classifiers.sampling import COLUMNS, LANG, ORIGIN, run_files, stratified_sample

    parts = []
    for origin, path in run_files(run_dir, include_rejected=True):
        table = pq.read_table(path, columns=list(COLUMNS))
        parts.append(table.append_column(ORIGIN, pa.array([origin] * table.num_rows, pa.string())))
    table = pa.concat_tables(parts)
    table = table.set_column(3, LANG, pc.fill_null(table[LANG], "unknown"))
    return stratified_sample(table, size, seed=0)


def contender(name: str, run_dir: Path, size: int) -> dict:
    started = time.perf_counter()
    if name == "in_memory":
        sample = in_memory_sample(run_dir, size)
    else:
        from refinery.classifiers.sampling import sample_run
        from refinery.pipelines.ray_session import ray_session

        with ray_session(None, 2):
            sample = sample_run(run_dir, size, seed=0, include_rejected=True)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "driver_peak_rss_mb": round(peak_rss_mb(), 1),
        "ids": sample["id"].to_pylist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--contender", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        print(json.dumps(contender(args.contender, Path(args.run_dir), args.size)))
        return
    for copies in args.copies:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            run_dir = Path(tmp) / "run"
            shape = build_run(run_dir, copies, args.shards)
            results = {}
            for name in ("in_memory", "per_shard_tasks"):
                command = [sys.executable, __file__, "--contender", name, "--run-dir", str(run_dir)]
                command += ["--size", str(args.size)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-4000:]}")
                results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            same = results["in_memory"].pop("ids") == results["per_shard_tasks"].pop("ids")
            peer = results["in_memory"]
            for result in results.values():
                result["rss_vs_in_memory"] = round(result["driver_peak_rss_mb"] / peer["driver_peak_rss_mb"], 3)
                result["seconds_vs_in_memory"] = round(result["seconds"] / peer["seconds"], 3)
            print(json.dumps({"copies": copies, "shards": 2 * args.shards, **shape, "same_sample": same, **results}))
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
