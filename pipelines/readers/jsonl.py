"""JSONL reader (plain, ``.gz``, ``.zst``/``.zstd``): one JSON object per line is one document.

A line that is not valid UTF-8 or not a JSON object is an errored document (with its line number), not a crash:
web dumps routinely carry a few broken lines. Blank lines are not documents. Compression is inferred from the
extension by fsspec, so local files and object-store URLs behave the same.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import fsspec

from refinery.pipelines.readers.base import FileReadError, IngestBatch, RowCollector
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard

COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2", ".xz": "xz"}


def compression_of(path: str) -> str | None:
    for suffix, compression in COMPRESSION_BY_SUFFIX.items():
        if path.endswith(suffix):
            return compression
    return None


def _lines(compressed: io.IOBase, path: str) -> io.IOBase:
    """A line-iterable binary stream over the decompressed content.

    zstd gets its own reader: fsspec's has no ``readline``, and web dumps are often several zstd frames, which
    must be read across as the zstd command-line tool does.
    """
    compression = compression_of(path)
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(compressed, read_across_frames=True, closefd=False)
        return io.BufferedReader(reader, buffer_size=1 << 20)
    if compression is None:
        return compressed
    return fsspec.core.compr[compression](compressed, mode="rb")


def read_jsonl(shard: Shard, spec: InputSpec, batch_size: int) -> Iterator[IngestBatch]:
    """Yield ingest batches for one JSONL file."""
    rows = RowCollector(shard, spec, batch_size)
    line_number = 0
    try:
        with fsspec.open(shard.path, "rb", **spec.storage_options) as raw_file, _lines(raw_file, shard.path) as stream:
            for line_number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    rows.count("blank_lines")
                    continue
                _ingest_line(rows, line_number, raw, spec)
                if len(rows) >= batch_size:
                    yield rows.flush()
    except Exception as error:
        if len(rows):
            yield rows.flush()
        raise FileReadError(f"JSONL unreadable after line {line_number}: {type(error).__name__}: {error}") from error
    if len(rows):
        yield rows.flush()


def _ingest_line(rows: RowCollector, line_number: int, raw: bytes, spec: InputSpec) -> None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        rows.add(line_number, None, error=f"line {line_number}: invalid UTF-8 at byte {error.start}")
        return
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        rows.add(line_number, None, error=f"line {line_number}: invalid JSON: {error}")
        return
    if not isinstance(record, dict):
        rows.add(
            line_number,
            None,
            error=f"line {line_number}: expected a JSON object, got {type(record).__name__}",
        )
        return
    doc_id = None
    if spec.id_field is not None and record.get(spec.id_field) is not None:
        doc_id = f"{rows.shard.source}/{record[spec.id_field]}"
    url = record.get(spec.url_field) if spec.url_field else None
    date = record.get(spec.date_field) if spec.date_field else None
    url = url if isinstance(url, str) else None
    text = record.get(spec.text_field)
    problem = None
    if spec.text_field not in record:
        problem = f"no {spec.text_field!r} field"
    elif text is not None and not isinstance(text, str):
        problem = f"{spec.text_field!r} is {type(text).__name__}, expected a string"
    if problem is not None:
        rows.add(line_number, None, url, date, doc_id=doc_id, error=f"line {line_number}: {problem}")
        return
    rows.add(line_number, text, url, date, doc_id=doc_id)
