"""WARC reader: HTTP responses with an HTML payload → extracted text documents.

Counted, never silently skipped: records that are not responses (``warcinfo``, ``request``, ``metadata``) are
not documents and are tallied in the shard's counters; every response is a document that ends kept, rejected
(``ingest:non_html``, ``ingest:http_error``, ``ingest:too_large``, ``ingest:html_too_deep``,
``ingest:empty_text``) or errored (extraction
failure or timeout). A truncated or corrupt file stops the shard with a :class:`FileReadError` after the
records before the damage have been processed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import fsspec

from refinery.pipelines.readers.base import FileReadError, IngestBatch, RowCollector
from refinery.pipelines.readers.extract import ExtractionTimeout, decode_html, get_extractor, time_limit
from refinery.pipelines.readers.html_depth import max_tag_depth
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard

DOCUMENT_RECORD_TYPES = {"response", "resource"}
HTML_TYPE = re.compile(r"html", re.IGNORECASE)
CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w\-:.]+)", re.IGNORECASE)


def _truncation_checked(base: type) -> type:
    """warcio's iterator, but remembering whether the last gzip member ended before its end-of-stream marker.

    warcio stops quietly at a truncated ``.warc.gz`` (a crawl shard cut off by a failed upload, say); a run must
    say so instead, so the decompressor's ``eof`` flag is read just before warcio closes it.
    """

    class TruncationCheckedIterator(base):
        truncated = False

        def close(self) -> None:
            reader = self.reader
            if reader is not None and reader.decompressor is not None:
                self.truncated = not getattr(reader.decompressor, "eof", True)
            super().close()

    return TruncationCheckedIterator


def _content_type(record) -> str:
    identified = record.rec_headers.get_header("WARC-Identified-Payload-Type")
    if identified:
        return identified
    if record.http_headers is not None:
        return record.http_headers.get_header("Content-Type") or ""
    return record.rec_headers.get_header("Content-Type") or ""


def _declared_charset(record) -> str | None:
    header = record.http_headers.get_header("Content-Type") if record.http_headers is not None else None
    match = CHARSET.search(header or "")
    return match.group(1) if match else None


def read_warc(shard: Shard, spec: InputSpec, batch_size: int) -> Iterator[IngestBatch]:
    """Yield ingest batches for one ``.warc`` / ``.warc.gz`` file."""
    from warcio.archiveiterator import ArchiveIterator

    extract = get_extractor(spec.extractor)
    rows = RowCollector(shard, spec, batch_size)
    index = -1
    try:
        with fsspec.open(shard.path, "rb", **spec.storage_options) as stream:
            records = _truncation_checked(ArchiveIterator)(stream, arc2warc=True)
            for index, record in enumerate(records):
                if record.rec_type not in DOCUMENT_RECORD_TYPES:
                    rows.count(f"warc_{record.rec_type}_records")
                    continue
                _ingest_record(rows, index, record, spec, extract)
                if len(rows) >= batch_size:
                    yield rows.flush()
            if records.truncated:
                raise EOFError("the gzip stream ends inside a record (truncated file)")
    except Exception as error:
        if len(rows):
            yield rows.flush()
        raise FileReadError(f"WARC unreadable after record {index + 1}: {type(error).__name__}: {error}") from error
    if len(rows):
        yield rows.flush()


def _ingest_record(rows: RowCollector, index: int, record, spec: InputSpec, extract) -> None:
    url = record.rec_headers.get_header("WARC-Target-URI")
    date = record.rec_headers.get_header("WARC-Date")
    status = record.http_headers.get_statuscode() if record.http_headers is not None else None
    if status is not None and not str(status).startswith("2"):
        rows.add(index, None, url, date, reason="http_error")
        return
    if not HTML_TYPE.search(_content_type(record)):
        rows.add(index, None, url, date, reason="non_html")
        return
    payload = record.content_stream().read(spec.max_document_bytes + 1)
    if len(payload) > spec.max_document_bytes:
        rows.add(index, None, url, date, reason="too_large")
        return
    # a page with fewer tags than the limit cannot nest deeper than it: skip the scan for most pages
    if payload.count(b"<") > spec.max_html_depth and max_tag_depth(payload) > spec.max_html_depth:
        rows.add(index, None, url, date, reason="html_too_deep")
        return
    try:
        with time_limit(spec.extraction_timeout_s):
            text = extract(decode_html(payload, _declared_charset(record)))
    except ExtractionTimeout as error:
        rows.add(index, None, url, date, error=f"{spec.extractor}: {error}")
        return
    except Exception as error:
        rows.add(index, None, url, date, error=f"{spec.extractor} failed: {type(error).__name__}: {error}")
        return
    rows.add(index, text, url, date)
