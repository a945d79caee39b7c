"""What the benchmarks share: real documents, one-core contender processes, and the ratio table.

Documents: every document of the sample corpus (or any WARC/JSONL/Parquet folder), extracted once with
Refinery's readers and cached as Parquet, so contenders are timed on text alone. Each contender runs in its own
process pinned to one core and reports its peak RSS; ratios are always against datatrove's equivalent.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"warc": "*.warc.gz", "jsonl": "*.jsonl*", "parquet": "*.parquet"}


def load_documents(corpus: Path = REPO / "sample_corpus", cache_dir: Path = Path("/tmp/refinery-bench")) -> pa.Table:
    """id, text, source, url of every document ingest keeps, in a fixed order."""
    from refinery.pipelines.readers import READERS
    from refinery.pipelines.recipe import InputSpec
    from refinery.pipelines.shards import Shard

    files = [(fmt, p) for fmt, pattern in FORMATS.items() for p in sorted((corpus / fmt).glob(pattern))]
    key = hashlib.sha256("".join(f"{p}:{p.stat().st_size}" for _, p in files).encode()).hexdigest()[:12]
    cached = cache_dir / f"documents-{key}.parquet"
    if cached.exists():
        return pq.read_table(cached)
    tables = []
    for fmt, path in files:
        source = path.name.split("-")[0]
        spec = InputSpec(name=source, format=fmt, paths=[str(path)])
        tables.extend(batch.kept for batch in READERS[fmt](Shard(source, str(path), path.name), spec, 1000))
    documents = pa.concat_tables(tables).select(["id", "text", "source", "url"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(documents, cached)
    return documents


def pin_one_core() -> None:
    """Per-core figures: the contender may use one core only."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_contenders(script: str, contenders: tuple[str, ...]) -> dict[str, dict]:
    """Run ``script --worker NAME`` for each contender in a fresh process; each prints one JSON line last."""
    results = {}
    for contender in contenders:
        out = subprocess.run(
            [sys.executable, script, "--worker", contender], check=True, capture_output=True, text=True
        )
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def print_ratios(results: dict[str, dict], unit: str, extra: tuple[str, ...] = ()) -> None:
    """One row per contender: count, kept, rate, peak RSS, and both as ratios to ``datatrove/<same task>``."""
    header = f"{'contender':<24}{unit:>8}{'kept':>8}{unit + '/s':>12}"
    header += "".join(f"{name + '/s':>8}" for name in extra) + f"{'peak RSS MB':>13}{'x rate':>8}{'x RSS':>7}"
    print(header)
    for contender, r in results.items():
        peer = results["datatrove/" + contender.split("/", 1)[1]]
        rate, peer_rate = r["items"] / r["seconds"], peer["items"] / peer["seconds"]
        row = f"{contender:<24}{r['items']:>8}{r['kept']:>8}{rate:>12.1f}"
        row += "".join(f"{r[name] / r['seconds']:>8.2f}" for name in extra)
        print(row + f"{r['peak_rss_mb']:>13.0f}{rate / peer_rate:>8.2f}{r['peak_rss_mb'] / peer['peak_rss_mb']:>7.2f}")
    print("x = ratio to datatrove's equivalent on the same input, one core each")
