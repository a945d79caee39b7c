"""Every reader on real files: WARC (both extractors), JSONL (plain, gz, zst), Parquet, local and fsspec URLs."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from run_helpers import SAMPLE
from warcio.archiveiterator import ArchiveIterator

from refinery.pipelines.readers import READERS, IngestBatch
from refinery.pipelines.readers.html_depth import max_tag_depth
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard, discover_shards


def read(fmt: str, path: str, key: str | None = None, source: str = "src", **options) -> IngestBatch:
    spec = InputSpec(name=source, format=fmt, paths=[path], **options)
    shard = Shard(source=source, path=path, key=key or Path(path).name)
    batches = list(READERS[fmt](shard, spec, 50))
    return IngestBatch(
        kept=pa.concat_tables([b.kept for b in batches]),
        rejected=pa.concat_tables([b.rejected for b in batches]),
        errored=pa.concat_tables([b.errored for b in batches]),
        counters={k: sum(b.counters.get(k, 0) for b in batches) for b in batches for k in b.counters},
    )


def first_records(path: Path, count: int) -> bytes:
    """The raw bytes of the first ``count`` records of a gzipped WARC (each record is its own gzip member)."""
    with path.open("rb") as stream:
        iterator = ArchiveIterator(stream)
        for index, _ in enumerate(iterator):
            if index == count:
                return path.read_bytes()[: iterator.get_record_offset()]
    return path.read_bytes()


@pytest.fixture(scope="module")
def warc_shard() -> Path:
    return sorted(SAMPLE.glob("warc/postgresql_docs-*.warc.gz"))[0]


def test_warc_extracts_html_responses_and_counts_everything_else(warc_shard):
    batch = read("warc", str(warc_shard))
    with warc_shard.open("rb") as stream:
        types = [record.rec_type for record in ArchiveIterator(stream)]
    assert batch.num_in == types.count("response")
    assert batch.counters["warc_request_records"] == types.count("request")
    assert batch.counters["warc_warcinfo_records"] == types.count("warcinfo")
    assert batch.kept.num_rows > 50
    assert "ingest:non_html" in batch.rejected.column("reason").to_pylist()
    texts = batch.kept.column("text").to_pylist()
    assert all(len(t) > 0 for t in texts) and all("<div" not in t for t in texts)
    assert any("PostgreSQL" in t for t in texts)
    assert all(u.startswith("https://") for u in batch.kept.column("url").to_pylist())
    assert batch.kept.column("date").null_count == 0


def test_both_extractors_read_the_same_pages(warc_shard, tmp_path):
    small = tmp_path / "small.warc.gz"
    small.write_bytes(first_records(warc_shard, 24))
    fast = read("warc", str(small), extractor="resiliparse")
    careful = read("warc", str(small), extractor="trafilatura")
    assert fast.num_in == careful.num_in > 5
    assert fast.kept.column("id").to_pylist()[:3] == careful.kept.column("id").to_pylist()[:3]
    assert careful.kept.num_rows >= fast.kept.num_rows - 2
    first_fast, first_careful = fast.kept.column("text")[0].as_py(), careful.kept.column("text")[0].as_py()
    assert first_fast != first_careful, "two different extractors"
    assert set(first_careful.split()[:20]) & set(first_fast.split())


def test_extraction_timeout_errors_the_document_and_moves_on(warc_shard, tmp_path):
    small = tmp_path / "small.warc.gz"
    small.write_bytes(first_records(warc_shard, 12))
    batch = read("warc", str(small), extractor="trafilatura", extraction_timeout_s=0.000001)
    assert batch.errored.num_rows > 0
    assert set(batch.errored.column("error").to_pylist()) == {"trafilatura: extraction took longer than 1e-06s"}
    assert batch.num_in == read("warc", str(small)).num_in


def test_ids_are_stable_across_runs_and_filesystems(warc_shard):
    local = read("warc", str(warc_shard))
    again = read("warc", str(warc_shard))
    memory = fsspec.filesystem("memory")
    memory.pipe("/bucket/crawl/" + warc_shard.name, warc_shard.read_bytes())
    spec = InputSpec(name="src", format="warc", paths=["memory://bucket/crawl/*.warc.gz"])
    (shard,) = discover_shards(spec)
    assert shard.key == warc_shard.name and shard.path.startswith("memory://")
    remote = read("warc", shard.path, key=shard.key)
    ids = local.kept.column("id").to_pylist()
    assert ids == again.kept.column("id").to_pylist() == remote.kept.column("id").to_pylist()
    assert len(set(ids)) == len(ids) and all(i.startswith("src/") for i in ids)


@pytest.mark.parametrize("compression", ["zst", "gz", "plain"])
def test_jsonl_in_every_compression_gives_the_same_documents(compression, tmp_path):
    source = sorted(SAMPLE.glob("jsonl/*.jsonl.zst"))[0]
    raw = zstandard.ZstdDecompressor().stream_reader(source.open("rb")).read()
    target = {"zst": source, "gz": tmp_path / "d.jsonl.gz", "plain": tmp_path / "d.jsonl"}[compression]
    if compression == "gz":
        target.write_bytes(gzip.compress(raw))
    elif compression == "plain":
        target.write_bytes(raw)
    batch = read("jsonl", str(target), key="same-key")
    assert batch.num_in == sum(1 for line in raw.splitlines() if line.strip())
    assert batch.errored.num_rows == 0
    expected = read("jsonl", str(source), key="same-key")
    assert batch.kept.column("text").to_pylist() == expected.kept.column("text").to_pylist()
    assert batch.kept.column("id").to_pylist() == expected.kept.column("id").to_pylist()


def test_parquet_maps_columns_and_parses_dates(tmp_path):
    source = sorted(SAMPLE.glob("parquet/*.parquet"))[0]
    table = pq.read_table(source)
    batch = read("parquet", str(source))
    assert batch.num_in == table.num_rows
    assert batch.kept.schema.field("date").type == pa.timestamp("s", tz="UTC")
    assert batch.kept.column("date").null_count == 0
    with_ids = tmp_path / "ids.parquet"
    pq.write_table(table.append_column("doc", pa.array([f"d{i}" for i in range(table.num_rows)])), with_ids)
    renamed = read("parquet", str(with_ids), id_field="doc", source="log")
    assert renamed.kept.column("id").to_pylist()[:2] == ["log/d0", "log/d1"]


def test_html_depth_bound():
    assert max_tag_depth(b"<html><body>" + b"<div>" * 1000 + b"x" + b"</div>" * 1000 + b"</body></html>") == 1002
    assert max_tag_depth(b"<p>a<br>b<img src=x><meta charset=x></p>") == 1
    page = io.BytesIO(b"<html><body><ul>" + b"<li>x</li>" * 5000 + b"</ul></body></html>").getvalue()
    assert max_tag_depth(page) == 4
