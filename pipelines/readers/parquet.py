"""Parquet reader: record batches straight into the document schema, vectorised (no loop per row but ids).

A file whose footer or pages are corrupt raises :class:`FileReadError` after the batches read before the damage.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines.documents import BASE_SCHEMA, DATE_TYPE, stable_id
from refinery.pipelines.readers.base import (
    ERRORED_SCHEMA,
    FileReadError,
    IngestBatch,
    parse_date,
    split_ingested,
)
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard


def _dates(column: pa.Array) -> pa.Array:
    """Timestamps and dates cast to UTC seconds (naive ones read as UTC); strings parsed as ISO 8601."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return column.cast(DATE_TYPE, safe=False)
    return pa.array([parse_date(value) for value in column.to_pylist()], DATE_TYPE)


def _documents(batch: pa.RecordBatch, first_row: int, shard: Shard, spec: InputSpec) -> pa.Table:
    names = batch.schema.names
    rows = batch.num_rows
    if spec.id_field and spec.id_field in names:
        ids = pc.binary_join_element_wise(f"{shard.source}", batch.column(spec.id_field).cast(pa.string()), "/")
    else:
        ids = pa.array([stable_id(shard.source, shard.key, first_row + i) for i in range(rows)], pa.string())
    text = batch.column(spec.text_field).cast(pa.large_string())
    url = batch.column(spec.url_field).cast(pa.string()) if spec.url_field in names else pa.nulls(rows, pa.string())
    date = _dates(batch.column(spec.date_field)) if spec.date_field in names else pa.nulls(rows, DATE_TYPE)
    source = pa.array([shard.source] * rows, pa.string())
    return pa.Table.from_arrays([ids, text, source, url, date], schema=BASE_SCHEMA)


def read_parquet(shard: Shard, spec: InputSpec, batch_size: int) -> Iterator[IngestBatch]:
    """Yield ingest batches for one Parquet file, reading only the columns the recipe maps."""
    first_row = 0
    try:
        with fsspec.open(shard.path, "rb", **spec.storage_options) as stream:
            parquet = pq.ParquetFile(stream)
            names = parquet.schema_arrow.names
            if spec.text_field not in names:
                raise FileReadError(f"no {spec.text_field!r} column (columns: {names})")
            wanted = [spec.text_field, spec.id_field, spec.url_field, spec.date_field]
            columns = [name for name in dict.fromkeys(wanted) if name and name in names]
            for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
                documents = _documents(batch, first_row, shard, spec)
                first_row += batch.num_rows
                kept, rejected = split_ingested(documents, spec.max_document_bytes)
                yield IngestBatch(kept=kept, rejected=rejected, errored=ERRORED_SCHEMA.empty_table())
    except FileReadError:
        raise
    except Exception as error:
        raise FileReadError(f"Parquet unreadable after row {first_row}: {type(error).__name__}: {error}") from error
