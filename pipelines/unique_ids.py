"""Document ids are unique within a run: the check for inputs whose ids come from a field of the data.

Ids the readers make (``SOURCE/<digest of file and position>``) are unique by construction, and an id always
starts with its input's name (names hold no ``/``), so two inputs can never share an id. An input with an
``id_field`` takes its ids from the data, and nothing stops the data from repeating one, within a file or across
two files. Decisions are applied per shard (see :mod:`refinery.dedup.decisions`), but a decision list is still
keyed by id inside its shard, a repeated id makes "keep the lowest id" ambiguous, and a trainer's held-out split
is drawn by id: so a repeated id is an **error** that names the id and the files holding it, raised after the
first segment (ingest) and before any later stage runs. Disambiguating silently would make one id name two
different documents in the run's outputs depending on where they were read, which no user asked for.

The check is a shuffle (:mod:`refinery.pipelines.partitions`): one task per shard writes its ids partitioned
by hash, one task per partition looks for a repeat. Memory per task is one shard or one partition. Its result
is recorded (``RUN/ids/_checked.json``, keyed by the first segment's kept files), so a resumed run does not
check again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from refinery.pipelines import storage
from refinery.pipelines.documents import ID
from refinery.pipelines.executor import map_tasks
from refinery.pipelines.partitions import partition_of, read_partition, write_partitioned

#: How many repeated ids an error lists (the first ones by id).
SHOWN = 5


class DuplicateIdError(ValueError):
    """Two documents of a run share an id (from an input's ``id_field``)."""


def _hash64(strings: pa.Array) -> np.ndarray:
    encoded = pc.dictionary_encode(strings)
    distinct = np.fromiter(
        (xxhash.xxh3_64_intdigest(s) for s in encoded.dictionary.to_pylist()),
        dtype=np.uint64,
        count=len(encoded.dictionary),
    )
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)]


def write_shard_ids(job: dict[str, Any]) -> int:
    """Map side: the ids of one shard's documents (kept and rejected by ingest), partitioned by their hash."""
    parts = []
    for path in job["files"]:
        fs, inner = storage.filesystem(path)
        if fs.exists(inner):
            with fs.open(inner, "rb") as handle:
                parts.append(pq.read_table(handle, columns=[ID]).column(ID).combine_chunks().cast(pa.string()))
    ids = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
    ids = ids.filter(pc.is_valid(ids))
    table = pa.table({ID: ids, "file": pa.array([job["file"]] * len(ids), pa.string())})
    write_partitioned(
        job["directory"], job["writer"], table, partition_of(_hash64(ids), job["partitions"]), job["partitions"]
    )
    return len(ids)


def repeated_ids(job: dict[str, Any]) -> list[list[Any]]:
    """Reduce side: ``[id, [files...]]`` for every id that occurs more than once in one partition."""
    table = read_partition(job["directory"], job["partition"], job["writers"])
    if table is None:
        return []
    counts = table.group_by(ID).aggregate([("file", "list")])
    repeated = counts.filter(pc.greater(pc.list_value_length(counts["file_list"]), 1))
    return sorted([row[ID], row["file_list"]] for row in repeated.to_pylist())


def check_unique_ids(
    run_dir: str, shards: list[dict[str, str]], kept_sha256: dict[str, str], retries: int, in_flight: int
) -> None:
    """Raise :class:`DuplicateIdError` if two documents of these shards share an id.

    ``shards``: per shard of an input with an ``id_field``, its ``name``, its input ``file`` and the ``files``
    (ingest's kept and rejected outputs) holding its documents' ids.
    """
    if not shards:
        return
    fs, root = storage.filesystem(run_dir)
    directory = storage.join(run_dir.rstrip("/"), "ids")
    stamp = storage.join(root, "ids", "_checked.json")
    key = hashlib.sha256(
        json.dumps({s["name"]: kept_sha256.get(s["name"]) for s in shards}, sort_keys=True).encode()
    ).hexdigest()
    if fs.exists(stamp) and storage.read_json(fs, stamp).get("inputs") == key:
        return
    if fs.exists(storage.join(root, "ids")):
        fs.rm(storage.join(root, "ids"), recursive=True)
    partitions = max(1, len(shards))
    writers = [s["name"] for s in shards]
    map_tasks(
        write_shard_ids,
        [
            {
                "directory": directory,
                "writer": s["name"],
                "file": s["file"],
                "files": s["files"],
                "partitions": partitions,
            }
            for s in shards
        ],
        retries=retries,
        in_flight=in_flight,
    )
    found = map_tasks(
        repeated_ids,
        [{"directory": directory, "partition": p, "writers": writers} for p in range(partitions)],
        retries=retries,
        in_flight=in_flight,
    )
    repeats = sorted(r for part in found for r in part)
    if repeats:
        lines = [
            f"  id {doc_id!r} in {', '.join(sorted(set(files)))} ({len(files)} times)"
            for doc_id, files in repeats[:SHOWN]
        ]
        more = f"\n  ... and {len(repeats) - SHOWN} more" if len(repeats) > SHOWN else ""
        raise DuplicateIdError(
            f"{len(repeats)} document id(s) occur more than once in this run (ids come from an input's id_field and "
            "must be unique within it; fix the data or drop id_field to let Refinery make ids):\n"
            + "\n".join(lines)
            + more
        )
    storage.write_json_atomic(fs, stamp, {"inputs": key, "shards": len(shards)})
    for path in fs.ls(storage.join(root, "ids"), detail=False):
        if not path.endswith("_checked.json"):
            fs.rm(path, recursive=True)
