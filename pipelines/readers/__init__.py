"""Readers turn one input shard into batches of documents of the base schema (see ``documents.py``)."""

from __future__ import annotations

from refinery.pipelines.readers.base import FileReadError, IngestBatch, Reader
from refinery.pipelines.readers.jsonl import read_jsonl
from refinery.pipelines.readers.parquet import read_parquet
from refinery.pipelines.readers.warc import read_warc

READERS: dict[str, Reader] = {"warc": read_warc, "jsonl": read_jsonl, "parquet": read_parquet}

__all__ = ["READERS", "FileReadError", "IngestBatch", "Reader"]
