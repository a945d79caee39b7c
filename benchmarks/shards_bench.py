"""Shards benchmark: ``token_count`` against datatrove's ``TokensCounter``, and shard writing MB/s, one core each.

One command: ``.venv/bin/python benchmarks/shards_bench.py [--max-documents N]``.

* token counting: our ``token_count`` stage (batches of 500 through ``encode_batch_fast``, no special tokens)
  against datatrove's ``TokensCounter`` (``encode_batch`` in batches of 10,000), both on the same Llama 3
  ``tokenizer.json`` file and the same documents of the sample corpus; counts are checked to agree (datatrove's
  encode adds ``<|begin_of_text|>``: one more per document);
* shard writing: ``write_mix`` over the same documents laid out as a run directory (10 kept shards with
  ``n_tokens``), on an embedded Ray with one CPU, two epochs of one bucket; MB of text written per second
  (Ray start-up excluded). datatrove has no weighted shard writer: this row has no peer.

Each contender runs in its own subprocess pinned to one core.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=(*CONTENDERS, "shards"), help=argparse.SUPPRESS)
    parser.add_argument("--max-documents", type=int, default=int(os.environ.get(MAX_DOCUMENTS, 1000)))
    args = parser.parse_args()
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
