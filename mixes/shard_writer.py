"""Phases 2 and 3 of a mix: route every selected (document, epoch) to an output unit, then assemble each unit.

Units are the training shards ``0 .. S-1`` and one held-out set per bucket (``S + i``). Routing (a Ray task
per input shard) reads only that shard's index and writes ``_work/routing/NNNNN.parquet``: ``unit``, ``row``,
``epoch``, ``order``, ``n_tokens``, ``bucket``, sorted by unit so a unit's rows are a few row groups. Both the
unit and the position inside it come from seeded 64-bit mixes of the document's sample key and epoch, so the
concatenated shards are one uniform shuffle of the whole mix across buckets, decided without any process
seeing more than one shard's index.

Assembly (a Ray task per unit) reads, from each input shard, the routing rows of its unit and only the row
groups of the input that hold them, repeats rows for their epochs, adds ``bucket``, ``n_tokens`` and
``epoch``, sorts by ``order`` and writes zstd Parquet under a temporary name, renames it into place and writes
a completion marker (rows, tokens, bytes, sha256) last. A unit whose marker carries the plan's fingerprint and
whose file still has the marker's size and sha256 is not written again: a rerun redoes only missing or
corrupt shards, and since nothing depends on timing or placement the redone shard is byte-identical.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.partitions import splitmix64

from .buckets import BUCKET, EPOCH, below, file_sha256, read_index
from .token_count import N_TOKENS, N_TOKENS_TYPE

ROUTING_SCHEMA = pa.schema(
    [
        pa.field("unit", pa.int32()),
        pa.field("row", pa.int64()),
        pa.field(EPOCH, pa.int32()),
        pa.field("order", pa.uint64()),
        pa.field(N_TOKENS, pa.int64()),
        pa.field(BUCKET, pa.string()),
    ]
)
ROUTING_GROUP_ROWS = 65_536
UNIT_SALT = np.uint64(0x9E3779B97F4A7C15)
ORDER_SALT = np.uint64(0xD1B54A32D192ED03)


def _next(values: np.ndarray) -> np.ndarray:
    """One SplitMix64 step: the golden-ratio increment, then the shared finaliser."""
    with np.errstate(over="ignore"):
        return splitmix64(values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))


def _mix(sample_keys: np.ndarray, epochs: np.ndarray, salt: np.uint64) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _next(_next(sample_keys ^ salt) + epochs.astype(np.uint64))


def output_schema(input_schema: pa.Schema) -> pa.Schema:
    """The run's kept columns plus ``bucket``, ``n_tokens`` (unless the run has it) and ``epoch``."""
    schema = input_schema.remove_metadata()
    for name, kind in ((BUCKET, pa.string()), (N_TOKENS, N_TOKENS_TYPE), (EPOCH, pa.int32())):
        if name not in schema.names:
            schema = schema.append(pa.field(name, kind))
    return schema


def route_shard(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 2 for one input shard: write its routing file (unless its marker is current); return row counts.

    ``job``: ``index_path``, ``routing_path``, ``marker_path``, ``fingerprint``, ``num_shards``, and
    ``buckets``: per bucket in the mix ``{unit, whole_epochs, sample_cutoff, heldout_cutoff}``.
    """
    fs, marker = storage.filesystem(job["marker_path"])
    if fs.exists(marker):
        try:
            done = storage.read_json(fs, marker)
        except ValueError:
            done = {}
        if done.get("fingerprint") == job["fingerprint"] and fs.exists(storage.filesystem(job["routing_path"])[1]):
            return done["summary"]
    index = read_index(job["index_path"])
    labels = index.column(BUCKET).to_numpy(zero_copy_only=False)
    rows = index.column("row").to_numpy()
    tokens = index.column(N_TOKENS).to_numpy()
    heldout_keys = index.column("heldout_key").to_numpy()
    sample_keys = index.column("sample_key").to_numpy()
    parts: list[tuple[np.ndarray, ...]] = []  # (unit, row, epoch, order source key, tokens, bucket-position)
    names = sorted(job["buckets"])
    for position, name in enumerate(names):
        plan = job["buckets"][name]
        in_bucket = labels == name
        held = in_bucket & below(heldout_keys, plan["heldout_cutoff"])
        train = in_bucket & ~held
        if held.any():
            count = int(held.sum())
            parts.append(
                (
                    np.full(count, plan["unit"], np.int64),
                    rows[held],
                    np.zeros(count, np.int64),
                    heldout_keys[held],  # held-out order: independent of --seed
                    tokens[held],
                    np.full(count, position),
                )
            )
        for epoch in range(plan["whole_epochs"] + 1):
            chosen = train if epoch < plan["whole_epochs"] else train & below(sample_keys, plan["sample_cutoff"])
            count = int(chosen.sum())
            if count:
                epochs = np.full(count, epoch, np.int64)
                units = (_mix(sample_keys[chosen], epochs, UNIT_SALT) % np.uint64(job["num_shards"])).astype(np.int64)
                parts.append(
                    (units, rows[chosen], epochs, sample_keys[chosen], tokens[chosen], np.full(count, position))
                )
    if parts:
        unit, row, epoch, keys, n_tokens, bucket_position = (np.concatenate(p) for p in zip(*parts, strict=True))
    else:
        unit = row = epoch = keys = n_tokens = bucket_position = np.zeros(0, np.int64)
        keys = keys.astype(np.uint64)
    order = np.lexsort((epoch, row, unit))
    routing = pa.Table.from_arrays(
        [
            pa.array(unit[order], pa.int32()),
            pa.array(row[order], pa.int64()),
            pa.array(epoch[order], pa.int32()),
            pa.array(_mix(keys[order], epoch[order], ORDER_SALT), pa.uint64()),
            pa.array(n_tokens[order], pa.int64()),
            pa.array(np.asarray(names, dtype=object)[bucket_position[order]] if len(order) else [], pa.string()),
        ],
        schema=ROUTING_SCHEMA,
    )
    out_fs, inner = storage.filesystem(job["routing_path"])
    sink = storage.ParquetSink(out_fs, inner, ROUTING_SCHEMA)
    for start in range(0, routing.num_rows, ROUTING_GROUP_ROWS):
        sink.write(routing.slice(start, ROUTING_GROUP_ROWS))
    sink.commit()
    units, counts = np.unique(unit, return_counts=True)
    summary = {"rows": int(routing.num_rows), "units": {int(u): int(c) for u, c in zip(units, counts, strict=True)}}
    storage.write_json_atomic(fs, marker, {"fingerprint": job["fingerprint"], "summary": summary})
    return summary


def unit_is_done(marker_path: str, output_path: str, fingerprint: str) -> dict[str, Any] | None:
    """The marker of a finished unit whose file is still intact (size and sha256), else None."""
    fs, marker = storage.filesystem(marker_path)
    if not fs.exists(marker):
        return None
    try:
        done = storage.read_json(fs, marker)
    except ValueError:
        return None
    if done.get("fingerprint") != fingerprint or not fs.exists(storage.filesystem(output_path)[1]):
        return None
    if file_sha256(output_path) != (done.get("bytes"), done.get("sha256")):
        return None
    return done


def _read_rows(path: str, rows: np.ndarray) -> pa.Table:
    """The given (sorted, unique) row positions of a Parquet file, reading only the row groups that hold them."""
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        sizes = np.array([parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)], np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        group_of = np.searchsorted(starts, rows, side="right") - 1
        groups = np.unique(group_of)
        table = parquet.read_row_groups(groups.tolist())
    offsets = np.concatenate([[0], np.cumsum(sizes[groups])])
    local = offsets[np.searchsorted(groups, group_of)] + rows - starts[group_of]
    return table.take(pa.array(local, pa.int64()))


def assemble_unit(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 3 for one unit: write its Parquet file from the input shards and its marker; return the marker.

    ``job``: ``unit``, ``inputs`` (list of ``[input_path, routing_path]``), ``output_path``, ``marker_path``,
    ``path`` (relative, for the manifest), ``fingerprint``, ``schema`` (serialised output schema),
    ``row_group_rows``.
    """
    done = unit_is_done(job["marker_path"], job["output_path"], job["fingerprint"])
    if done is not None:
        return done
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    pieces = []
    orders = []
    for input_path, routing_path in job["inputs"]:
        routing_fs, routing_inner = storage.filesystem(routing_path)
        with routing_fs.open(routing_inner, "rb") as handle:
            routing = pq.read_table(handle, filters=[("unit", "=", job["unit"])])
        if not routing.num_rows:
            continue
        wanted = routing.column("row").to_numpy()
        unique_rows = np.unique(wanted)
        documents = _read_rows(input_path, unique_rows)
        expanded = documents.take(pa.array(np.searchsorted(unique_rows, wanted), pa.int64()))
        for name in (BUCKET, N_TOKENS, EPOCH):
            column = routing.column(name).cast(schema.field(name).type)
            if name in expanded.column_names:
                expanded = expanded.set_column(expanded.column_names.index(name), name, column)
            else:
                expanded = expanded.append_column(name, column)
        pieces.append(expanded.select(schema.names).cast(schema))
        orders.append(routing.column("order").to_numpy())
    table = pa.concat_tables(pieces) if pieces else schema.empty_table()
    if pieces:
        table = table.take(pa.array(np.argsort(np.concatenate(orders), kind="stable"), pa.int64()))
    fs, inner = storage.filesystem(job["output_path"])
    sink = storage.ParquetSink(fs, inner, schema)
    for start in range(0, table.num_rows, job["row_group_rows"]):
        sink.write(table.slice(start, job["row_group_rows"]))
    sink.commit()
    size, sha = file_sha256(job["output_path"])
    tokens = int(pc.sum(table.column(N_TOKENS)).as_py() or 0) if table.num_rows else 0
    marker = {
        "fingerprint": job["fingerprint"],
        "path": job["path"],
        "rows": table.num_rows,
        "tokens": tokens,
        "bytes": size,
        "sha256": sha,
    }
    marker_fs, marker_inner = storage.filesystem(job["marker_path"])
    storage.write_json_atomic(marker_fs, marker_inner, marker)
    return marker


def unit_paths(output_dir: str, relative: str) -> tuple[str, str]:
    """(file, marker) of a unit: markers live under ``_work/done/`` with the file's relative path."""
    return storage.join(output_dir, relative), storage.join(output_dir, "_work", "done", relative + ".json")


def relative_shard_path(unit: int) -> str:
    return posixpath.join("shards", f"part-{unit:05d}.parquet")
