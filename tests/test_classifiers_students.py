"""Students trained on the committed teacher label set (classifiers/data/llama3_sample, real SmolLM2 labels of
real documents): they train, save in safe formats only, load back to the same predictions, and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refinery.classifiers.dataset import load_labelled
from refinery.classifiers.evaluation import evaluate, length_features
from refinery.classifiers.students.base import load_student, score_of
from refinery.classifiers.students.fasttext_student import FastTextStudent
from refinery.classifiers.students.transformer_student import TransformerStudent

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "classifiers" / "data" / "llama3_sample"
MODELS = REPO / "classifiers" / "models"


def no_pickle(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert path.suffix in {".bin", ".safetensors", ".json", ".png"}, path
            assert path.read_bytes()[:2] != b"\x80\x04", f"{path} is a pickle"


def test_label_set_is_real():
    data = load_labelled(LABELS, "edu")
    assert len(data.ids) + data.failed >= 256 and len(set(data.labels.tolist())) >= 2
    assert data.test.sum() == pytest.approx(0.2 * len(data.ids), abs=15)
    log = json.loads((LABELS / "labelling.json").read_text())
    assert any(entry["prompt"] == "edu" and "SmolLM2" in entry["teacher"] for entry in log)


def test_fasttext_student_trains_saves_and_scores(tmp_path):
    data = load_labelled(LABELS, "edu")
    train = data.split(test=False)
    student = FastTextStudent.train(train.texts, train.labels, data.classes, data.task, tmp_path / "ft", prompt="edu")
    no_pickle(tmp_path / "ft")
    test = data.split(test=True)
    probabilities = student.predict_proba(test.texts)
    assert probabilities.shape == (len(test.ids), len(data.classes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    again = load_student(tmp_path / "ft")
    np.testing.assert_array_equal(again.predict_proba(test.texts), probabilities)
    scores = score_of("ordinal", data.classes, probabilities)
    assert ((scores >= 0) & (scores <= 5)).all()


def test_transformer_student_trains_on_embeddings_and_evaluates(tmp_path):
    data = load_labelled(LABELS, "domain")
    train = data.split(test=False)
    subset = slice(0, 150)  # embedding costs ~10 ms/document here: a subset keeps the test short
    TransformerStudent.train(
        train.texts[subset],
        train.labels[subset],
        data.classes,
        data.task,
        tmp_path / "tr",
        prompt="domain",
        probabilities=None if train.probabilities is None else train.probabilities[subset],
        max_tokens=64,
        head="mlp",
        hidden=32,
        epochs=100,
    )
    no_pickle(tmp_path / "tr")
    config = json.loads((tmp_path / "tr" / "student.json").read_text())
    assert config["kind"] == "transformer" and config["hidden"] == 32 and config["dim"] == 384
    result = evaluate(tmp_path / "tr", LABELS)
    assert (tmp_path / "tr" / "eval" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("accuracy", "macro_f1", "spearman"):
        assert name in result["student"]
    assert set(result["baselines"]) == {"majority", "length_logreg"}
    assert result["student"]["documents"] == int(data.test.sum())


def test_committed_students_load_and_evaluation_compares_with_the_ceiling():
    result = json.loads((MODELS / "edu_fasttext" / "eval" / "eval.json").read_text())
    assert result["teacher_self_agreement"]["prompt"] == "edu_paraphrase"
    for name in ("edu_fasttext", "edu_transformer", "domain_fasttext", "topic_fasttext"):
        student = load_student(MODELS / name)
        assert student.predict_proba(["def main():\n    return 0\n"]).shape[0] == 1


def test_length_features_are_finite():
    features = length_features(["", "one two three\nfour", "x" * 10_000])
    assert features.shape == (3, 4) and np.isfinite(features).all()
