"""Honest evaluation (issue 18 item 5): a student records what it was trained on, and ``eval-classifier`` refuses
to score it on its own training documents (a student trained with ``--all``) unless told to, and then says so.

On main ``student.json`` recorded no training documents and the ``--all`` student below was scored with no word.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq

from refinery.classifiers.dataset import load_labelled
from refinery.pipelines.cli import main

LABELS = Path(__file__).resolve().parents[1] / "classifiers" / "data" / "llama3_sample"


def refinery(*args: str) -> SimpleNamespace:
    """The CLI's own entry point, in process (fastText training still runs in its spawned process)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def train(output: Path, *extra: str) -> dict:
    fast = ("--kind", "fasttext", "--epoch", "3", "--dim", "8")
    done = refinery("train-classifier", str(LABELS), "--prompt", "edu", *fast, "--output", str(output), *extra)
    assert done.returncode == 0, done.stderr
    return json.loads((output / "student.json").read_text())


def test_eval_refuses_a_student_trained_on_its_held_out_documents(tmp_path):
    data = load_labelled(LABELS, "edu")
    held_out = set(data.split(test=True).ids)

    everything = train(tmp_path / "all", "--all")["trained_on"]
    assert everything["split"] == "all" and everything["documents"] == len(data.ids)
    trained_ids = set(pq.read_table(tmp_path / "all" / "training_ids.parquet")["id"].to_pylist())
    assert held_out <= trained_ids
    refused = refinery("eval-classifier", str(tmp_path / "all"), str(LABELS))
    assert refused.returncode == 2 and "were training documents" in refused.stderr
    assert not (tmp_path / "all" / "eval" / "eval.json").exists(), "nothing is written for a refused evaluation"

    allowed = refinery("eval-classifier", str(tmp_path / "all"), str(LABELS), "--allow-training-overlap")
    assert allowed.returncode == 0 and "WARNING" in allowed.stderr
    assert json.loads(allowed.stdout.splitlines()[0])["training_overlap"] == "overlap"
    record = json.loads((tmp_path / "all" / "eval" / "eval.json").read_text())["training_overlap"]
    assert record["status"] == "overlap" and record["training_documents_evaluated"] == len(held_out)

    split = train(tmp_path / "split")["trained_on"]
    assert split["split"] == "train" and split["documents"] == len(data.ids) - len(held_out)
    assert split["label_set_sha256"] == everything["label_set_sha256"], "the same label set, the same digest"
    honest = refinery("eval-classifier", str(tmp_path / "split"), str(LABELS))
    assert honest.returncode == 0, honest.stderr
    assert json.loads((tmp_path / "split" / "eval" / "eval.json").read_text())["training_overlap"]["status"] == (
        "disjoint"
    )
