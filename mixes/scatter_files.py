"""Scatter files: one input shard's rows of one partition, a Parquet row group per *block*, each checked on read.

Why blocks: an assembly task must not hold its partition (up to ``PARTITION_BYTES`` of output) nor a whole
output shard (at 1 output shard that is the corpus). The rows of a partition are ordered by (unit, position)
and that order is cut into blocks of about ``BLOCK_BYTES`` of estimated output each (a block holds several
small units, or a slice of one large unit). Every scatter file is written in that order with one row group per
non-empty block, so the assembly reads block after block — the block's row group from every input shard's
file, each byte once — and holds one block at a time.

Checks: every row group's bytes have a sha256, listed (with the block and byte range) in the file's footer
metadata, and the footer's own sha256 is in the writer's record (with the file's size and rows). A reader
checks the footer once, then each row group's bytes before it decodes them: every byte used was checked, and
nothing is read twice. A missing, truncated or altered file raises :class:`IntermediateError` (the mix writer
then scatters again).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.partitions import IntermediateError, partition_path

#: Footer metadata key of the row groups' ``[block, start, end, sha256]`` list.
BLOCKS_KEY = b"refinery.scatter_blocks"
TAIL = 8  # a Parquet file ends with the footer's length (4 bytes, little-endian) and b"PAR1"


def block_runs(blocks: np.ndarray) -> list[tuple[int, int, int]]:
    """``(block, start, end)`` of every run of equal values in a non-decreasing array of block ids."""
    if not len(blocks):
        return []
    bounds = np.flatnonzero(np.diff(blocks)) + 1
    starts = np.concatenate([[0], bounds]).tolist()
    ends = np.concatenate([bounds, [len(blocks)]]).tolist()
    return [(int(blocks[s]), s, e) for s, e in zip(starts, ends, strict=True)]


def scatter_bytes(table: pa.Table, blocks: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """``table`` (rows in block order) as zstd Parquet, a row group per block; the bytes and their record."""
    sink = io.BytesIO()
    writer = pq.ParquetWriter(sink, table.schema, **storage.PARQUET_OPTIONS)
    groups, start = [], 4  # after the leading b"PAR1"
    for block, first, last in block_runs(blocks):
        writer.write_table(table.slice(first, last - first))  # one row group, flushed to the sink on return
        end = sink.tell()
        groups.append([block, start, end, hashlib.sha256(sink.getbuffer()[start:end]).hexdigest()])
        start = end
    writer.add_key_value_metadata({BLOCKS_KEY: json.dumps(groups)})
    writer.close()
    data = sink.getvalue()
    record = {
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "footer_sha256": hashlib.sha256(data[start:]).hexdigest(),
    }
    return data, record


def write_scatter_files(
    directory: str, writer: str, table: pa.Table, partitions: np.ndarray, blocks: np.ndarray
) -> dict[str, dict[str, Any]]:
    """One file per partition of ``table`` (rows sorted by partition, then block); ``{partition: record}``."""
    files: dict[str, dict[str, Any]] = {}
    for partition, first, last in block_runs(np.asarray(partitions, np.int64)):
        data, record = scatter_bytes(table.slice(first, last - first), blocks[first:last])
        fs, inner = storage.filesystem(partition_path(directory, partition, writer))
        storage.write_bytes_atomic(fs, inner, data)
        files[str(partition)] = record
    return files


class _Spans:
    """A read-only file of ``size`` bytes of which only some byte ranges are in memory: what pyarrow reads of one
    row group (and nothing else) when the footer is given to it already parsed."""

    def __init__(self, size: int, spans: list[tuple[int, bytes]]) -> None:
        self.size, self.spans, self.position, self.closed = size, spans, 0, False

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else self.position + offset if whence == 1 else self.size + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, count: int = -1) -> bytes:
        count = self.size - self.position if count is None or count < 0 else count
        for start, data in self.spans:
            if start <= self.position and self.position + count <= start + len(data):
                chunk = data[self.position - start : self.position - start + count]
                self.position += count
                return chunk
        raise OSError(f"read of {count} bytes at {self.position} outside the loaded row group")

    def close(self) -> None:
        self.closed = True


class ScatterFile:
    """One scatter file, read block by block: the footer checked on open, each row group checked before use."""

    def __init__(self, path: str, record: dict[str, Any]) -> None:
        self.path, self.record = path, record
        self.fs, self.inner = storage.filesystem(path)
        try:  # exact range reads (one request each on an object store, no read-ahead)
            size = self.fs.size(self.inner)
            if size != record["bytes"]:
                raise IntermediateError(path, f"{size} bytes, its writer recorded {record['bytes']}")
            tail = self.fs.cat_file(self.inner, start=max(0, size - TAIL), end=size)
            footer_length = struct.unpack("<I", tail[:4])[0] if len(tail) == TAIL and tail[4:] == b"PAR1" else size
            if footer_length + TAIL + 4 > size:
                raise IntermediateError(path, "not a Parquet file (no footer)")
            self.footer_start = size - TAIL - footer_length
            footer = self.fs.cat_file(self.inner, start=self.footer_start, end=size)
        except FileNotFoundError:
            raise IntermediateError(path, "missing") from None
        if hashlib.sha256(footer).hexdigest() != record.get("footer_sha256"):
            raise IntermediateError(path, "footer sha256 differs from what its writer recorded")
        self.size, self.footer = size, footer
        self.metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
        if self.metadata.num_rows != record["rows"]:
            raise IntermediateError(path, f"{self.metadata.num_rows} rows, its writer recorded {record['rows']}")
        listed = (self.metadata.metadata or {}).get(BLOCKS_KEY)
        if listed is None:
            raise IntermediateError(path, "no block list in its footer (not a scatter file of this writer)")
        groups = json.loads(listed)
        self.groups = {block: (index, start, end, digest) for index, (block, start, end, digest) in enumerate(groups)}

    @property
    def blocks(self) -> list[int]:
        return list(self.groups)

    def read_block(self, block: int) -> pa.Table:
        """The rows of ``block`` (one row group): its bytes read once, checked, then decoded."""
        index, start, end, digest = self.groups[block]
        try:
            data = self.fs.cat_file(self.inner, start=start, end=end)
        except FileNotFoundError:
            raise IntermediateError(self.path, "missing") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntermediateError(self.path, f"row group {index}: sha256 differs from what its writer recorded")
        source = _Spans(self.size, [(start, data), (self.footer_start, self.footer)])
        return pq.ParquetFile(source, metadata=self.metadata).read_row_group(index)
