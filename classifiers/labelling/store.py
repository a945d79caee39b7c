"""A label set on disk: the sampled documents once, and labels as append-only Parquet parts.

```
LABELS_DIR/documents.parquet         id, text (clipped), source, lang, origin: the sample, fixed at the first run
LABELS_DIR/labels/PROMPT-NNNNN.parquet  id, prompt, label, score, teacher, prompt_hash, raw_answer, error,
                                     probabilities: one part per labelled chunk, written atomically
LABELS_DIR/labelling.json            the commands that labelled it (prompt, teacher, counts, seconds)
```

Every answer is cached under (id, prompt hash, teacher): a resumed or repeated ``refinery label`` reads the parts
and asks the teacher only about documents it has no answer for, so a killed labelling loses at most one chunk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from refinery.classifiers.labelling.prompts import Prompt
from refinery.classifiers.labelling.teacher import Answer
from refinery.pipelines import storage

DOCUMENTS = "documents.parquet"
LABELS = "labels"
LABEL_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt", pa.string()),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("teacher", pa.string()),
        pa.field("prompt_hash", pa.string()),
        pa.field("raw_answer", pa.string()),
        pa.field("error", pa.string()),
        pa.field("probabilities", pa.list_(pa.float32())),
    ]
)
PARQUET = {"compression": "zstd", "compression_level": 9}


def write_atomic(table: pa.Table, path: Path) -> None:
    fs, inner = storage.filesystem(str(path))
    with storage.atomic_output(fs, inner) as temporary:
        pq.write_table(table, temporary, **PARQUET)


def read_documents(labels_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(labels_dir) / DOCUMENTS)


def read_labels(labels_dir: str | Path, prompt: str | None = None, teacher: str | None = None) -> pa.Table:
    """Every answer (the last one per id, prompt hash and teacher), optionally of one prompt name / teacher."""
    folder = Path(labels_dir) / LABELS
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return LABEL_SCHEMA.empty_table()
    table = ds.dataset([str(f) for f in files], schema=LABEL_SCHEMA, format="parquet").to_table()
    if prompt is not None:
        table = table.filter(pc.equal(table["prompt"], prompt))
    if teacher is not None:
        table = table.filter(pc.equal(table["teacher"], teacher))
    keys = [
        f"{i}\x00{h}\x00{t}"
        for i, h, t in zip(*(table[c].to_pylist() for c in ("id", "prompt_hash", "teacher")), strict=True)
    ]
    last = {key: row for row, key in enumerate(keys)}
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def answered_ids(labels_dir: str | Path, prompt: Prompt, teacher: str, retry_errors: bool = False) -> set[str]:
    """Ids already answered under this prompt hash and teacher (with ``retry_errors``: those without an error,
    or whose error is an unparseable answer: the teacher did answer those)."""
    table = read_labels(labels_dir)
    mask = pc.and_(pc.equal(table["prompt_hash"], prompt.hash), pc.equal(table["teacher"], teacher))
    table = table.filter(mask)
    if retry_errors:
        table = table.filter(pc.or_kleene(pc.is_null(table["error"]), pc.equal(table["error"], "unparseable")))
    return set(table["id"].to_pylist())


def append_answers(labels_dir: str | Path, prompt: Prompt, teacher: str, ids: list[str], answers: list[Answer]) -> Path:
    """Write one part of answers (never overwrites a part; the next free number)."""
    folder = Path(labels_dir) / LABELS
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob(f"{prompt.name}-*.parquet")))
    table = pa.table(
        {
            "id": ids,
            "prompt": [prompt.name] * len(ids),
            "label": [a.label for a in answers],
            "score": [a.score for a in answers],
            "teacher": [teacher] * len(ids),
            "prompt_hash": [prompt.hash] * len(ids),
            "raw_answer": [a.raw_answer for a in answers],
            "error": [a.error for a in answers],
            "probabilities": [a.probabilities for a in answers],
        },
        schema=LABEL_SCHEMA,
    )
    path = folder / f"{prompt.name}-{number:05d}.parquet"
    write_atomic(table, path)
    return path


def record_labelling(labels_dir: str | Path, entry: dict) -> None:
    """Append an entry to ``labelling.json`` (how the label set was made)."""
    path = Path(labels_dir) / "labelling.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries.append(entry)
    temporary = path.with_name(".labelling.json.tmp")
    temporary.write_text(json.dumps(entries, indent=2) + "\n")
    os.replace(temporary, path)
