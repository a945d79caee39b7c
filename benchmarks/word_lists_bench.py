"""Word-list benchmark: ``dirty_words`` and ``adult_words`` of this tree against the same stages at a git revision.

One command: ``.venv/bin/python benchmarks/word_lists_bench.py`` (``--before REV``, default ``main``).

The peer is ``filters/word_lists.py`` as it is at ``REV`` (read with ``git show``), loaded beside this tree's
module in the same process, so both run on the same batches in the same run: rounds alternate which goes first,
and each figure is the median of the rounds' CPU seconds (``time.process_time``, one core) of ``process()`` over
every batch, per million characters of text. Patterns are compiled in ``setup()`` first, as workers do. Corpora:

* the sample corpus (or ``--corpus FOLDER`` with ``warc/``, ``jsonl/``, ``parquet/``, e.g. the distinct-text
  corpus of ``scripts/build_world_corpus.py``), labelled by the ``language_id`` stage;
* ``catalogues``: real text in scripts with combining marks (hi, bn, th, mr, ne, ta, te), the translated messages
  of the message catalogues under ``/usr/share/locale`` in documents of ~3,000 characters (skipped where there
  are none);
* ``phrase-catalogues``: the same for the other languages whose lists hold multi-word entries (ar, es, fr, pt, de,
  ja, ur), whose presence patterns keep those entries whole since they count.

Printed per corpus and stage: seconds per million characters at ``REV`` and here, the ratio here/``REV`` (median,
min and max of the rounds) and the documents each kept.
"""

from __future__ import annotations

import argparse
import gettext
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, load_documents, pin_one_core

STAGES = {"adult_words": "AdultWordsFilter", "dirty_words": "DirtyWordsFilter"}
CATALOGUE_LANGUAGES = ("hi", "bn", "th", "mr", "ne", "ta", "te")
PHRASE_LANGUAGES = ("ar", "es", "fr", "pt", "de", "ja", "ur")
BATCH = 500  # recipes/llama3.yaml's batch_size


def module_at(revision: str):
    """``filters/word_lists.py`` at ``revision`` as a module of its own (its stages kept out of the registry)."""
    from refinery.pipelines import stages

    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{revision}:filters/word_lists.py"], check=True, capture_output=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "word_lists_before.py"
    path.write_bytes(source)
    registered = {name: stages._REGISTRY.pop(name) for name in STAGES}
    try:
        spec = importlib.util.spec_from_file_location("word_lists_before", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        stages._REGISTRY.update(registered)
    return module


def catalogue_documents(languages_wanted: tuple[str, ...], size: int = 3000) -> pa.Table:
    """Translated messages of every catalogue of each language, joined into documents of ~``size`` characters."""
    texts, languages = [], []
    for language in languages_wanted:
        current: list[str] = []
        for path in sorted(Path("/usr/share/locale", language, "LC_MESSAGES").glob("*.mo")):
            try:
                with path.open("rb") as handle:
                    messages = gettext.GNUTranslations(handle)._catalog
            except (OSError, UnicodeDecodeError):
                continue
            for key, value in messages.items():
                if key and isinstance(value, str) and value:
                    current.append(value)
                    if sum(map(len, current)) >= size:
                        texts.append("\n".join(current))
                        languages.append(language)
                        current = []
        if current:
            texts.append("\n".join(current))
            languages.append(language)
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts, "lang": languages})


def timed(stage, batches: list[pa.Table]) -> tuple[float, int]:
    start = time.process_time()
    kept = sum(stage.process(batch).kept.num_rows for batch in batches)
    return time.process_time() - start, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision of the peer (default: main)")
    parser.add_argument("--corpus", type=Path, help="a folder with warc/, jsonl/, parquet/ (default: the sample)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    pin_one_core()
    import refinery.filters.word_lists as here
    from refinery.filters.language_id import FastTextLanguageId

    before = module_at(args.before)
    documents = load_documents(args.corpus) if args.corpus else load_documents()
    corpora = {
        (args.corpus.name if args.corpus else "sample"): FastTextLanguageId(min_score=0.0)
        .process(documents.select(["id", "text"]))
        .kept
    }
    for name, wanted in (("catalogues", CATALOGUE_LANGUAGES), ("phrase-catalogues", PHRASE_LANGUAGES)):
        catalogues = catalogue_documents(wanted)
        if catalogues.num_rows:
            corpora[name] = catalogues
    print(f"peer: filters/word_lists.py at {args.before}; {args.rounds} rounds, CPU seconds, one core")
    for name, table in corpora.items():
        characters = pc.sum(pc.utf8_length(pc.fill_null(table["text"], ""))).as_py()
        batches = [table.slice(start, BATCH) for start in range(0, table.num_rows, BATCH)]
        for stage_name, class_name in STAGES.items():
            stages = {"before": getattr(before, class_name)(), "here": getattr(here, class_name)()}
            for stage in stages.values():
                stage.setup()
                stage.process(batches[0])
            seconds: dict[str, list[float]] = {"before": [], "here": []}
            kept = {}
            for round_ in range(args.rounds):
                for which in ("before", "here") if round_ % 2 == 0 else ("here", "before"):
                    spent, kept[which] = timed(stages[which], batches)
                    seconds[which].append(spent)
            ratios = np.array(seconds["here"]) / np.array(seconds["before"])
            per_million = {which: 1e6 * float(np.median(s)) / characters for which, s in seconds.items()}
            print(
                f"{name:<17} {table.num_rows:>6} docs {characters / 1e6:6.1f} M chars  {stage_name:<12} "
                f"s per M chars: {args.before} {per_million['before']:.4f}, here {per_million['here']:.4f}; "
                f"here/{args.before} {np.median(ratios):.3f} ({ratios.min():.3f}-{ratios.max():.3f}); "
                f"kept {kept['before']} -> {kept['here']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
