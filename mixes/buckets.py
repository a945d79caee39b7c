"""What a bucket is: the value of the bucket column(s) of a document, and the file name its held-out set gets.

Every part of a mix that groups documents (the writer's index, the optimizer's bucket scan, exports) calls these,
so a bucket is spelled the same everywhere: the column's value, or several columns' values joined by ``/``, with
missing values named ``null``.
"""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa
import pyarrow.compute as pc

BUCKET = "bucket"
EPOCH = "epoch"
NULL_BUCKET = "null"


def bucket_labels(table: pa.Table, columns: list[str]) -> pa.Array:
    """The bucket of every row: the column's value, or the values of several columns joined by ``/``."""
    parts = [pc.fill_null(table.column(c).cast(pa.string()), NULL_BUCKET) for c in columns]
    labels = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "/")
    return labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels


def bucket_file_name(bucket: str) -> str:
    """A file name for a bucket: safe characters kept, others ``_``, plus a short hash when anything changed."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", bucket).strip(".") or "bucket"
    if safe != bucket:
        safe += "-" + hashlib.sha256(bucket.encode()).hexdigest()[:8]
    return safe
