"""How close a student comes to its teacher, next to what is trivially reachable and what is reachable at all.

On the held-out split of a label set: accuracy and macro-F1 of the student's labels against the teacher's, the
Spearman correlation of the student's score with the teacher's score, and a confusion matrix (PNG). Two baselines
trained on the same training split: the majority class, and a logistic regression on length features (characters,
words, lines, mean word length: a student that cannot beat it has learnt length, not quality). The ceiling: the
teacher against itself, the same held-out documents labelled under the paraphrased prompt (``PROMPT_paraphrase``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from refinery.classifiers.dataset import LabelledData, load_labelled
from refinery.classifiers.labelling import store
from refinery.classifiers.provenance import TrainingOverlapError, training_overlap
from refinery.classifiers.students.base import load_student, score_of


def metrics(truth: np.ndarray, predicted: np.ndarray, truth_score: np.ndarray, score: np.ndarray, k: int) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(range(k))
    present = sorted(set(truth.tolist()) | set(predicted.tolist()))
    rho = spearmanr(truth_score, score).statistic if len(set(score.tolist())) > 1 else float("nan")
    return {
        "documents": len(truth),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)), 4),
        "spearman": None if np.isnan(rho) else round(float(rho), 4),
        "confusion": confusion(truth, predicted, labels).tolist(),
    }


def confusion(truth: np.ndarray, predicted: np.ndarray, labels: list[int]) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(truth, predicted, labels=labels)


def length_features(texts: list[str]) -> np.ndarray:
    """log characters, log words, log lines, mean word length: what a length-only classifier sees."""
    rows = []
    for text in texts:
        words = text.split()
        rows.append(
            [
                np.log1p(len(text)),
                np.log1p(len(words)),
                np.log1p(text.count("\n") + 1),
                (sum(len(w) for w in words) / len(words)) if words else 0.0,
            ]
        )
    return np.array(rows, dtype=np.float64)


def baselines(train: LabelledData, test: LabelledData) -> dict[str, dict]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = len(train.classes)
    majority = int(np.bincount(train.labels, minlength=k).argmax())
    predicted = np.full(len(test.labels), majority)
    out = {"majority": metrics(test.labels, predicted, test.scores, predicted.astype(float), k)}
    if len(set(train.labels.tolist())) > 1:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(length_features(train.texts), train.labels)
        probabilities = np.zeros((len(test.texts), k))
        probabilities[:, model.classes_] = model.predict_proba(length_features(test.texts))
        predicted = probabilities.argmax(axis=1)
        out["length_logreg"] = metrics(
            test.labels, predicted, test.scores, score_of(train.task, train.classes, probabilities), k
        )
    return out


def self_agreement(labels_dir: str | Path, test: LabelledData) -> dict | None:
    """The teacher under ``PROMPT_paraphrase`` against the teacher under ``PROMPT``, on the held-out documents."""
    name = f"{test.prompt}_paraphrase"
    if store.read_labels(labels_dir, prompt=name).num_rows == 0:
        return None
    other = load_labelled(labels_dir, name)
    index = {doc_id: i for i, doc_id in enumerate(other.ids)}
    common = [i for i, doc_id in enumerate(test.ids) if doc_id in index]
    if not common:
        return None
    theirs = [index[test.ids[i]] for i in common]
    result = metrics(
        test.labels[common], other.labels[theirs], test.scores[common], other.scores[theirs], len(test.classes)
    )
    result["prompt"] = name
    return result


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.6 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("student")
    axis.set_ylabel("teacher")
    axis.set_title(title)
    dark = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        colour = "white" if value > dark else "black"  # readable on the dark cells too
        axis.text(column, row, str(value), ha="center", va="center", fontsize=8, color=colour)
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(figure)


def evaluate(
    model_dir: str | Path,
    labels_dir: str | Path,
    output: str | Path | None = None,
    allow_training_overlap: bool = False,
    run_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluate the student in ``model_dir`` on the held-out split of ``labels_dir``; writes eval.json + PNG.

    With ``run_dir`` (the run the labels were sampled from) the run's report links the evaluation page.

    Raises :class:`TrainingOverlapError` when held-out documents were the student's training documents (a
    student trained with ``--all``), unless ``allow_training_overlap``; the result's ``training_overlap`` says
    which documents it was scored on either way (see ``provenance``).
    """
    student = load_student(model_dir)
    prompt = student.config["prompt"]
    data = load_labelled(labels_dir, prompt)
    train, test = data.split(test=False), data.split(test=True)
    honesty = training_overlap(model_dir, student.config, test.ids)
    if honesty["status"] == "overlap" and not allow_training_overlap:
        raise TrainingOverlapError(f"{honesty['message']}; refusing (--allow-training-overlap evaluates anyway)")
    probabilities = student.predict_proba(test.texts)
    predicted = probabilities.argmax(axis=1)
    k = len(data.classes)
    result: dict[str, Any] = {
        "model": str(model_dir),
        "kind": student.kind,
        "prompt": prompt,
        "task": data.task,
        "classes": data.classes,
        "train_documents": len(train.ids),
        "training_overlap": honesty,
        "teacher_failed": data.failed,
        "student": metrics(test.labels, predicted, test.scores, score_of(data.task, data.classes, probabilities), k),
        "baselines": baselines(train, test),
        "teacher_self_agreement": self_agreement(labels_dir, test),
    }
    ceiling = result["teacher_self_agreement"]
    if ceiling and ceiling["macro_f1"]:
        result["student_f1_over_ceiling"] = round(result["student"]["macro_f1"] / ceiling["macro_f1"], 4)
    output = Path(output) if output else Path(model_dir) / "eval"
    output.mkdir(parents=True, exist_ok=True)
    plot_confusion(
        np.array(result["student"]["confusion"]),
        data.classes,
        f"{student.kind} vs teacher ({prompt})",
        output / "confusion.png",
    )
    (output / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    from refinery.classifiers.evaluation_page import write_evaluation_page

    write_evaluation_page(result, output, run_dir)  # eval.html, linked from the run's report when run_dir is given
    return result
