"""Classifier benchmark: scoring throughput of the students against datatrove's fastText filter, and teacher speed.

One command: ``.venv/bin/python benchmarks/classifiers_bench.py [--documents 1000] [--teacher-documents 16]``.

* scoring, docs/s on one core: the ``quality_classifier`` stage with the committed fastText student
  (``classifiers/models/edu_fasttext/model.bin``) and with the transformer student (all-MiniLM-L6-v2 + linear
  head), against datatrove's ``FastTextClassifierFilter`` on the same ``model.bin`` and the same documents
  (the first ``--documents`` of the sample corpus); ratios are to datatrove;
* teacher, documents/minute: the bundled SmolLM2 teacher labelling with the ``edu`` rubric at 128 tokens per
  document, locally (one forward pass per batch) and through the OpenAI-compatible HTTP backend against
  ``refinery.classifiers.labelling.serve`` on loopback (same model; one request at a time on this CPU server).

Each contender runs in its own subprocess pinned to one core (the teacher server too) and reports peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, load_documents, peak_rss_mb, pin_one_core

MODELS = REPO / "classifiers" / "models"
SCORERS = ("refinery/fasttext_student", "refinery/transformer_student", "datatrove/fasttext_student")
TEACHERS = ("teacher/local", "teacher/http")
BATCH = 500


def _refinery(model: str, texts_table) -> int:
    from refinery.classifiers.scoring import QualityClassifier

    stage = QualityClassifier(model_path=str(MODELS / model))
    stage.setup()
    return sum(stage.process(texts_table.slice(s, BATCH)).kept.num_rows for s in range(0, texts_table.num_rows, BATCH))


def _datatrove(texts_table) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    # a keep threshold of 0 keeps every document and still scores all labels (with neither keep_labels nor
    # remove_labels datatrove 0.10.1 fails building its label check)
    scorer = FastTextClassifierFilter(
        model_url=str(MODELS / "edu_fasttext" / "model.bin"), keep_labels=[("1", 0.0)], newline_replacement=" "
    )
    kept = 0
    for index, text in enumerate(texts_table.column("text").to_pylist()):
        kept += scorer.filter(Document(text=text, id=str(index))) is True
    return kept


def _teacher(kind: str, texts: list[str]) -> dict:
    from refinery.classifiers.labelling.prompts import load_prompt

    prompt = load_prompt("edu")
    server = None
    if kind == "teacher/local":
        from refinery.classifiers.labelling.local import LocalTeacher

        teacher = LocalTeacher(batch_size=8)
    else:
        from refinery.classifiers.labelling.http import HttpTeacher

        server = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "refinery.classifiers.labelling.serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = ""
        while not line.startswith("READY"):
            line = server.stdout.readline().strip()
            if not line and server.poll() is not None:
                raise RuntimeError("teacher server did not start")
        teacher = HttpTeacher(line.split()[1], "smollm2", concurrency=1, timeout_s=600)
    try:
        truncated = teacher.truncate(texts, 128)
        started = time.perf_counter()
        answers = teacher.label(prompt, truncated)
        seconds = time.perf_counter() - started
    finally:
        if server is not None:
            server.kill()
            server.wait()
    return {"items": len(texts), "kept": sum(a.error is None for a in answers), "seconds": seconds}


def worker(contender: str, documents: int, teacher_documents: int) -> None:
    pin_one_core()
    table = load_documents().slice(0, documents)
    if contender in TEACHERS:
        result = _teacher(contender, table.column("text").to_pylist()[:teacher_documents])
    else:
        started = time.perf_counter()
        if contender == "datatrove/fasttext_student":
            kept = _datatrove(table)
        else:
            kept = _refinery("edu_fasttext" if "fasttext" in contender else "edu_transformer", table)
        result = {"items": table.num_rows, "kept": kept, "seconds": time.perf_counter() - started}
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=SCORERS + TEACHERS, help=argparse.SUPPRESS)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--teacher-documents", type=int, default=16)
    parser.add_argument("--skip-teacher", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.documents, args.teacher_documents)
        return
    load_documents()
    results = {}
    for contender in SCORERS + (() if args.skip_teacher else TEACHERS):
        command = [sys.executable, __file__, "--worker", contender, "--documents", str(args.documents)]
        command += ["--teacher-documents", str(args.teacher_documents)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    peer = results["datatrove/fasttext_student"]
    peer_rate = peer["items"] / peer["seconds"]
    print(f"{'contender':<30}{'docs':>7}{'docs/s':>10}{'peak RSS MB':>13}{'x datatrove':>13}")
    for contender in SCORERS:
        r = results[contender]
        rate = r["items"] / r["seconds"]
        print(f"{contender:<30}{r['items']:>7}{rate:>10.1f}{r['peak_rss_mb']:>13.0f}{rate / peer_rate:>13.2f}")
    print("x datatrove = docs/s ratio to datatrove's FastTextClassifierFilter on the same model.bin, one core each")
    for contender in () if args.skip_teacher else TEACHERS:
        r = results[contender]
        print(
            f"{contender:<30}{r['items']:>7} docs {60 * r['items'] / r['seconds']:>8.1f} docs/min "
            f"({r['kept']} labelled, peak RSS {r['peak_rss_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
