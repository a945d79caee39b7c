"""Scatter files: one input shard's rows of one partition, a record batch per *block*, each checked on read.

Why blocks: an assembly task must not hold its partition (up to ``PARTITION_BYTES`` of output) nor a whole
output shard (at 1 output shard that is the corpus). The rows of a partition are ordered by (unit, position)
and that order is cut into blocks of about ``BLOCK_BYTES`` of estimated output each (a block holds several
small units, or a slice of one large unit). Every scatter file is written in that order, one record batch per
non-empty block, so the assembly reads block after block — the block's batch from every input shard's file,
each byte once — and holds one block at a time.

Format: an Arrow IPC stream (LZ4-compressed buffers; readable whole by ``pyarrow.ipc.open_stream``), then a
JSON trailer — the schema and, per block, its byte range, rows and sha256 — then the trailer's length (8 bytes,
little-endian) and ``MAGIC``. Why not Parquet: a block of one input shard is often a few dozen rows, and a
Parquet row group that small costs ~1 ms to write and to read (its footer entry, with min/max statistics of
every column, is kept by the reader for every file), against ~0.2 ms for an IPC batch whose directory is a few
bytes. These files live only until their partition is assembled.

Checks: the trailer's sha256 (and the file's size and rows) are in the writer's record; a reader checks the
trailer once, then each block's bytes before it decodes them: every byte used was checked, and nothing is read
twice. A missing, truncated or altered file raises :class:`IntermediateError` (the mix writer then scatters
again).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
from typing import Any

import numpy as np
import pyarrow as pa

from refinery.pipelines import storage
from refinery.pipelines.partitions import IntermediateError

MAGIC = b"RSF1"
TAIL = 8 + len(MAGIC)  # the trailer's length, then the magic
IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def scatter_path(directory: str, partition: int, writer: str) -> str:
    """``DIR/part-PPPPP/WRITER.arrows``: one input shard's (``writer``) rows of one partition."""
    return f"{directory.rstrip('/')}/part-{partition:05d}/{writer}.arrows"


def block_runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` of every run of equal values in a non-decreasing array (blocks, partitions)."""
    if not len(values):
        return []
    bounds = np.flatnonzero(np.diff(values)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(values)]]).tolist()
    return [(int(values[s]), s, e) for s, e in zip(starts, ends, strict=True)]


def scatter_bytes(table: pa.Table, blocks: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """``table`` (rows in block order) as a scatter file, a record batch per block; the bytes and their record."""
    sink = io.BytesIO()
    listed, start = [], 0
    with pa.ipc.new_stream(sink, table.schema, options=IPC_OPTIONS) as writer:
        for block, first, last in block_runs(blocks):
            writer.write_table(table.slice(first, last - first))  # written to the sink on return
            end = sink.tell()  # the first block's range also holds the schema message
            listed.append([block, start, end, last - first, hashlib.sha256(sink.getbuffer()[start:end]).hexdigest()])
            start = end
    schema = base64.b64encode(table.schema.serialize().to_pybytes()).decode()
    trailer = json.dumps({"schema": schema, "blocks": listed}).encode()
    sink.write(trailer + struct.pack("<Q", len(trailer)) + MAGIC)
    data = sink.getvalue()
    record = {
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "trailer_sha256": hashlib.sha256(data[-(len(trailer) + TAIL) :]).hexdigest(),
    }
    return data, record


def write_scatter_files(
    directory: str, writer: str, table: pa.Table, partitions: np.ndarray, blocks: np.ndarray
) -> dict[str, dict[str, Any]]:
    """One file per partition of ``table`` (rows sorted by partition, then block); ``{partition: record}``."""
    files: dict[str, dict[str, Any]] = {}
    for partition, first, last in block_runs(np.asarray(partitions, np.int64)):
        data, record = scatter_bytes(table.slice(first, last - first), blocks[first:last])
        fs, inner = storage.filesystem(scatter_path(directory, partition, writer))
        storage.write_bytes_atomic(fs, inner, data)
        files[str(partition)] = record
    return files


class ScatterFile:
    """One scatter file, read block by block: the trailer checked on open, each block checked before use.

    Holds the trailer only (the schema and a few numbers per block), never the file.
    """

    def __init__(self, path: str, record: dict[str, Any]) -> None:
        self.path, self.record = path, record
        self.fs, self.inner = storage.filesystem(path)
        try:  # exact range reads (one request each on an object store, no read-ahead)
            size = self.fs.size(self.inner)
            if size != record["bytes"]:
                raise IntermediateError(path, f"{size} bytes, its writer recorded {record['bytes']}")
            tail = self.fs.cat_file(self.inner, start=max(0, size - TAIL), end=size)
            length = struct.unpack("<Q", tail[:8])[0] if len(tail) == TAIL and tail[8:] == MAGIC else size
            if length + TAIL > size:
                raise IntermediateError(path, "not a scatter file (no trailer)")
            trailer = self.fs.cat_file(self.inner, start=size - TAIL - length, end=size)
        except FileNotFoundError:
            raise IntermediateError(path, "missing") from None
        if hashlib.sha256(trailer).hexdigest() != record.get("trailer_sha256"):
            raise IntermediateError(path, "trailer sha256 differs from what its writer recorded")
        listing = json.loads(trailer[:length])
        self.schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(listing["schema"])))
        self.groups = {block: (start, end, rows, digest) for block, start, end, rows, digest in listing["blocks"]}
        if sum(rows for _, _, rows, _ in self.groups.values()) != record["rows"]:
            raise IntermediateError(path, f"its blocks do not hold the {record['rows']} rows its writer recorded")

    @property
    def blocks(self) -> list[int]:
        return list(self.groups)

    def read_block(self, block: int) -> pa.Table:
        """The rows of ``block``: its bytes read once, checked, then decoded."""
        start, end, rows, digest = self.groups[block]
        try:
            data = self.fs.cat_file(self.inner, start=start, end=end)
        except FileNotFoundError:
            raise IntermediateError(self.path, "missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntermediateError(self.path, f"block {block}: sha256 differs from what its writer recorded")
        batches = [
            pa.ipc.read_record_batch(message, self.schema)
            for message in pa.ipc.MessageReader.open_stream(pa.py_buffer(data))
            if message.type == "record batch"
        ]
        table = pa.Table.from_batches(batches, self.schema)
        if table.num_rows != rows:
            raise IntermediateError(self.path, f"block {block}: {table.num_rows} rows, its writer recorded {rows}")
        return table
