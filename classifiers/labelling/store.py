"""A label set on disk: the sampled documents once, and labels as append-only Parquet parts.

```
LABELS_DIR/documents.parquet         id, text (clipped), source, lang, origin: the sample, fixed at the first run
LABELS_DIR/labels/PROMPT-NNNNN.parquet  id, prompt, label, score, teacher, prompt_hash, raw_answer, error,
                                     probabilities: one part per labelled chunk, written atomically
LABELS_DIR/labelling.json            the commands that labelled it (prompt, teacher, counts, seconds)
```

Every answer is cached under (id, cache key): the key (``run.cache_key``) covers everything that changes what
the teacher is shown or who the teacher is (the prompt's hash, the teacher's identity: a local model's sha256, a
server's URL and model, the tokenizer that cuts documents, ``--max-tokens``, the stored characters per document).
A resumed or repeated ``refinery label`` reads the parts and asks the teacher only about documents it has no
answer for under that key, so a killed labelling loses at most one chunk. Parts written before the key existed
have none and are never reused as answers (they are still read as labels).

No part is ever overwritten: a part is written to a private temporary file and then hard-linked to its final
name, which fails if that name exists (an exclusive create of the complete file); the number tried first is one
above the highest present (not the count, which a deleted part would lower), and on a collision the next one is
tried. Two ``refinery label`` processes on one folder therefore both land every label they wrote (they may ask
the teacher about the same documents; the later answer wins when read). ``labelling.json`` is appended under an
advisory file lock for the same reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
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
        pa.field("cache_key", pa.string()),
    ]
)
PARQUET = {"compression": "zstd", "compression_level": 9}


def write_atomic(table: pa.Table, path: Path) -> None:
    fs, inner = storage.filesystem(str(path))
    with storage.atomic_output(fs, inner) as temporary:
        pq.write_table(table, temporary, **PARQUET)


def read_documents(labels_dir: str | Path) -> pa.Table:
    return pq.read_table(Path(labels_dir) / DOCUMENTS)


def sample_settings(labels_dir: str | Path) -> dict:
    """How the documents were sampled (run, size, seed, ``store_chars``...); empty for sets from before."""
    metadata = pq.read_schema(Path(labels_dir) / DOCUMENTS).metadata or {}
    return json.loads(metadata.get(b"refinery.sample", b"{}"))


def read_parts(labels_dir: str | Path) -> pa.Table:
    """Every row of every part, in the order the parts were written (older parts lack ``cache_key``: null)."""
    folder = Path(labels_dir) / LABELS
    files = sorted(folder.glob("*.parquet"), key=part_order) if folder.is_dir() else []
    if not files:
        return LABEL_SCHEMA.empty_table()
    return ds.dataset([str(f) for f in files], schema=LABEL_SCHEMA, format="parquet").to_table()


def read_labels(labels_dir: str | Path, prompt: str | None = None, teacher: str | None = None) -> pa.Table:
    """Every answer (the last one per id, prompt hash and teacher), optionally of one prompt name / teacher."""
    table = read_parts(labels_dir)
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


def part_number(path: Path) -> int:
    """The number of a part ``PROMPT-NNNNN.parquet`` (-1 for a name that is not a part)."""
    digits = path.stem.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else -1


def part_order(path: Path) -> tuple[int, str]:
    """Parts in the order they were written (a later answer for the same key wins)."""
    return part_number(path), path.name


def write_exclusive(table: pa.Table, folder: Path, prefix: str) -> Path:
    """Write ``table`` as ``folder/PREFIX-NNNNN.parquet`` under a number no part holds; never replaces a file."""
    temporary = folder / f".{prefix}-{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary, **PARQUET)
    try:
        number = 1 + max((part_number(p) for p in folder.glob(f"{prefix}-*.parquet")), default=-1)
        while True:
            path = folder / f"{prefix}-{number:05d}.parquet"
            try:
                os.link(temporary, path)  # atomic, and fails when the name exists: an exclusive create
                return path
            except FileExistsError:
                number += 1
    finally:
        temporary.unlink(missing_ok=True)


def answered_ids(labels_dir: str | Path, cache_key: str, retry_errors: bool = False) -> set[str]:
    """Ids already answered under this cache key (with ``retry_errors``: those without an error, or whose error
    is an unparseable answer: the teacher did answer those). Every part counts, not only the latest answer per
    id: answers under other keys (another ``--max-tokens``, say) never hide this key's."""
    table = read_parts(labels_dir)
    table = table.filter(pc.equal(table["cache_key"], cache_key))
    if retry_errors:
        table = table.filter(pc.or_kleene(pc.is_null(table["error"]), pc.equal(table["error"], "unparseable")))
    return set(table["id"].to_pylist())


def append_answers(
    labels_dir: str | Path,
    prompt: Prompt,
    teacher: str,
    ids: list[str],
    answers: list[Answer],
    cache_key: str | None = None,
) -> Path:
    """Write one part of answers under a number no part holds (created exclusively; never overwrites)."""
    folder = Path(labels_dir) / LABELS
    folder.mkdir(parents=True, exist_ok=True)
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
            "cache_key": [cache_key] * len(ids),
        },
        schema=LABEL_SCHEMA,
    )
    return write_exclusive(table, folder, prompt.name)


def record_labelling(labels_dir: str | Path, entry: dict) -> None:
    """Append an entry to ``labelling.json`` (how the label set was made), under a lock so no entry is lost."""
    path = Path(labels_dir) / "labelling.json"
    with open(Path(labels_dir) / ".labelling.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = json.loads(path.read_text()) if path.exists() else []
        entries.append(entry)
        temporary = path.with_name(f".labelling.json.{uuid.uuid4().hex}.tmp")
        temporary.write_text(json.dumps(entries, indent=2) + "\n")
        os.replace(temporary, path)
