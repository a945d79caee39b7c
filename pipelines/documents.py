"""The document contract: one document is one row of an Arrow table.

Every stage reads and writes tables with these base columns. Stages that add information add flat, named
columns and declare them (see :class:`refinery.pipelines.stages.Stage.added_columns`), so the schema of every
output shard is known before the run starts and empty shards still carry the full schema.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

ID = "id"
TEXT = "text"
SOURCE = "source"
URL = "url"
DATE = "date"
REASON = "reason"
ERROR = "error"
STAGE = "stage"
FILE = "file"

DATE_TYPE = pa.timestamp("s", tz="UTC")

BASE_SCHEMA = pa.schema(
    [
        pa.field(ID, pa.string(), nullable=False),
        pa.field(TEXT, pa.large_string()),
        pa.field(SOURCE, pa.string(), nullable=False),
        pa.field(URL, pa.string()),
        pa.field(DATE, DATE_TYPE),
    ]
)

#: Columns of the errors table: the document as far as it was known, where the error happened, and why.
ERROR_FIELDS = [
    pa.field(STAGE, pa.string(), nullable=False),
    pa.field(FILE, pa.string()),
    pa.field(ERROR, pa.large_string(), nullable=False),
]


def stable_id(source: str, file_key: str, position: int | str) -> str:
    """A document id that is the same on every run for the same input.

    It hashes the recipe's source name, the file's path relative to its input root (so the same file read
    from a local path or an ``s3://`` URL keeps its ids) and the document's position inside the file (record
    index, line number or row number). 20 hex characters (80 bits) keep collisions negligible at 10^12
    documents per source while staying short in shuffles.
    """
    digest = hashlib.blake2b(f"{file_key}\x00{position}".encode(), digest_size=10).hexdigest()
    return f"{source}/{digest}"


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Return ``table`` with exactly the columns of ``schema``, in order and with its types.

    Missing columns are filled with nulls; extra columns are dropped. This is what makes every kept shard of a
    segment share one schema whatever the shard's content was.
    """
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            if column.type != field.type:
                column = column.cast(field.type)
            columns.append(column)
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
