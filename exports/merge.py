"""Megatron: one ``.bin``/``.idx`` per bucket, concatenated from the shards' parts (a task per bucket).

Megatron-LM's ``--data-path`` samples datasets by weight, so one dataset per bucket makes the blend carry the mix's
bucket weights. The parts of a bucket are concatenated in source-shard order (the manifest's order, so the result
does not depend on which task finished first): the ``.bin`` by a streaming copy that checks every part against
the sha256 its shard's marker recorded, the ``.idx`` rebuilt from the parts' sequence lengths with pointers over
the whole file. Written under temporary names, renamed, then the marker; a bucket whose marker carries the
dataset's fingerprint and whose files match is not merged again.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from refinery.pipelines import storage

from .formats import megatron_index_bytes, read_megatron_index
from .shard_task import ExportError, files_match, read_marker

COPY_BLOCK = 8 << 20


def dataset_is_done(job: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's marker if it carries the job's fingerprint and its files match it."""
    marker = read_marker(job["marker_path"])
    if marker is None or marker.get("fingerprint") != job["fingerprint"]:
        return None
    return marker if files_match(job["output_dir"], marker["files"]) else None


def merge_dataset(job: dict[str, Any]) -> dict[str, Any]:
    """Concatenate a bucket's parts into ``PREFIX.bin`` / ``PREFIX.idx``; return the dataset's marker."""
    done = dataset_is_done(job)
    if done is not None:
        return done
    fs, root = storage.filesystem(job["output_dir"])  # a local folder or a URL: parts and dataset on one store
    dtype = np.dtype(job["dtype"])
    bin_inner, idx_inner = storage.join(root, job["prefix"] + ".bin"), storage.join(root, job["prefix"] + ".idx")
    digest, size, lengths = hashlib.sha256(), 0, []
    with storage.atomic_output(fs, bin_inner) as temporary, fs.open(temporary, "wb") as out:
        for part in job["parts"]:
            part_digest = hashlib.sha256()
            with fs.open(storage.join(root, part["bin"]), "rb") as handle:
                for block in iter(lambda handle=handle: handle.read(COPY_BLOCK), b""):
                    part_digest.update(block)
                    digest.update(block)
                    out.write(block)
                    size += len(block)
            if part_digest.hexdigest() != part["sha256"]:
                raise ExportError(f"{part['bin']}: changed since its shard was tokenized; rerun the export")
            part_dtype, part_lengths = read_megatron_index(storage.join(job["output_dir"], part["idx"]))
            if part_dtype != dtype:
                raise ExportError(f"{part['idx']}: {part_dtype} tokens, the export writes {dtype}")
            lengths.append(part_lengths)
    all_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    if size != int(all_lengths.sum()) * dtype.itemsize:
        raise ExportError(f"{job['prefix']}: the parts' .bin bytes disagree with their .idx lengths")
    index = megatron_index_bytes(all_lengths, dtype)
    storage.write_bytes_atomic(fs, idx_inner, index)
    marker = {
        "fingerprint": job["fingerprint"],
        "documents": len(all_lengths),
        "tokens": int(all_lengths.sum()),
        "files": {
            job["prefix"] + ".bin": {"bytes": size, "sha256": digest.hexdigest()},
            job["prefix"] + ".idx": {"bytes": len(index), "sha256": hashlib.sha256(index).hexdigest()},
        },
    }
    storage.write_json_file(job["marker_path"], marker)
    return marker
