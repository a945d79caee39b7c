"""A label set as training data: the texts, the teacher's labels of one prompt, and a fixed held-out split.

A document is held out when a hash of its id falls in the first ``test_fraction`` of the hash range: the split is
the same for every prompt, student and evaluation, does not move when more documents are labelled (a label set
grows by resuming ``refinery label`` with a larger ``--limit``), and a paraphrased prompt labelled with
``--split test`` covers exactly the held-out documents (the self-agreement ceiling).
Documents whose teacher answer failed or was unparseable stay in the label set but not in training data.

For an ordinal rubric the class a student learns (and is evaluated on) is the teacher's expected score rounded to
the nearest point, not the most probable point: a small teacher puts most mass on one point for nearly every
document, while the expected score keeps its ordering (FineWeb-Edu likewise rounded its regression scores). The
stored ``label`` stays the argmax.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from refinery.classifiers.labelling import store
from refinery.classifiers.labelling.prompts import load_prompt

TEST_FRACTION = 0.2


@dataclass
class LabelledData:
    """Aligned arrays of one prompt's answered documents; ``test`` marks the held-out split."""

    prompt: str
    task: str
    classes: list[str]
    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # class index per document
    scores: np.ndarray  # the teacher's scalar score
    probabilities: np.ndarray | None  # (n, k) teacher label probabilities when every answer has them
    test: np.ndarray
    failed: int

    def split(self, test: bool) -> LabelledData:
        mask = self.test if test else ~self.test
        index = np.flatnonzero(mask)
        return LabelledData(
            self.prompt,
            self.task,
            self.classes,
            [self.ids[i] for i in index],
            [self.texts[i] for i in index],
            self.labels[index],
            self.scores[index],
            None if self.probabilities is None else self.probabilities[index],
            self.test[index],
            0,
        )


def is_held_out(ids: list[str], test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """True for held-out documents: a stable hash of the id below ``test_fraction`` of the range."""
    limit = int(test_fraction * 2**32)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=4, person=b"heldout").digest(), "big") < limit
            for i in ids
        ],
        dtype=bool,
    )


def load_labelled(
    labels_dir: str | Path,
    prompt: str,
    teacher: str | None = None,
    test_fraction: float = TEST_FRACTION,
    calibrate: bool = True,
) -> LabelledData:
    """The answered documents of ``prompt`` (one teacher: the only one present, or the one named)."""
    documents = store.read_documents(labels_dir)
    labels = store.read_labels(labels_dir, prompt=prompt)
    teachers = sorted(set(labels["teacher"].to_pylist()))
    if teacher is None:
        if len(teachers) != 1:
            raise ValueError(f"{labels_dir}: prompt {prompt!r} has labels from {teachers or 'no teacher'}; name one")
        teacher = teachers[0]
    labels = labels.filter(pc.equal(labels["teacher"], teacher))
    definition = load_prompt(prompt)
    answered = labels.filter(pc.invert(pc.is_null(labels["label"])))
    by_id = {
        i: (lab, s, p)
        for i, lab, s, p in zip(
            *(answered[c].to_pylist() for c in ("id", "label", "score", "probabilities")), strict=True
        )
    }
    order = documents["id"].to_pylist()
    texts = documents["text"].to_pylist()
    rows = [k for k, doc_id in enumerate(order) if doc_id in by_id]
    classes = list(definition.labels)
    probabilities = [by_id[order[k]][2] for k in rows]
    scores = np.array([by_id[order[k]][1] for k in rows], dtype=np.float64)
    if definition.task == "ordinal":
        values = np.array([float(c) for c in classes])
        targets = np.abs(scores[:, None] - values[None, :]).argmin(axis=1)
        probabilities = [None]  # soft targets would teach the argmax, not the rounded expected score
    elif calibrate and definition.task == "multiclass" and rows and all(p is not None for p in probabilities):
        matrix = np.array(probabilities, dtype=np.float64)
        matrix = matrix / np.maximum(matrix.mean(axis=0), 1e-12)
        matrix /= matrix.sum(axis=1, keepdims=True)
        targets, scores = matrix.argmax(axis=1), matrix.max(axis=1)
        probabilities = matrix.astype(np.float32).tolist()
    else:
        targets = np.array([classes.index(by_id[order[k]][0]) for k in rows], dtype=np.int64)
    return LabelledData(
        prompt=prompt,
        task=definition.task,
        classes=classes,
        ids=[order[k] for k in rows],
        texts=[texts[k] or "" for k in rows],
        labels=targets.astype(np.int64),
        scores=scores,
        probabilities=None if any(p is None for p in probabilities) else np.array(probabilities, dtype=np.float32),
        test=is_held_out([order[k] for k in rows], test_fraction),
        failed=labels.num_rows - answered.num_rows,
    )
