"""The student contract: class probabilities for texts, the scalar score of a task, and loading by folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CONFIG = "student.json"


class Student(Protocol):
    kind: str
    task: str
    classes: list[str]
    config: dict[str, Any]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), len(classes))`` class probabilities."""
        ...


def score_of(task: str, classes: list[str], probabilities: np.ndarray) -> np.ndarray:
    """The scalar a stage writes: expected class value (ordinal), P(positive) (binary), top probability."""
    if task == "ordinal":
        return probabilities @ np.array([float(c) for c in classes])
    if task == "binary":
        return probabilities[:, -1]
    return probabilities.max(axis=1)


def read_config(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {CONFIG} (not a student folder; see refinery train-classifier)")
    return json.loads(path.read_text())


def write_config(model_dir: str | Path, config: dict[str, Any]) -> None:
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    (Path(model_dir) / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_student(model_dir: str | Path) -> Student:
    """The student saved in ``model_dir`` (fastText or transformer), ready to predict."""
    config = read_config(model_dir)
    if config["kind"] == "fasttext":
        from refinery.classifiers.students.fasttext_student import FastTextStudent

        return FastTextStudent.load(model_dir)
    if config["kind"] == "transformer":
        from refinery.classifiers.students.transformer_student import TransformerStudent

        return TransformerStudent.load(model_dir)
    raise ValueError(f"{model_dir}: unknown student kind {config['kind']!r}")
