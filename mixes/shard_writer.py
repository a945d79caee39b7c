"""Phases 3 and 4 of a mix: route every selected (document, epoch) to an output unit in one pass, then assemble.

Units are the training shards ``0 .. S-1`` and one held-out set per bucket (``S + i``). Units are grouped into
partitions (consecutive training shards share one; every held-out set lies in one more), the number of
partitions chosen from the output's size, never from the shard count alone.

**Scatter** (a task per input shard, :func:`scatter_shard`): read the shard's index, decide for every selected
(document, epoch) its unit and its position inside it (seeded 64-bit mixes of the document's sample key and
epoch), read the input file once — only the row groups holding a selected row — repeat rows for their epochs,
order them by (unit, position) and write them split by partition, a record batch per *block* of about
``BLOCK_BYTES`` of output (:mod:`refinery.mixes.scatter_files`: ``_work/partitions/part-PPPPP/NNNNN.arrows``,
an Arrow IPC stream whose trailer lists each block's bytes and sha256; the trailer's sha256 in the writer's
record).

**Assemble** (a task per partition, :func:`assemble_partition`): block after block, read the block's batch
from every scatter file of the partition (each checked before use), sort those rows by (unit, position) and
stream them into the units' files (:mod:`refinery.mixes.unit_file`: a row group per ``row_group_rows`` rows, the
sha256 taken from the bytes as written, a temporary name renamed when complete). A task holds one block, never
its partition nor a whole unit (at 1 output shard, a unit is the whole mix). Nothing else is per unit: folders
are created once per task, and one completion marker per partition (``_work/done/part-PPPPP.json``: every
unit's rows, tokens, bytes and sha256) is rewritten after every ``CHECKPOINT_BYTES`` of new units and at the end.

So every input byte is read at most twice whatever the number of output shards (the index reads a few columns,
the scatter reads the rows once) and every partition file once, and an output shard costs one file written and
one rename: the cost per MB does not grow with the shard count beyond one small Parquet file's set-up. The
concatenated shards are one uniform shuffle of the whole mix across buckets, and since no decision depends on
timing, placement or the partition count, the same plan always gives the same bytes.

Resume: a unit that a partition marker of this plan records, and whose file still has the recorded size and row
count (its Parquet footer, checked by :func:`check_units`, a task per partition), is not written again; a
partition whose units are all done is not read; a killed assembly redoes at most the units since its last
checkpoint. Digests are computed once, while writing, and trusted through the markers: ``refinery verify`` is the
full check.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.partitions import splitmix64

from .buckets import BUCKET, EPOCH
from .scatter_files import ScatterFile, block_runs, write_scatter_files
from .shard_index import below, read_index
from .token_count import N_TOKENS, N_TOKENS_TYPE
from .unit_file import UnitFile

UNIT = "_unit"  # scatter-file columns only: never in an output shard
ORDER = "_order"
UNIT_SALT = np.uint64(0x9E3779B97F4A7C15)
ORDER_SALT = np.uint64(0xD1B54A32D192ED03)
#: Target estimated output bytes per partition: one assembly task's work (it holds one block of it at a time).
PARTITION_BYTES = 256_000_000
#: Target estimated output bytes per block: an assembly task holds one block's rows at a time (see
#: :mod:`refinery.mixes.scatter_files`), whatever the size of its partition or of one output shard.
BLOCK_BYTES = 8_000_000


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


def partition_count(num_shards: int, estimated_bytes: float, parallelism: int) -> int:
    """Partitions of the training shards: one per ``PARTITION_BYTES`` of output, at least ``parallelism``.

    Never more than the shard count, and independent of it otherwise: a thousand small shards share a few
    partitions, so the number of scatter files (inputs x partitions) stays bounded by the output's size.
    """
    by_size = int(np.ceil(estimated_bytes / PARTITION_BYTES))
    return max(1, min(num_shards, max(by_size, parallelism)))


def unit_partitions(num_shards: int, num_partitions: int, heldout_units: int) -> np.ndarray:
    """The partition of every unit: consecutive training shards share one; the held-out sets are the last."""
    training = (np.arange(num_shards, dtype=np.int64) * num_partitions) // num_shards
    return np.concatenate([training, np.full(heldout_units, num_partitions, np.int64)])


def block_of(units: np.ndarray, positions: np.ndarray, unit_bytes: np.ndarray, block_bytes: float) -> np.ndarray:
    """The block of every row: its place on a line of estimated output bytes, cut every ``block_bytes``.

    Unit ``u`` spans ``[start_u, start_u + unit_bytes[u])`` of the line (units in order) and a row lies at its
    position's fraction of that span (positions are uniform 64-bit hashes), so a block holds about
    ``block_bytes`` of output: several small units or a slice of a large one. Non-decreasing in (unit,
    position) — float rounding is monotone and ``start_{u+1}`` is the very sum ``start_u + unit_bytes[u]`` — so
    blocks in order, each sorted, are the partition in order.
    """
    starts = np.concatenate([[0.0], np.cumsum(unit_bytes)])  # sequential sums
    place = starts[units] + unit_bytes[units] * (positions.astype(np.float64) * 2.0**-64)
    return np.floor(place / block_bytes).astype(np.int64)


def routing_table(job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every selected (document, epoch) of one input shard: unit, row, epoch, order, tokens, bucket position.

    Sorted by (unit, row, epoch). ``job``: ``index_path``, ``num_shards`` and ``buckets`` (per bucket in the mix
    ``{unit, whole_epochs, sample_cutoff, heldout_cutoff}``).
    """
    index = read_index(job["index_path"])
    labels = index.column(BUCKET).to_numpy(zero_copy_only=False)
    rows = index.column("row").to_numpy()
    tokens = index.column(N_TOKENS).to_numpy()
    heldout_keys = index.column("heldout_key").to_numpy()
    sample_keys = index.column("sample_key").to_numpy()
    parts: list[tuple[np.ndarray, ...]] = []  # (unit, row, epoch, order source key, tokens, bucket position)
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
        unit = row = epoch = n_tokens = bucket_position = np.zeros(0, np.int64)
        keys = np.zeros(0, np.uint64)
    order = np.lexsort((epoch, row, unit))
    return {
        "unit": unit[order],
        "row": row[order],
        "epoch": epoch[order],
        "order": _mix(keys[order], epoch[order], ORDER_SALT),
        "n_tokens": n_tokens[order],
        "bucket": np.asarray(names, dtype=object)[bucket_position[order]] if len(order) else np.zeros(0, object),
    }


def read_rows(path: str, rows: np.ndarray) -> tuple[pa.Table, int]:
    """The given (sorted, unique) row positions of a Parquet file and the compressed bytes read for them.

    Only the row groups holding a wanted row are read, each once.
    """
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        metadata = parquet.metadata
        sizes = np.array([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)], np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        group_of = np.searchsorted(starts, rows, side="right") - 1
        groups = np.unique(group_of)
        table = parquet.read_row_groups(groups.tolist()) if len(groups) else parquet.schema_arrow.empty_table()
        read_bytes = sum(
            metadata.row_group(g).column(c).total_compressed_size
            for g in groups.tolist()
            for c in range(metadata.num_columns)
        )
    offsets = np.concatenate([[0], np.cumsum(sizes[groups])])
    local = offsets[np.searchsorted(groups, group_of)] + rows - starts[group_of]
    return table.take(pa.array(local, pa.int64())), int(read_bytes)


def scatter_shard(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 3 for one input shard: its selected rows, once each epoch, written into their partitions.

    ``job``: ``input_path``, ``index_path``, ``writer`` (the file name inside every partition), ``directory``
    (the partitions' folder), ``marker_path``, ``fingerprint``, ``num_shards``, ``buckets`` (as
    :func:`routing_table`), ``unit_partitions`` (list: partition of every unit), ``unit_bytes`` (list: estimated
    output bytes of every unit) and ``block_bytes`` (see :func:`block_of`), ``schema`` (serialised output
    schema). Each partition's file holds its rows in (unit, position) order, a record batch per block. Returns
    ``{"rows", "files": {partition: record}, "input_bytes_read"}``; the marker holds the same.
    """
    fs, marker = storage.filesystem(job["marker_path"])
    done = storage.read_marker(job["marker_path"], job["fingerprint"])
    if done is not None:
        return done["summary"] | {"input_bytes_read": 0}
    routing = routing_table(job)
    # scatter-file order: (unit, position), stable (ties keep routing order); partitions and blocks follow it
    order = np.lexsort((routing["order"], routing["unit"]))
    routing = {name: values[order] for name, values in routing.items()}
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    unique_rows, inverse = np.unique(routing["row"], return_inverse=True)
    documents, read_bytes = read_rows(job["input_path"], unique_rows)
    expanded = documents.take(pa.array(inverse.astype(np.int64), pa.int64()))
    added = {
        BUCKET: pa.array(routing["bucket"], pa.string()),
        N_TOKENS: pa.array(routing["n_tokens"], pa.int64()),
        EPOCH: pa.array(routing["epoch"], pa.int32()),
    }
    for name, column in added.items():
        column = column.cast(schema.field(name).type)
        if name in expanded.column_names:
            expanded = expanded.set_column(expanded.column_names.index(name), name, column)
        else:
            expanded = expanded.append_column(name, column)
    table = expanded.select(schema.names).cast(schema)
    table = table.append_column(UNIT, pa.array(routing["unit"], pa.int32()))
    table = table.append_column(ORDER, pa.array(routing["order"], pa.uint64()))
    partitions = np.asarray(job["unit_partitions"], np.int64)[routing["unit"]]
    unit_bytes = np.asarray(job["unit_bytes"], np.float64)
    blocks = block_of(routing["unit"], routing["order"], unit_bytes, job["block_bytes"])
    files = write_scatter_files(job["directory"], job["writer"], table, partitions, blocks)
    summary = {"rows": table.num_rows, "files": files}
    storage.write_json_atomic(fs, marker, {"fingerprint": job["fingerprint"], "summary": summary})
    return summary | {"input_bytes_read": read_bytes}


def partition_marker_path(output_dir: str, partition: int) -> str:
    """The completion marker of one assembly task: every unit of its partition written so far, with its record."""
    return storage.join(output_dir, "_work", "done", f"part-{partition:05d}.json")


def read_unit_records(output_dir: str, fingerprint: str) -> dict[str, dict[str, Any]]:
    """Every unit record of this plan in the partitions' markers, by relative path; stale markers removed.

    One listing and one read per partition marker, never one per unit. A marker of another plan describes files
    this plan will overwrite, so it is removed before anything is written (it can never vouch for them later).
    Records are keyed by path, not by partition: a rerun with another partition count still finds them.
    """
    fs, root = storage.filesystem(storage.join(output_dir, "_work", "done"))
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(fs.glob(storage.join(root, "part-*.json"))):
        try:
            marker = storage.read_json(fs, path)
        except (FileNotFoundError, ValueError):
            marker = None
        if not isinstance(marker, dict) or marker.get("fingerprint") != fingerprint:
            fs.rm(path)
            continue
        records.update(marker.get("units", {}))
    return records


def check_units(job: dict[str, Any]) -> list[bool]:
    """For each record of ``job["units"]`` (its ``path`` relative to ``job["output_dir"]``): is the file still there
    with the record's size and footer row count?

    A task per partition, run only for units a marker records (a rerun): the sha256 in the record was computed
    while the file was written and is trusted (``refinery verify`` hashes every file); a truncated or overwritten
    file fails the size or footer check and is rewritten.
    """
    fs, root = storage.filesystem(job["output_dir"])
    results = []
    for record in job["units"]:
        inner = storage.join(root, record["path"])
        try:
            if fs.size(inner) != record.get("bytes"):
                results.append(False)
                continue
            with fs.open(inner, "rb") as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
        except (OSError, ValueError, pa.ArrowException):
            results.append(False)
            continue
        results.append(rows == record.get("rows"))
    return results


#: An assembly task rewrites its partition's marker after at least this many bytes of new shards (and at its
#: end): the marker's cost does not grow with the shard count, and a killed task loses at most this much work.
CHECKPOINT_BYTES = 64_000_000


class PartitionMarker:
    """The records of one partition's units, written atomically at checkpoints (not after every unit)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.fs, self.path = storage.filesystem(job["marker_path"])
        self.fingerprint = job["fingerprint"]
        self.partition = job["partition"]
        self.units: dict[str, dict[str, Any]] = dict(job.get("done", {}))
        self.pending = 0

    def add(self, record: dict[str, Any]) -> None:
        self.units[record["path"]] = record
        self.pending += record["bytes"]
        if self.pending >= CHECKPOINT_BYTES:
            self.write()

    def write(self) -> None:
        marker = {"fingerprint": self.fingerprint, "partition": self.partition, "units": self.units}
        storage.write_json_atomic(self.fs, self.path, marker)
        self.pending = 0


class UnitStream:
    """Writes the wanted units of one partition in unit order while the rows arrive block after block.

    Rows come sorted by (unit, position); a unit's rows may span several blocks, and one block may hold many
    units. A wanted unit with no rows gets its (empty) file when a later unit starts or at the end; rows of a
    unit already written (recorded in the partition's marker) are skipped.
    """

    def __init__(self, job: dict[str, Any], schema: pa.Schema) -> None:
        self.fs, self.root = storage.filesystem(job["output_dir"])
        for folder in sorted({posixpath.dirname(u["path"]) for u in job["units"]}):
            self.fs.makedirs(storage.join(self.root, folder), exist_ok=True)  # once per task, not per unit
        self.wanted = sorted(job["units"], key=lambda u: u["unit"])
        self.next = 0  # the first wanted unit not yet opened
        self.current: tuple[int, UnitFile] | None = None
        self.schema, self.row_group_rows = schema, job["row_group_rows"]
        self.marker = PartitionMarker(job)
        self.records: list[dict[str, Any]] = []

    def _open(self, unit: dict[str, Any]) -> UnitFile:
        path = storage.join(self.root, unit["path"])
        return UnitFile(self.fs, path, unit["path"], self.schema, self.row_group_rows)

    def _commit(self, file: UnitFile) -> None:
        record = file.commit()
        self.records.append(record)
        self.marker.add(record)

    def _close_before(self, unit: int) -> None:
        """Commit the open unit and every wanted unit before ``unit`` (those have no more rows to come)."""
        if self.current is not None and self.current[0] < unit:
            self._commit(self.current[1])
            self.current = None
        while self.next < len(self.wanted) and self.wanted[self.next]["unit"] < unit:
            self._commit(self._open(self.wanted[self.next]))
            self.next += 1

    def append(self, unit: int, rows: pa.Table) -> None:
        self._close_before(unit)
        if self.current is None:
            if self.next >= len(self.wanted) or self.wanted[self.next]["unit"] != unit:
                return  # written before (its marker record stands): skipped
            self.current = (unit, self._open(self.wanted[self.next]))
            self.next += 1
        self.current[1].append(rows)

    def finish(self) -> list[dict[str, Any]]:
        self._close_before(np.iinfo(np.int64).max)
        self.marker.write()
        return self.records

    def abort(self) -> None:
        if self.current is not None:
            self.current[1].abort()


def assemble_partition(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 4 for one partition: write every unit of ``job["units"]``; return their records and the bytes read.

    ``job``: ``output_dir``, ``units`` (the units to write: ``{unit, path}``, paths relative to it), ``done``
    (records of the partition's units already written, by path: kept in its marker), ``marker_path``,
    ``partition``, ``files`` (``[path, record]`` of this partition's scatter files, in writer order),
    ``fingerprint``, ``schema`` (serialised output schema), ``row_group_rows``.

    Block after block (see :mod:`refinery.mixes.scatter_files`): the block's batch from every file that has one
    (in writer order), sorted by (unit, position) — stable, so ties keep writer order, as one sort of the
    whole partition did — and streamed into the units' files. Memory: one block and one row group per open unit,
    whatever the partition's or a unit's size; every scatter byte is read once.
    """
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    sources = [ScatterFile(path, record) for path, record in job["files"]]  # every trailer checked first
    read_bytes = sum(record["bytes"] for _, record in job["files"])
    stream = UnitStream(job, schema)
    try:
        for block in sorted({block for source in sources for block in source.blocks}):
            table = pa.concat_tables([source.read_block(block) for source in sources if block in source.groups])
            units = table.column(UNIT).to_numpy()
            order = np.lexsort((table.column(ORDER).to_numpy(), units))
            ordered = table.select(schema.names).take(pa.array(order, pa.int64())).cast(schema)
            del table
            for unit, first, last in block_runs(units[order]):
                stream.append(unit, ordered.slice(first, last - first))
            del ordered
        records = stream.finish()
    except BaseException:
        stream.abort()
        raise
    return {"records": records, "bytes_read": read_bytes}


def relative_shard_path(unit: int) -> str:
    return posixpath.join("shards", f"part-{unit:05d}.parquet")
