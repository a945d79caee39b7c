"""Shards benchmark: ``token_count`` against datatrove's ``TokensCounter``, and shard writing MB/s, one core each.

One command: ``.venv/bin/python benchmarks/shards_bench.py [--max-documents N]``.

* token counting: our ``token_count`` stage (batches of 500 through ``encode_batch_fast``, no special tokens)
  against datatrove's ``TokensCounter`` (``encode_batch`` in batches of 10,000), both on the same Llama 3
  ``tokenizer.json`` file and the same documents of the sample corpus; counts are checked to agree (datatrove's
  encode adds ``<|begin_of_text|>``: one more per document);
* shard writing: ``write_mix`` over the same documents laid out as a run directory (10 kept shards with
  ``n_tokens``), on an embedded Ray with one CPU, two epochs of one bucket; MB of text written per second
  (Ray start-up excluded). datatrove has no weighted shard writer: this row has no peer.
* output-shard scaling (``--output-shards 1,100,1000 [--documents N]``): ``write_mix`` of one epoch of N
  documents (the sample replicated with distinct ids; 10 kept shards of 500-row row groups) into 1, 100 and
  1,000 output shards, on an embedded Ray with one CPU: seconds per MB of input Parquet, the ratio to the
  1-shard write of the same run (the peer: the cost per MB should not grow with the output-shard count), and
  the bytes read per input byte, counted in a second, in-process write of the same mix (every file read through
  fsspec's local opener is counted; the run's kept files are the input).

* finished runs' ``refinery shards`` (``--run-dir DIR[,DIR...] --output-shards 1,100,1000 [--peer PATH/refinery]
  [--repeats N] [--warm-index]``): the whole command, as ``scale_bench.py``'s ``shards`` step runs it (one epoch,
  every bucket, ``shard_rows`` = kept documents / count, held-out fraction 0.001), into a fresh output folder per
  count, repeat and contender, run after run (count by count, contender by contender) so machine load falls on
  both alike. Per write: wall seconds and CPU seconds of the whole process tree (the driver, Ray, its workers),
  each per MB of the run's kept text (millions of characters, as ``scale_bench.py``) and against the same
  contender's 1-shard write, and the peak RSS of every Ray task kind and of the driver (``scale_bench.py``'s
  monitor). The peer is another checkout's ``refinery`` (e.g. main's): each count's manifests must agree (same
  shards, same sha256s). With several runs (e.g. the proving ground's 8x and 64x), each task kind's peak RSS and
  the CPU s/MB of the last run against the first (issue 17's goal: within 25%). ``--warm-index`` copies a
  finished index into each output first, so tokenising the run (a cost per MB, the same at every count) is left
  out and the writer's own cost per output shard shows; ``--in-process`` runs ``write_mix(in_process=True)`` in
  the contender's Python instead of the CLI (no Ray start-up, workers or scheduling: the writer's CPU alone).

Each contender runs in its own subprocess (pinned to one core, except the ``--run-dir`` writes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb, pin_one_core, print_ratios, run_contenders

CONTENDERS = ("refinery/token_count", "datatrove/token_count")
BATCH = 500
MAX_DOCUMENTS = "REFINERY_BENCH_MAX_DOCUMENTS"


def documents(max_documents: int):
    """Every k-th document of the sample corpus (all sources), at most ``max_documents``."""
    table = load_documents()
    step = max(1, table.num_rows // max_documents)
    return table.take(list(range(0, table.num_rows, step))[:max_documents])


def _refinery_token_count(table) -> int:
    from refinery.mixes.token_count import TokenCount

    stage = TokenCount()
    stage.setup()
    total = 0
    for start in range(0, table.num_rows, BATCH):
        kept = stage.process(table.slice(start, BATCH)).kept
        total += sum(kept.column("n_tokens").to_pylist())
    return total


def _datatrove_token_count(table) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens import TokensCounter

    from refinery.pipelines.models import DEFAULT_TOKENIZER, tokenizer_file

    counter = TokensCounter(tokenizer_name_or_path=str(tokenizer_file(DEFAULT_TOKENIZER)))
    texts = table.column("text").to_pylist()
    docs = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
    total = sum(d.metadata["token_count"] for d in counter.run(docs))
    return total - len(texts)  # datatrove counts <|begin_of_text|> (its encode adds special tokens)


RUNNERS = {"refinery/token_count": _refinery_token_count, "datatrove/token_count": _datatrove_token_count}


def worker(contender: str, max_documents: int) -> None:
    pin_one_core()
    table = documents(max_documents)
    started = time.perf_counter()
    tokens = RUNNERS[contender](table)
    seconds = time.perf_counter() - started
    text_bytes = sum(len(t.encode()) for t in table.column("text").to_pylist())
    result = {"items": tokens, "kept": table.num_rows, "seconds": seconds, "MB": text_bytes / 1e6}
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


def _fake_run(table, folder: Path, shards: int = 10) -> Path:
    """The documents as a finished run directory: kept shards with n_tokens, run.json, recipe.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from refinery.mixes.token_count import TokenCount
    from refinery.pipelines.storage import PARQUET_OPTIONS

    table = TokenCount().process(table).kept
    kept_dir = folder / "segments/00/kept"
    kept_dir.mkdir(parents=True)
    kept = []
    step = -(-table.num_rows // shards)
    for i in range(shards):
        path = kept_dir / f"shard-{i:02d}.parquet"
        pq.write_table(table.slice(i * step, step), path, row_group_size=500, **PARQUET_OPTIONS)
        kept.append(str(path.relative_to(folder)))
    for path in kept:  # as a run records them: each kept file's sha256 in its shard's completion marker
        file = folder / path
        done = file.parent.parent / "done" / (file.stem + ".json")
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps({"kept_sha256": hashlib.sha256(file.read_bytes()).hexdigest()}))
    (folder / "run.json").write_text(json.dumps({"outputs": {"kept": kept}, "segments": []}))
    (folder / "recipe.json").write_text(json.dumps({"fingerprint": "bench", "recipe": {"stages": []}}))
    assert pa.concat_tables(pq.read_table(folder / k) for k in kept).num_rows == table.num_rows
    return folder


def shard_writing(max_documents: int) -> dict:
    """Seconds of write_mix on one core: 2 epochs of every document (bucket 'all'), 8 output shards."""
    import pyarrow.parquet as pq

    from refinery.mixes.writer import write_mix
    from refinery.pipelines.manifest import load_manifest
    from refinery.pipelines.ray_session import ray_session

    pin_one_core()
    import pyarrow as pa

    table = documents(max_documents)
    table = table.append_column("mix", pa.array(["all"] * table.num_rows))
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, ray_session(None, 1):
        run = _fake_run(table, Path(tmp) / "run")
        tokens = sum(pq.read_table(run / "segments/00/kept").column("n_tokens").to_pylist())
        weights = {
            "bucket_column": "mix",
            "shard_rows": -(-2 * table.num_rows // 8),
            "buckets": {"all": {"tokens": 2 * tokens, "max_epochs": 2}},
        }
        started = time.perf_counter()
        manifest = load_manifest(write_mix(run, weights, Path(tmp) / "mix"))
        seconds = time.perf_counter() - started
    text_mb = 2 * sum(len(t.encode()) for t in table.column("text").to_pylist()) / 1e6
    written_mb = sum(s["bytes"] for s in manifest["shards"]) / 1e6
    return {"documents": manifest["total_documents"], "seconds": seconds, "text_MB": text_mb, "parquet_MB": written_mb}


def replicated_run(documents: int, folder: Path) -> Path:
    """A run directory of ``documents`` documents: the sample repeated, each copy's ids suffixed (distinct keys)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    base = load_documents()
    copies = []
    for copy in range(-(-documents // base.num_rows)):
        ids = pc.binary_join_element_wise(base.column("id"), pa.scalar(f"#{copy}"), "")
        copies.append(base.set_column(0, "id", ids))
    table = pa.concat_tables(copies).slice(0, documents)
    return _fake_run(table.append_column("mix", pa.array(["all"] * table.num_rows)), folder)


def count_reads(run_dir: Path, write) -> dict[str, int]:
    """Bytes read from the run's kept files and from anything else while ``write()`` runs in this process."""
    from fsspec.implementations.local import LocalFileOpener

    from refinery.mixes import writer

    counts = {"input": 0, "other": 0}
    kept_root = str(run_dir / "segments")
    original_read = LocalFileOpener.read

    def counting_read(self, *args, **kwargs):
        data = original_read(self, *args, **kwargs)
        counts["input" if str(self.path).startswith(kept_root) else "other"] += len(data)
        return data

    # every step in this process, so every read is counted: the writer's one map (or the older ray_map)
    mapper = "map_items" if hasattr(writer, "map_items") else "ray_map"
    original_map = getattr(writer, mapper)
    LocalFileOpener.read = counting_read
    setattr(writer, mapper, lambda function, items, *a, **k: [function(item) for item in items])
    try:
        write()
    finally:
        LocalFileOpener.read = original_read
        setattr(writer, mapper, original_map)
    return counts


def output_shard_scaling(documents: int, counts: list[int]) -> list[dict]:
    """Per output-shard count: seconds (Ray, 1 CPU), s/MB of input Parquet, bytes read per input byte."""
    import pyarrow.parquet as pq

    from refinery.mixes.writer import write_mix
    from refinery.pipelines.manifest import load_manifest
    from refinery.pipelines.ray_session import ray_session

    pin_one_core()
    rows = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        run = replicated_run(documents, Path(tmp) / "run")
        kept = sorted((run / "segments/00/kept").glob("*.parquet"))
        input_bytes = sum(p.stat().st_size for p in kept)
        tokens = sum(pq.read_table(kept).column("n_tokens").to_pylist())
        with ray_session(None, 1):
            write_mix(run, {"bucket_column": "mix", "buckets": {"all": {"weight": 1}}}, Path(tmp) / "warm")
            for count in counts:
                weights = {
                    "bucket_column": "mix",
                    "shard_rows": -(-documents // count),
                    "buckets": {"all": {"tokens": tokens}},
                }
                started = time.perf_counter()
                manifest = load_manifest(write_mix(run, weights, Path(tmp) / f"mix-{count}"))
                seconds = time.perf_counter() - started
                reads = count_reads(run, lambda w=weights, c=count: write_mix(run, w, Path(tmp) / f"reads-{c}"))
                rows.append(
                    {
                        "output_shards": len(manifest["shards"]),
                        "seconds": round(seconds, 3),
                        "input_MB": round(input_bytes / 1e6, 3),
                        "s_per_MB": round(seconds / (input_bytes / 1e6), 4),
                        "input_bytes_read_per_input_byte": round(reads["input"] / input_bytes, 3),
                        "other_bytes_read_per_input_byte": round(reads["other"] / input_bytes, 3),
                    }
                )
    return rows


def kept_text_mb(run_dir: Path) -> tuple[int, float]:
    """(kept documents, millions of kept characters) of a finished run, from its run.json: what
    ``scale_bench.py`` divides the verbs' seconds by (its "MB of kept text")."""
    last = json.loads((run_dir / "run.json").read_text())["segments"][-1]["stages"][-1]
    return last["kept"], last["chars_kept"] / 1e6


def scaling_weights(work: Path, documents: int, counts: list[int]) -> dict[int, Path]:
    """``scale_bench.py``'s shards weights: one epoch, every bucket, ``shard_rows`` = kept documents / count."""
    import math

    weights = {}
    for count in counts:
        weights[count] = work / f"weights-{count}.json"
        weights[count].write_text(
            json.dumps(
                {
                    "bucket_column": "source",
                    "max_epochs": 1.0,
                    "shard_rows": max(1, math.ceil(documents / count)),
                    "heldout_fraction": 0.001,
                    "buckets": {"*": {"weight": 1.0}},
                }
            )
        )
    return weights


def run_scaling(args: argparse.Namespace) -> list[dict]:
    """``refinery shards`` of finished runs at every output-shard count, this checkout against ``--peer``."""
    import shutil

    from scale_bench import measured

    run_dirs = [Path(d).resolve() for d in args.run_dir.split(",")]
    root = Path(args.work or tempfile.mkdtemp(prefix="shards-scaling-", dir="/tmp"))
    contenders = {"this": str(Path(sys.executable).parent / "refinery")}
    if args.peer:
        contenders["peer"] = args.peer
    counts = [int(c) for c in args.output_shards.split(",")]
    rows, shas = [], {}
    for run_dir in run_dirs:
        work = root / run_dir.parent.name
        work.mkdir(parents=True, exist_ok=True)
        documents, text_mb = kept_text_mb(run_dir)
        weights = scaling_weights(work, documents, counts)
        warm = work / "warm"
        if args.warm_index and not (warm / "manifest.json").exists():
            command = [contenders["this"], "shards", str(run_dir), "--weights", str(weights[counts[0]])]
            measured([*command, "--output", str(warm), "--num-cpus", str(args.num_cpus)], work / "warm.log")
        for repeat in range(args.repeats):
            for count in counts:
                for name, refinery in contenders.items():
                    output = work / f"{name}-{count}-{repeat}"
                    shutil.rmtree(output, ignore_errors=True)
                    if args.warm_index:
                        shutil.copytree(warm / "_work" / "index", output / "_work" / "index")
                    if args.in_process:  # write_mix(in_process=True) in the contender's own Python: no Ray at all
                        python = str(Path(refinery).parent / "python")
                        command = [python, __file__, "--write-in-process", str(run_dir), str(weights[count])]
                        command.append(str(output))
                    else:
                        command = [refinery, "shards", str(run_dir), "--weights", str(weights[count])]
                        command += ["--output", str(output), "--num-cpus", str(args.num_cpus)]
                    result = measured(command, work / f"{output.name}.log")
                    if result["exit"] != 0:
                        raise SystemExit(f"{name} failed at {count} shards: see {work / (output.name + '.log')}")
                    manifest = json.loads((output / "manifest.json").read_text())
                    shas.setdefault((str(run_dir), count), {})[name] = [s["sha256"] for s in manifest["shards"]]
                    rows.append(
                        {
                            "run": str(run_dir),
                            "contender": name,
                            "repeat": repeat,
                            "requested_shards": count,
                            "output_shards": len(manifest["shards"]),
                            "wall_seconds": round(result["seconds"], 3),
                            "cpu_seconds": round(result["cpu_seconds"], 3),
                            "wall_s_per_MB": round(result["seconds"] / text_mb, 4),
                            "cpu_s_per_MB": round(result["cpu_seconds"] / text_mb, 4),
                            "driver_MB": round(result["driver_peak_rss"] / 2**20),
                            "task_MB": task_peaks_mb(result["task_peak_rss"]),
                            "load_average": round(os.getloadavg()[0], 2),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
                    shutil.rmtree(output, ignore_errors=True)
    for key, by_name in shas.items():
        assert len({tuple(v) for v in by_name.values()}) == 1, f"the contenders' shards differ at {key}"
    print_scaling(rows, contenders, counts, run_dirs)
    return rows


def task_peaks_mb(peaks: dict[str, int]) -> dict[str, int]:
    """Peak RSS (MiB) per Ray task name, Ray's own agents left out."""
    return {name: round(peak / 2**20) for name, peak in peaks.items() if not name.endswith("Agent")}


def print_scaling(rows: list[dict], contenders: dict, counts: list[int], run_dirs: list[Path]) -> None:
    """Per run, contender and count (the repeat with the least CPU): CPU s/MB and peak RSS per task kind; with
    several runs, each task kind's peak RSS in the last run against the first."""
    print(f"load average at the end {os.getloadavg()}")
    best = {}  # (run, contender, count) -> the repeat with the least CPU (the least disturbed by other load)
    for row in rows:
        key = (row["run"], row["contender"], row["requested_shards"])
        best[key] = min(best.get(key, row), row, key=lambda r: r["cpu_seconds"])
    kinds = sorted({k for row in rows for k in row["task_MB"]})
    print(" | ".join(["run", "contender", "shards", "CPU s/MB", "driver MB", *[f"{k} MB" for k in kinds]]))
    for run_dir in run_dirs:
        for name in contenders:
            for count in counts:
                row = best[(str(run_dir), name, count)]
                figures = [f"{row['cpu_s_per_MB']:.3f}", str(row["driver_MB"])]
                figures += [str(row["task_MB"].get(k, "")) for k in kinds]
                print(" | ".join([run_dir.parent.name, name, str(row["output_shards"]), *figures]))
    if len(run_dirs) > 1:
        first, last = str(run_dirs[0]), str(run_dirs[-1])
        print(f"peak RSS per task kind and CPU s/MB, {run_dirs[-1].parent.name} / {run_dirs[0].parent.name}:")
        for name in contenders:
            for count in counts:
                a, b = best[(first, name, count)], best[(last, name, count)]
                ratios = {k: round(b["task_MB"][k] / a["task_MB"][k], 2) for k in kinds if k in a["task_MB"]}
                ratios = ratios | {
                    "driver": round(b["driver_MB"] / a["driver_MB"], 2),
                    "cpu_s_per_MB": round(b["cpu_s_per_MB"] / a["cpu_s_per_MB"], 2),
                }
                print(f"  {name} at {count} shards: {json.dumps(ratios)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=(*CONTENDERS, "shards"), help=argparse.SUPPRESS)
    parser.add_argument("--max-documents", type=int, default=int(os.environ.get(MAX_DOCUMENTS, 1000)))
    parser.add_argument("--output-shards", help="comma-separated output-shard counts: the scaling benchmark only")
    parser.add_argument("--documents", type=int, default=8000, help="documents of the scaling benchmark's run")
    parser.add_argument("--run-dir", help="finished run(s), comma-separated (--output-shards)")
    parser.add_argument("--peer", help="another checkout's refinery executable, run alternately (with --run-dir)")
    parser.add_argument("--repeats", type=int, default=1, help="writes per count and contender (with --run-dir)")
    parser.add_argument("--warm-index", action="store_true", help="copy a finished index into every output first")
    parser.add_argument("--num-cpus", type=int, default=2, help="the embedded Ray's CPUs (with --run-dir)")
    parser.add_argument("--work", help="folder for the --run-dir writes (default: a new one under /tmp)")
    parser.add_argument("--in-process", action="store_true", help="write_mix(in_process=True), not the CLI on Ray")
    parser.add_argument("--write-in-process", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_in_process:
        from refinery.mixes.writer import write_mix

        run_dir, weights_file, output = args.write_in_process
        write_mix(run_dir, json.loads(Path(weights_file).read_text()), output, in_process=True)
        return
    if args.output_shards and args.run_dir:
        rows = run_scaling(args)
        print(json.dumps(rows))
        return
    if args.output_shards:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        rows = output_shard_scaling(args.documents, [int(c) for c in args.output_shards.split(",")])
        print(f"{'output shards':>14}{'seconds':>9}{'input MB':>10}{'s/MB':>8}{'x 1 shard':>10}{'input read':>11}")
        for row in rows:
            print(
                f"{row['output_shards']:>14}{row['seconds']:>9.2f}{row['input_MB']:>10.2f}{row['s_per_MB']:>8.3f}"
                f"{row['s_per_MB'] / rows[0]['s_per_MB']:>10.2f}{row['input_bytes_read_per_input_byte']:>11.2f}"
            )
        print("x 1 shard = s/MB against the first count's write of the same run; input read = bytes read / input bytes")
        print(json.dumps(rows))
        return
    if args.worker == "shards":
        print(json.dumps(shard_writing(args.max_documents)))
        return
    if args.worker:
        worker(args.worker, args.max_documents)
        return
    load_documents()  # extract once, outside every timing
    os.environ[MAX_DOCUMENTS] = str(args.max_documents)  # the contender processes read it
    results = run_contenders(__file__, CONTENDERS)
    assert results["refinery/token_count"]["items"] == results["datatrove/token_count"]["items"], results
    print_ratios(results, "tokens", extra=("MB",))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    shards = run_contenders(__file__, ("shards",))["shards"]
    print(
        f"shard writing (write_mix, 1 core, 2 epochs): {shards['documents']} documents in {shards['seconds']:.1f} s: "
        f"{shards['text_MB'] / shards['seconds']:.2f} MB text/s, {shards['parquet_MB'] / shards['seconds']:.2f} MB "
        f"Parquet/s per core"
    )


if __name__ == "__main__":
    main()
