"""Bad input never kills a run: every problem is reported with its file and reason, nothing is unaccounted."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from run_helpers import SAMPLE
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe

REAL_TEXT = (
    "PostgreSQL is a powerful, open source object-relational database system with over thirty years of active "
    "development that has earned it a strong reputation for reliability, feature robustness, and performance. "
)


def write_warc(path: Path, pages: list[tuple[str, bytes]]) -> None:
    with path.open("wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, body in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
            record.rec_headers.add_header("WARC-Identified-Payload-Type", "text/html")
            writer.write_record(record)


@pytest.fixture(scope="module")
def bad_run(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    (base / "warc").mkdir()
    (base / "jsonl").mkdir()
    (base / "parquet").mkdir()
    real_warc = sorted(SAMPLE.glob("warc/postgresql_docs-*.warc.gz"))[0].read_bytes()
    (base / "warc" / "truncated.warc.gz").write_bytes(real_warc[: int(len(real_warc) * 0.6)])
    deep = b"<html><body>" + b"<div>" * 200_000 + b"<p>buried</p>" + b"</div>" * 200_000 + b"</body></html>"
    normal = f"<html><body><article><p>{REAL_TEXT * 3}</p></article></body></html>".encode()
    write_warc(base / "warc" / "deep.warc.gz", [("https://a.example/deep", deep), ("https://a.example/ok", normal)])
    real_parquet = sorted(SAMPLE.glob("parquet/*.parquet"))[0]
    shutil.copy(real_parquet, base / "parquet" / "good.parquet")
    data = real_parquet.read_bytes()
    (base / "parquet" / "corrupt.parquet").write_bytes(data[: len(data) // 2])
    huge = (REAL_TEXT * (50_000_000 // len(REAL_TEXT) + 1))[:50_000_000]
    lines = [
        json.dumps({"text": REAL_TEXT * 2, "url": "https://a.example/1"}).encode(),
        b'{"text": "caf\xe9 au lait is not valid UTF-8 here"}',
        b'{"text": "a raw \x00 NUL byte inside a JSON string"}',
        json.dumps({"text": "escaped NUL\u0000 removed. " + REAL_TEXT * 2}).encode(),
        b'{"text": ""}',
        b'{"text": null}',
        b'{"url": "https://a.example/no-text"}',
        b"this line is not JSON at all",
        b"",
        json.dumps({"text": huge, "url": "https://a.example/huge"}).encode(),
    ]
    (base / "jsonl" / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    recipe = parse_recipe(
        {
            "name": "bad",
            "output_dir": str(base / "out"),
            "inputs": [
                {"name": "web", "format": "warc", "paths": [str(base / "warc" / "*.warc.gz")]},
                {
                    "name": "lines",
                    "format": "jsonl",
                    "paths": [str(base / "jsonl" / "*.jsonl")],
                    "max_document_bytes": 100_000_000,
                },
                {"name": "tables", "format": "parquet", "paths": [str(base / "parquet" / "*.parquet")]},
            ],
            "stages": [{"stage": "length", "min_chars": 100, "max_chars": 1_000_000}, {"stage": "language_id"}],
        },
        base,
    )
    result = run_recipe(recipe, show_progress=False)
    return base, result


def read(base: Path, kind: str) -> list[dict]:
    return pq.read_table(base / "out/segments/00" / kind, columns=None).to_pylist()


def test_the_run_completes_with_every_document_accounted(bad_run):
    _, result = bad_run
    assert result.ok, result.summary["accounting"]
    assert result.failures == []
    for stage in result.summary["segments"][0]["stages"]:
        assert stage["in"] == stage["kept"] + stage["rejected"] + stage["errored"]


def test_unreadable_files_are_reported_with_file_and_reason(bad_run):
    base, result = bad_run
    problems = {error["file"]: error["error"] for error in result.summary["file_errors"]}
    assert set(problems) == {"truncated.warc.gz", "corrupt.parquet"}
    assert problems["truncated.warc.gz"].startswith("WARC unreadable after record")
    assert "Parquet unreadable" in problems["corrupt.parquet"]
    stats = json.loads(next((base / "out/segments/00/stats").glob("web--truncated*.json")).read_text())
    assert stats["stages"][0]["kept"] > 10, "records before the damage are still processed"
    report = (base / "out" / "report.html").read_text()
    assert "truncated.warc.gz" in report and "corrupt.parquet" in report


def test_bad_lines_are_errored_with_their_line_numbers(bad_run):
    base, _ = bad_run
    errors = {row["error"] for row in read(base, "errors") if row["file"] == "mixed.jsonl"}
    assert "line 2: invalid UTF-8 at byte 13" in errors
    assert any(e.startswith("line 3: invalid JSON") for e in errors)
    assert "line 7: no 'text' field" in errors
    assert any(e.startswith("line 8: invalid JSON") for e in errors)
    assert len(errors) == 4


def test_empty_huge_deep_and_nul_documents_get_named_outcomes(bad_run):
    base, _ = bad_run
    rejected = read(base, "rejected")
    reasons = [row["reason"] for row in rejected if row["source"] == "lines"]
    assert reasons.count("ingest:empty_text") == 2
    assert "length:too_long" in reasons, "the 50 MB document reaches the length filter and is rejected there"
    huge = next(row for row in rejected if row["reason"] == "length:too_long")
    assert len(huge["text"]) == 50_000_000
    web = [row["reason"] for row in rejected if row["url"] == "https://a.example/deep"]
    assert web == ["ingest:html_too_deep"]
    kept = [row["text"] for row in read(base, "kept") if row["source"] == "lines"]
    assert any(text.startswith("escaped NUL removed.") for text in kept)
    assert all("\x00" not in text for text in kept)
