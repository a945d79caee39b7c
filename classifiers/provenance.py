"""What a student was trained on, so an evaluation can tell held-out documents from training documents.

``refinery train-classifier`` adds a ``trained_on`` record to ``student.json`` (the label set's path and digest,
the prompt, the teacher, the split — ``train`` or ``all`` for ``--all`` — the held-out fraction, the number of
training documents and the sha256 of their sorted ids) and writes the ids themselves to ``training_ids.parquet``.
``refinery eval-classifier`` intersects them with the held-out documents it scores: a student scored on its own
training documents is refused (exit 2) unless ``--allow-training-overlap``, and then the overlap is stated in
``eval.json`` and on stderr. A student without the record (trained before it existed) is evaluated with a
warning that its training data is unknown.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.classifiers.dataset import TEST_FRACTION, LabelledData
from refinery.classifiers.labelling import store
from refinery.classifiers.students.base import read_config, write_config
from refinery.pipelines.file_digests import path_digest

TRAINING_IDS = "training_ids.parquet"


class TrainingOverlapError(ValueError):
    """An evaluation whose held-out documents include the student's training documents."""


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def label_set_digest(labels_dir: str | Path, data: LabelledData) -> str:
    """The documents file's sha256 and the labels the student learnt (ids, classes, scores)."""
    digest = hashlib.sha256(path_digest(Path(labels_dir) / store.DOCUMENTS).encode())
    for doc_id, label, score in sorted(zip(data.ids, data.labels.tolist(), data.scores.tolist(), strict=True)):
        digest.update(f"{doc_id}\x00{label}\x00{score!r}\n".encode())
    return digest.hexdigest()


def record_training(
    model_dir: str | Path, labels_dir: str | Path, data: LabelledData, train: LabelledData, every_document: bool
) -> dict[str, Any]:
    """Add ``trained_on`` to ``student.json`` and write the training ids beside it."""
    config = read_config(model_dir)
    config["trained_on"] = {
        "labels": str(labels_dir),
        "label_set_sha256": label_set_digest(labels_dir, data),
        "prompt": data.prompt,
        "split": "all" if every_document else "train",
        "test_fraction": TEST_FRACTION,
        "documents": len(train.ids),
        "ids_sha256": ids_digest(train.ids),
        "ids_file": TRAINING_IDS,
    }
    pq.write_table(pa.table({"id": pa.array(sorted(train.ids), pa.string())}), Path(model_dir) / TRAINING_IDS)
    write_config(model_dir, config)
    return config["trained_on"]


def training_overlap(model_dir: str | Path, config: dict[str, Any], held_out_ids: list[str]) -> dict[str, Any]:
    """``status``: ``disjoint`` (no held-out document was trained on), ``overlap`` or ``unknown``; with counts."""
    record = config.get("trained_on")
    path = Path(model_dir) / (record or {}).get("ids_file", TRAINING_IDS)
    if not record or not path.is_file():
        return {
            "status": "unknown",
            "message": f"{model_dir}: student.json does not record its training documents (trained before "
            "refinery recorded them); the held-out split may include them",
        }
    trained = set(pq.read_table(path)["id"].to_pylist())
    if ids_digest(list(trained)) != record["ids_sha256"]:
        return {"status": "unknown", "message": f"{path} does not match the digest in student.json"}
    overlap = sum(doc_id in trained for doc_id in held_out_ids)
    status = "overlap" if overlap else "disjoint"
    message = (
        f"{overlap} of the {len(held_out_ids)} held-out documents were training documents of this student "
        f"(trained with split {record['split']!r}{', i.e. --all' if record['split'] == 'all' else ''}): "
        "its scores on them measure memorisation, not agreement with the teacher"
    )
    return {
        "status": status,
        "split": record["split"],
        "held_out_documents": len(held_out_ids),
        "training_documents_evaluated": overlap,
        "message": message if overlap else "no held-out document was a training document",
    }
