"""The task per source file of a manifest: verify it, tokenize it, split it by bucket, write each bucket's part.

One task reads one Parquet shard (a training shard or a held-out set) row group by row group, so its memory is
one batch of documents plus one open file per bucket. It first checks the shard's size and sha256 against the
manifest (the export starts from a verified manifest without a serial pass over the corpus), and checks that
every document tokenizes to the ``n_tokens`` the shard records (the manifest's tokenizer really is the one in
use). For every bucket in the shard it writes, in the shard's document order:

* datatrove: ``SPLIT/BUCKET/part-NNNNN.ds`` (+ ``.ds.index``, ``.ds.metadata``) — the final files;
* Megatron: ``_work/parts/SPLIT/BUCKET/part-NNNNN.bin`` (+ ``.idx``) — merged per bucket afterwards.

Files are written under a temporary name (the spine's ``atomic_output``), hashed while written, renamed into
place, and the completion marker
(``_work/markers/...json``: documents, tokens and every file's size and sha256) is written last. A task whose
marker carries the job's fingerprint and whose files (those still needed) match it returns at once: a killed
export resumes only the shards it had not finished, and a redone shard is byte-identical.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from refinery.pipelines import storage

from .fast_bpe import DocumentEncoder
from .formats import (
    DATATROVE,
    FRAMING,
    datatrove_index_bytes,
    datatrove_metadata,
    megatron_index_bytes,
)
from .location import is_url
from .tokenize import frame_documents

TEXT, BUCKET, N_TOKENS = "text", "bucket", "n_tokens"


class ExportError(ValueError):
    """An export that cannot be made faithfully: a changed shard, another tokenizer, counts that disagree."""


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """A completion marker, or None when it is missing or unreadable (counts as not done)."""
    try:
        fs, inner = storage.filesystem(str(path))
        return storage.read_json(fs, inner)
    except (OSError, ValueError):
        return None


def files_match(output_dir: str, files: dict[str, dict[str, Any]]) -> bool:
    """Every file (relative to ``output_dir``, a local folder or a URL) exists with the recorded size and sha256."""
    fs, root = storage.filesystem(output_dir)
    for relative, record in files.items():
        path = storage.join(root, relative)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return False
        if info.get("type") != "file" or info.get("size") != record["bytes"]:
            return False
        if storage.file_digest(storage.join(output_dir, relative))[1] != record["sha256"]:
            return False
    return True


def source_is_done(job: dict[str, Any]) -> dict[str, Any] | None:
    """The job's marker if it carries the job's fingerprint and every still-needed file matches it."""
    marker = read_marker(job["marker_path"])
    if marker is None or marker.get("fingerprint") != job["fingerprint"]:
        return None
    required = job.get("required")
    for key, output in marker["outputs"].items():
        if (required is None or key in required) and not files_match(job["output_dir"], output["files"]):
            return None
    return marker


class _PartWriter:
    """One bucket's output of one shard: tokens streamed to a temporary file (hashed as written), lengths kept."""

    def __init__(self, output_dir: str, token_path: str) -> None:
        self.output_dir, self.token_path = output_dir, token_path
        self.fs, inner = storage.filesystem(storage.join(output_dir, token_path))
        self.stack = ExitStack()  # the spine's atomic output: renamed into place when the stack closes
        self.handle = self.stack.enter_context(
            self.fs.open(self.stack.enter_context(storage.atomic_output(self.fs, inner)), "wb")
        )
        self.digest = hashlib.sha256()
        self.size = 0
        self.lengths: list[np.ndarray] = []
        self.content_tokens = 0

    def write(self, tokens: np.ndarray, lengths: np.ndarray, content_tokens: int) -> None:
        data = tokens.astype(tokens.dtype.newbyteorder("<"), copy=False).tobytes()
        self.handle.write(data)
        self.digest.update(data)
        self.size += len(data)
        self.lengths.append(lengths)
        self.content_tokens += content_tokens

    def finish(self, side_files: dict[str, bytes]) -> dict[str, Any]:
        """Close, write the index files, rename everything into place; the output's record for the marker."""
        self.stack.close()
        files = {self.token_path: {"bytes": self.size, "sha256": self.digest.hexdigest()}}
        for relative, data in side_files.items():
            fs, inner = storage.filesystem(storage.join(self.output_dir, relative))
            storage.write_bytes_atomic(fs, inner, data)
            files[relative] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return {"files": files}


def _side_files(job: dict[str, Any], token_path: str, lengths: np.ndarray, token_count: int) -> dict[str, bytes]:
    dtype = np.dtype(job["dtype"])
    if job["format"] == DATATROVE:
        return {
            token_path + ".index": datatrove_index_bytes(lengths),
            token_path + ".metadata": datatrove_metadata(job["tokenizer_name"], dtype.itemsize, token_count),
        }
    return {token_path.removesuffix(".bin") + ".idx": megatron_index_bytes(lengths, dtype)}


def export_source(job: dict[str, Any]) -> dict[str, Any]:
    """Tokenize one source file into per-bucket parts (see the module docstring); return its marker."""
    done = source_is_done(job)
    if done is not None:
        return {**done, "skipped": True}
    from refinery.mixes.token_count import cached_tokenizer
    from refinery.pipelines.executor import task_cpus
    from refinery.pipelines.models import tokenizer_file

    path = job["source_path"]  # an absolute local path or a URL
    size, sha = storage.file_digest(path)
    if (size, sha) != (job["bytes"], job["sha256"]):
        raise ExportError(
            f"{job['source']}: {size} bytes, sha256 {sha[:12]}... but the manifest says {job['bytes']} bytes, "
            f"{job['sha256'][:12]}...; run `refinery verify` on the manifest"
        )
    cpus = task_cpus()
    if cpus is not None and cpus <= 1:  # a one-CPU task: the Rust tokenizer must not spread over every core
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    encoder = DocumentEncoder(cached_tokenizer(job["tokenizer"]), tokenizer_file(job["tokenizer"]))
    framing, dtype = FRAMING[job["format"]], np.dtype(job["dtype"])
    writers: dict[str, _PartWriter] = {}
    buckets: dict[str, str] = {}
    documents = content_total = 0
    with ExitStack() as inputs:
        parquet = _open_parquet(path, inputs)
        names = parquet.schema_arrow.names
        columns = [c for c in (TEXT, BUCKET, N_TOKENS) if c in names]
        if TEXT not in names or (BUCKET not in names and job["bucket"] is None):
            raise ExportError(f"{job['source']}: a shard needs the columns text and bucket; it has {names}")
        for batch in parquet.iter_batches(batch_size=job["batch_rows"], columns=columns):
            texts = [text or "" for text in batch.column(TEXT).to_pylist()]
            recorded = None
            if N_TOKENS in batch.schema.names and batch.column(N_TOKENS).null_count == 0:
                recorded = batch.column(N_TOKENS).to_numpy(zero_copy_only=False).astype(np.int64)
            tokenized = frame_documents(encoder.encode(texts, recorded), framing, job["bos_id"], job["eos_id"], dtype)
            if recorded is not None:
                bad = np.flatnonzero(recorded != tokenized.content)
                if bad.size:
                    raise ExportError(
                        f"{job['source']}: row {documents + int(bad[0])} has {int(tokenized.content[bad[0]])} tokens "
                        f"with {job['tokenizer']} but n_tokens says {int(recorded[bad[0]])}: "
                        "not the manifest's tokenizer"
                    )
            has_bucket = BUCKET in batch.schema.names
            labels = batch.column(BUCKET).to_pylist() if has_bucket else [job["bucket"]] * batch.num_rows
            _route(job, writers, buckets, labels, tokenized)
            documents += batch.num_rows
            content_total += int(tokenized.content.sum())
    outputs: dict[str, Any] = {}
    for key, writer in sorted(writers.items()):
        lengths = np.concatenate(writer.lengths)
        token_count = int(lengths.sum())
        record = writer.finish(_side_files(job, writer.token_path, lengths, token_count))
        outputs[key] = {
            "bucket": buckets[key],
            "documents": len(lengths),
            "tokens": token_count,
            "content_tokens": writer.content_tokens,
            "token_file": writer.token_path,
            **record,
        }
    if (documents, content_total) != (job["rows"], job["tokens"]):
        raise ExportError(
            f"{job['source']}: {documents} documents / {content_total} tokens read, "
            f"the manifest says {job['rows']} / {job['tokens']}"
        )
    marker = {
        "fingerprint": job["fingerprint"],
        "source": job["source"],
        "sha256": job["sha256"],
        "documents": documents,
        "content_tokens": content_total,
        "outputs": outputs,
        "reencoded": encoder.reencoded,  # documents the fast path handed to the reference tokenizer
    }
    storage.write_json_file(job["marker_path"], marker)
    return {**marker, "skipped": False}


def _open_parquet(path: str, stack: ExitStack) -> pq.ParquetFile:
    """The shard as a ``ParquetFile``: a local path is opened by Arrow itself (as before); a URL through fsspec
    (row groups are read with range requests on an object store), closed with ``stack``."""
    if not is_url(path):
        return pq.ParquetFile(path)
    fs, inner = storage.filesystem(path)
    return pq.ParquetFile(stack.enter_context(fs.open(inner, "rb")))


def _route(
    job: dict[str, Any],
    writers: dict[str, _PartWriter],
    buckets: dict[str, str],
    labels: list[str | None],
    tokenized: Any,
) -> None:
    """Append each bucket's documents of this batch (in order) to that bucket's part."""
    from refinery.mixes.buckets import bucket_file_name

    if any(label is None for label in labels):
        raise ExportError(f"{job['source']}: a document has no bucket")
    names, codes = np.unique(np.asarray(labels, dtype=object), return_inverse=True)
    # one stable sort groups the batch's documents (and their tokens) by bucket, keeping their order
    document_order = np.argsort(codes, kind="stable")
    token_order = np.argsort(np.repeat(codes, tokenized.lengths), kind="stable")
    document_ends = np.cumsum(np.bincount(codes, minlength=len(names)))
    token_ends = np.cumsum(np.bincount(codes, weights=tokenized.lengths, minlength=len(names)).astype(np.int64))
    tokens, lengths = tokenized.tokens[token_order], tokenized.lengths[document_order]
    content = tokenized.content[document_order]
    for code, name in enumerate(names):
        key = f"{job['split']}/{bucket_file_name(name)}"
        if key not in writers:
            suffix = ".ds" if job["format"] == DATATROVE else ".bin"
            folder = key if job["format"] == DATATROVE else f"_work/parts/{key}"
            writers[key] = _PartWriter(job["output_dir"], f"{folder}/{job['part']}{suffix}")
            buckets[key] = name
        documents = slice(document_ends[code - 1] if code else 0, document_ends[code])
        span = slice(token_ends[code - 1] if code else 0, token_ends[code])
        writers[key].write(tokens[span], lengths[documents], int(content[documents].sum()))
