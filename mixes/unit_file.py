"""One output unit (a training shard or a held-out set) streamed to its file a row group at a time.

Why streaming: a unit can be large (at 1 output shard it is the whole mix), and the assembly must hold one block
of rows, not a unit. Rows arrive in the unit's final order, in pieces of any size; every ``row_group_rows`` rows
become one row group (a single-chunk slice, exactly as a whole-unit write cut into the same slices: the file's
bytes do not depend on how the rows arrived). The sha256 is taken from the bytes as they are written; the file
is written under a temporary name and renamed (:func:`publish`) only when complete.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage

from .token_count import N_TOKENS


def publish(fs: Any, temporary: str, path: str) -> None:
    """A finished unit file takes its name (a reader sees the whole file or none)."""
    fs.mv(temporary, path)


class UnitFile:
    """A unit's file being written: rows appended in order, row groups cut at ``row_group_rows``."""

    def __init__(self, fs: Any, path: str, relative: str, schema: pa.Schema, row_group_rows: int) -> None:
        self.fs, self.path, self.relative, self.row_group_rows = fs, path, relative, row_group_rows
        self.temporary = storage.temporary_path(path)
        self.handle = fs.open(self.temporary, "wb")
        self.sink = storage.HashingHandle(self.handle)
        self.writer = pq.ParquetWriter(self.sink, schema, **storage.PARQUET_OPTIONS)
        self.carry: pa.Table | None = None  # fewer than row_group_rows rows, copied (holds no block alive)
        self.rows = 0
        self.tokens = 0

    def append(self, rows: pa.Table) -> None:
        """The unit's next rows (in order)."""
        if not rows.num_rows:
            return
        self.rows += rows.num_rows
        self.tokens += int(np.sum(rows.column(N_TOKENS).to_numpy(zero_copy_only=False), dtype=np.int64))
        table = rows if self.carry is None else pa.concat_tables([self.carry, rows])
        full = table.num_rows - table.num_rows % self.row_group_rows
        for start in range(0, full, self.row_group_rows):
            self.writer.write_table(table.slice(start, self.row_group_rows).combine_chunks())
        rest = table.num_rows - full
        self.carry = table.take(pa.array(np.arange(full, table.num_rows, dtype=np.int64))) if rest else None

    def commit(self) -> dict[str, Any]:
        """Write the last row group, close, rename into place; the unit's record (rows, tokens, bytes, sha256)."""
        try:
            if self.carry is not None:
                self.writer.write_table(self.carry.combine_chunks())
                self.carry = None
            self.writer.close()
            self.handle.close()
            publish(self.fs, self.temporary, self.path)
        except BaseException:
            self.abort()
            raise
        return {
            "path": self.relative,
            "rows": self.rows,
            "tokens": self.tokens,
            "bytes": self.sink.size,
            "sha256": self.sink.hexdigest(),
        }

    def abort(self) -> None:
        """Close and remove the temporary file (a unit never half-written under its name)."""
        with contextlib.suppress(Exception):
            self.writer.close()
        self.handle.close()
        if self.fs.exists(self.temporary):
            self.fs.rm(self.temporary)
