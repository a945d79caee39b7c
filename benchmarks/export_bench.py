"""Export benchmark: ``refinery export`` (Megatron, datatrove) against datatrove's ``DocumentTokenizer``, one core each.

One command: ``.venv/bin/python benchmarks/export_bench.py [--max-documents N] [--baseline-exports DIR] [--rounds N]``.

The same documents of the sample corpus (every source) are laid out as a run directory and mixed once with
``write_mix`` (each source a bucket, every document once, no held-out set) before any timing. Then, each in its
own process pinned to one core, on the mix's Parquet shards:

* ``refinery/export-datatrove`` and ``refinery/export-megatron``: ``export_manifest(..., in_process=True)`` —
  the per-shard tasks run in the process itself (the figures are per core; peak RSS is the task's), from the
  manifest to a verified ``export.json`` (shard hashing, tokenizing, per-bucket files, the Megatron merge);
* ``datatrove/export-datatrove``: ``DocumentTokenizer(eos_token="<|end_of_text|>", shuffle_documents=False)`` over the
  same documents read from the same shards, the same ``tokenizer.json`` (it writes one file, no buckets).

The datatrove export must hold DocumentTokenizer's tokens (same count and the same histogram of ids, in another
document order: per bucket); Megatron's adds one BOS per document. A last row times the whole ``export_manifest``
on an embedded Ray with one CPU (Ray start-up excluded), the path a user runs (``--no-ray`` skips it).

Paired comparisons of the export itself (CPU seconds of the process, the steadier figure on a loaded machine, and
wall seconds; medians over ``--rounds`` rounds, the contenders alternating within each round):

* ``url/export-FORMAT``: the same in-process export written to a ``file://`` URL (every write, marker, listing
  and the Megatron merge through fsspec's URL handling) against the local path;
* ``baseline/export-FORMAT`` (with ``--baseline-exports DIR``): the same export by the ``exports`` package of
  another commit (``git archive BASE exports | tar -x -C /tmp/base`` → ``--baseline-exports /tmp/base/exports``)
  against this one: the before/after of a change, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, pin_one_core, run_contenders

CONTENDERS = ("refinery/export-datatrove", "refinery/export-megatron", "datatrove/export-datatrove")
URL_CONTENDERS = ("url/export-datatrove", "url/export-megatron")
BASELINE_CONTENDERS = ("baseline/export-datatrove", "baseline/export-megatron")
MAX_DOCUMENTS = "REFINERY_BENCH_MAX_DOCUMENTS"
MIX_DIR = "REFINERY_BENCH_EXPORT_MIX"
BASELINE_EXPORTS = "REFINERY_BENCH_BASELINE_EXPORTS"


def prepare_mix(max_documents: int, folder: Path) -> Path:
    """Every k-th document as a run directory (10 kept shards with n_tokens), mixed once: the manifest's path."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from shards_bench import _fake_run, documents

    from refinery.mixes.writer import write_mix

    run = _fake_run(documents(max_documents), folder / "run")
    kept = pq.read_table(run / "segments/00/kept", columns=["source", "n_tokens"])
    buckets = {}
    for source in sorted(set(kept.column("source").to_pylist())):
        tokens = pc.sum(kept.filter(pc.equal(kept["source"], source))["n_tokens"]).as_py()
        buckets[source] = {"tokens": tokens, "max_epochs": 1}
    weights = {"bucket_column": "source", "shard_rows": -(-kept.num_rows // 8), "buckets": buckets}
    return write_mix(run, weights, folder / "mix", num_cpus=1)


def _texts(manifest_path: Path) -> list[str]:
    import pyarrow.parquet as pq

    from refinery.pipelines.manifest import Manifest

    manifest = Manifest.read(manifest_path)
    texts: list[str] = []
    for entry in manifest.entries():
        texts.extend(pq.read_table(manifest.file(entry), columns=["text"])["text"].to_pylist())
    return texts


def _use_baseline_exports(folder: str) -> None:
    """Import ``refinery.exports``' modules from another commit's ``exports/`` folder (before any is imported):
    the package's search path is that folder, so its modules (and their relative imports) come from there."""
    import refinery.exports as package

    package.__path__[:] = [str(Path(folder).resolve())]


def _refinery(export_format: str, manifest_path: Path, output: Path, url: bool = False) -> tuple[int, int, str]:
    from refinery.exports.exporter import export_manifest
    from refinery.exports.lineage import load_export

    target = f"file://{output.resolve()}" if url else output
    record = load_export(export_manifest(manifest_path, export_format, target, in_process=True))
    train = [d for d in record["datasets"] if d["split"] == "train"]
    if export_format == "datatrove":
        return sum(d["tokens"] for d in train), sum(d["documents"] for d in train), _histogram(output.rglob("*.ds"))
    return sum(d["tokens"] for d in train), sum(d["documents"] for d in train), ""


def _datatrove(manifest_path: Path, output: Path) -> tuple[int, int, str]:
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    from refinery.pipelines.models import DEFAULT_TOKENIZER, tokenizer_file

    texts = _texts(manifest_path)  # reading the shards is part of both contenders' work
    step = DocumentTokenizer(
        str(output),
        tokenizer_name_or_path=str(tokenizer_file(DEFAULT_TOKENIZER)),
        eos_token="<|end_of_text|>",
        shuffle_documents=False,
        save_filename="peer",
    )
    step.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
    tokens = sum(p.stat().st_size for p in output.glob("*.ds")) // step.token_size
    return tokens, len(texts), _histogram(output.glob("*.ds"))


def _histogram(files) -> str:
    """sha256 of how often each id occurs in the .ds files: equal for the same tokens in any document order."""
    import hashlib

    import numpy as np

    counts = sum(np.bincount(np.fromfile(f, dtype="<u4"), minlength=1 << 17) for f in sorted(files))
    return hashlib.sha256(np.asarray(counts, dtype=np.int64).tobytes()).hexdigest()


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` survives ``execve`` on Linux, so a contender started by
    a large parent would report at least the parent's size; VmHWM belongs to the process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(contender: str) -> None:
    pin_one_core()
    manifest_path = Path(os.environ[MIX_DIR]) / "manifest.json"
    family, export_format = contender.split("/")[0], contender.rsplit("-", 1)[1]
    if family == "baseline":
        _use_baseline_exports(os.environ[BASELINE_EXPORTS])
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        started, cpu_started = time.perf_counter(), time.process_time()
        if family == "datatrove":
            tokens, docs, histogram = _datatrove(manifest_path, Path(tmp) / "out")
        else:
            tokens, docs, histogram = _refinery(export_format, manifest_path, Path(tmp) / "out", url=family == "url")
        seconds = time.perf_counter() - started  # the histogram is read after the clock stops
        cpu_seconds = time.process_time() - cpu_started
    result = {
        "items": tokens,
        "kept": docs,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "ids": histogram,
    }
    print(json.dumps(result))


def end_to_end() -> dict:
    """``export_manifest`` as a user runs it: Ray tasks on an embedded Ray with one CPU (start-up excluded)."""
    from refinery.exports.exporter import export_manifest
    from refinery.exports.lineage import load_export
    from refinery.pipelines.ray_session import ray_session

    manifest_path = Path(os.environ[MIX_DIR]) / "manifest.json"
    out = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp, ray_session(None, 1):
        for export_format in ("datatrove", "megatron"):
            started = time.perf_counter()
            record = load_export(export_manifest(manifest_path, export_format, Path(tmp) / export_format))
            seconds = time.perf_counter() - started
            out[export_format] = {"tokens": sum(d["tokens"] for d in record["datasets"]), "seconds": seconds}
    return out


def print_table(results: dict[str, dict]) -> None:
    """Tokens/s per core and peak RSS of each contender, as ratios to DocumentTokenizer's."""
    peer = results["datatrove/export-datatrove"]
    peer_rate = peer["items"] / peer["seconds"]
    print(
        f"{'contender':<28}{'tokens':>11}{'documents':>11}{'tokens/s':>11}{'peak RSS MB':>13}{'x rate':>8}{'x RSS':>7}"
    )
    for name, r in results.items():
        rate = r["items"] / r["seconds"]
        print(
            f"{name:<28}{r['items']:>11}{r['kept']:>11}{rate:>11.0f}{r['peak_rss_mb']:>13.0f}"
            f"{rate / peer_rate:>8.2f}{r['peak_rss_mb'] / peer['peak_rss_mb']:>7.2f}"
        )
    print("x = ratio to datatrove's DocumentTokenizer on the same documents, one core each")


def paired_rounds(contenders: tuple[str, ...], rounds: int) -> dict[str, list[dict]]:
    """Every contender once per round, in turn (so a drift in the machine's load hits them alike)."""
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, result in run_contenders(__file__, contenders).items():
            runs[name].append(result)
    return runs


def print_pairs(runs: dict[str, list[dict]], pairs: list[tuple[str, str]]) -> None:
    """Median CPU and wall seconds of each contender, and the median of the round-by-round ratios to its peer."""
    from statistics import median

    print(f"{'contender':<28}{'vs':<28}{'CPU s':>8}{'wall s':>8}{'x CPU':>7}{'min':>6}{'max':>6}{'x wall':>8}")
    for name, peer in pairs:
        ours, theirs = runs[name], runs[peer]
        assert [r["items"] for r in ours] == [r["items"] for r in theirs], (name, peer)  # the same tokens
        cpu = [a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(ours, theirs, strict=True)]
        wall = [a["seconds"] / b["seconds"] for a, b in zip(ours, theirs, strict=True)]
        print(
            f"{name:<28}{peer:<28}{median(r['cpu_seconds'] for r in ours):>8.2f}"
            f"{median(r['seconds'] for r in ours):>8.2f}{median(cpu):>7.3f}{min(cpu):>6.2f}{max(cpu):>6.2f}"
            f"{median(wall):>8.3f}"
        )
    print(f"x = median over {len(cpu)} rounds of the round's ratio to the peer (CPU seconds of the process; wall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--worker", choices=(*CONTENDERS, *URL_CONTENDERS, *BASELINE_CONTENDERS, "ray"), help=argparse.SUPPRESS
    )
    parser.add_argument("--max-documents", type=int, default=int(os.environ.get(MAX_DOCUMENTS, 600)))
    parser.add_argument(
        "--baseline-exports",
        type=Path,
        help="the exports/ folder of another commit: its export is measured against this one's (before/after)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the paired comparisons (default 3)")
    parser.add_argument("--no-ray", action="store_true", help="skip the end-to-end run on an embedded Ray")
    args = parser.parse_args()
    if args.worker == "ray":
        print(json.dumps(end_to_end()))
        return
    if args.worker:
        worker(args.worker)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    load_documents()  # extract once, outside every timing
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        manifest = prepare_mix(args.max_documents, Path(tmp))
        os.environ[MIX_DIR] = str(manifest.parent)
        results = run_contenders(__file__, CONTENDERS)
        ours, peer = results["refinery/export-datatrove"], results["datatrove/export-datatrove"]
        assert ours["items"] == peer["items"] and ours["kept"] == peer["kept"], results
        assert ours["ids"] == peer["ids"], "the datatrove export and DocumentTokenizer hold different ids"
        assert results["refinery/export-megatron"]["items"] == ours["items"] + ours["kept"], results  # + one BOS each
        print_table(results)
        pairs = [(f"url/export-{f}", f"refinery/export-{f}") for f in ("datatrove", "megatron")]
        if args.baseline_exports is not None:
            os.environ[BASELINE_EXPORTS] = str(args.baseline_exports.resolve())
            pairs = [(f"refinery/export-{f}", f"baseline/export-{f}") for f in ("datatrove", "megatron")] + pairs
        paired = tuple(dict.fromkeys(name for pair in pairs for name in pair))
        print()
        print_pairs(paired_rounds(paired, args.rounds), pairs)
        ray = {} if args.no_ray else run_contenders(__file__, ("ray",))["ray"]
    for export_format, row in ray.items():
        print(
            f"export_manifest --format {export_format} on Ray (1 CPU, start-up excluded): {row['tokens']:,} tokens "
            f"in {row['seconds']:.1f} s = {row['tokens'] / row['seconds']:,.0f} tokens/s"
            + (
                " (first export: the Ray worker imports and loads the tokenizers)"
                if export_format == "datatrove"
                else ""
            )
        )


if __name__ == "__main__":
    main()
