"""``refinery label``: sample a run once, then label the sample with a teacher in chunks, resumably."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from refinery.classifiers.labelling import store
from refinery.classifiers.labelling.prompts import Prompt
from refinery.classifiers.labelling.teacher import Teacher
from refinery.classifiers.sampling import MapFunction, parallel_map, sample_run


def needs_sample(labels_dir: str | Path) -> bool:
    """True until the label set's documents have been sampled (the first ``refinery label`` on a folder)."""
    return not (Path(labels_dir) / store.DOCUMENTS).exists()


def ensure_sample(
    run_dir: str | Path,
    labels_dir: str | Path,
    size: int,
    seed: int,
    include_rejected: bool,
    store_chars: int,
    map_function: MapFunction = parallel_map,
) -> pa.Table:
    """The label set's documents: sampled and written on first use, read back afterwards (so every prompt and
    teacher labels the same documents, which the self-agreement ceiling needs). Sampling runs as per-shard tasks
    (``map_function``); texts are clipped inside them, so the driver holds only the clipped sample."""
    labels_dir = Path(labels_dir)
    path = labels_dir / store.DOCUMENTS
    if path.exists():
        return store.read_documents(labels_dir)
    labels_dir.mkdir(parents=True, exist_ok=True)
    sample = sample_run(run_dir, size, seed, include_rejected, store_chars, map_function)
    settings = {
        "run_dir": str(run_dir),
        "size": size,
        "seed": seed,
        "include_rejected": include_rejected,
        "store_chars": store_chars,
    }
    sample = sample.replace_schema_metadata({"refinery.sample": json.dumps(settings, sort_keys=True)})
    store.write_atomic(sample, path)
    return sample


def cache_key(prompt: Prompt, teacher: Teacher, max_tokens: int, store_chars: int | None) -> str:
    """The label cache key: everything that changes the teacher's input or identity (16 hex digits)."""
    data = {
        "prompt_hash": prompt.hash,
        "teacher": teacher.identity(),
        "max_tokens": max_tokens,
        "store_chars": store_chars,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def label_documents(
    documents: pa.Table,
    labels_dir: str | Path,
    prompt: Prompt,
    teacher: Teacher,
    max_tokens: int,
    chunk_size: int = 64,
    limit: int | None = None,
    retry_errors: bool = False,
    split: str = "all",
    same_as: str | None = None,
    progress: Callable[[str], None] | None = None,
    store_chars: int | None = None,
) -> dict:
    """Label every document (the first ``limit``) the cache has no answer for; one Parquet part per chunk.

    ``split`` (``test``/``train``) keeps only the held-out or training documents (see ``dataset``); ``same_as``
    only documents the teacher answered under another prompt (a paraphrase labels what the original labelled).
    ``store_chars`` is what the stored texts were clipped to (the label set records it; it joins the cache key).
    """
    from refinery.classifiers.dataset import is_held_out

    started = time.perf_counter()
    if same_as is not None:
        answered = store.read_labels(labels_dir, prompt=same_as)
        answered = answered.filter(pc.is_valid(answered["label"]))
        documents = documents.filter(pc.is_in(documents["id"], answered["id"]))
    if split != "all":
        held_out = is_held_out(documents["id"].to_pylist())
        documents = documents.filter(pa.array(held_out if split == "test" else ~held_out))
    if limit is not None:
        documents = documents.slice(0, limit)
    key = cache_key(prompt, teacher, max_tokens, store_chars)
    done = store.answered_ids(labels_dir, key, retry_errors)
    ids = documents["id"].to_pylist()
    texts = documents["text"].to_pylist()
    todo = [i for i, doc_id in enumerate(ids) if doc_id not in done]
    labelled = failed = 0
    for start in range(0, len(todo), chunk_size):
        rows = todo[start : start + chunk_size]
        chunk_texts = teacher.truncate([texts[i] or "" for i in rows], max_tokens)
        order = sorted(range(len(rows)), key=lambda k: len(chunk_texts[k]))  # similar lengths share a batch
        answers = teacher.label(prompt, [chunk_texts[k] for k in order])
        by_row = dict(zip(order, answers, strict=True))
        chunk_answers = [by_row[k] for k in range(len(rows))]
        store.append_answers(labels_dir, prompt, teacher.name, [ids[i] for i in rows], chunk_answers, key)
        labelled += len(rows)
        failed += sum(a.error is not None for a in chunk_answers)
        if progress:
            elapsed = time.perf_counter() - started
            progress(f"{prompt.name}: {labelled}/{len(todo)} labelled ({failed} failed), {elapsed:.0f} s")
    return {
        "prompt": prompt.name,
        "prompt_hash": prompt.hash,
        "teacher": teacher.name,
        "documents": len(ids),
        "cached": len(ids) - len(todo),
        "labelled": labelled,
        "failed": failed,
        "max_tokens": max_tokens,
        "store_chars": store_chars,
        "cache_key": key,
        "seconds": round(time.perf_counter() - started, 1),
    }
