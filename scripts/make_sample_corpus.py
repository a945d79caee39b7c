"""Rebuild the bundled sample corpus (``sample_corpus/``) from Debian documentation packages.

Real pages with real boilerplate, licence-clean, byte-identical on every rebuild from the same package versions:

* ``warc/postgresql_docs-*.warc.gz``  PostgreSQL 15 manual (postgresql-doc-15), English
* ``warc/python_docs-*.warc.gz``      Python 3.11 documentation (python3.11-doc), English
* ``warc/debian_handbook-*.warc.gz``  The Debian Administrator's Handbook (debian-handbook), 9 languages
* ``jsonl/debian_copyright-*.jsonl.zst``  /usr/share/doc/*/copyright files (licence texts: natural near-duplicates)
* ``parquet/debian_changelog-*.parquet``  /usr/share/doc/*/changelog*.gz (repetitive, low-quality text)

Each WARC starts with a ``warcinfo`` record and holds a ``request`` + ``response`` pair per page, with
``WARC-Identified-Payload-Type`` set; each source's first shard also carries a few real non-HTML responses
(stylesheets, images) so that ingest's non-HTML accounting is exercised. Record ids are UUID-5 of the URL, dates
come from file modification times (fixed by the .deb), and gzip headers carry no timestamp.

    apt-get install -y --no-install-recommends debian-handbook postgresql-doc-15 python3.11-doc
    .venv/bin/python scripts/make_sample_corpus.py [--output sample_corpus]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

REPO = Path(__file__).resolve().parents[1]
DOC = Path("/usr/share/doc")
NAMESPACE = uuid.UUID("5b1e6a52-7d4c-4a59-9f55-2f8d0f3b6c11")
HANDBOOK_LANGUAGES = ("en-US", "de-DE", "fr-FR", "es-ES", "it-IT", "ja-JP", "ru-RU", "pt-BR", "zh-CN")
MEDIA_TYPES = {".css": "text/css", ".png": "image/png", ".js": "application/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Page:
    path: Path
    url: str


def iso_date(path: Path) -> str:
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def require(folder: Path, package: str) -> Path:
    if not folder.is_dir():
        raise SystemExit(f"{folder} is missing: apt-get install -y --no-install-recommends {package}")
    return folder


def every_nth(items: list, count: int) -> list:
    """A deterministic, evenly spread subset of ``count`` items."""
    if len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def html_pages(root: Path, url_base: str, count: int, max_bytes: int = 300_000) -> list[Page]:
    files = sorted(p for p in root.rglob("*.html") if 2_000 < p.stat().st_size <= max_bytes)
    return [Page(p, url_base + p.relative_to(root).as_posix()) for p in every_nth(files, count)]


def media_pages(root: Path, url_base: str, count: int) -> list[Page]:
    files = sorted(p for p in root.rglob("*") if p.suffix in MEDIA_TYPES and p.is_file() and p.stat().st_size < 200_000)
    return [Page(p, url_base + p.relative_to(root).as_posix()) for p in files[:count]]


def record_id(url: str, kind: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(NAMESPACE, kind + ' ' + url)}>"


def write_warc(path: Path, pages: list[Page], media: list[Page]) -> int:
    """One WARC: warcinfo, then a request and a response per page; returns the number of responses."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    info = writer.create_warcinfo_record(path.name, {"software": "refinery make_sample_corpus", "format": "WARC 1.1"})
    info.rec_headers.replace_header("WARC-Record-ID", record_id(path.name, "warcinfo"))
    info.rec_headers.replace_header("WARC-Date", "2025-01-01T00:00:00Z")
    writer.write_record(info)
    for page in [*media, *pages]:
        body = page.path.read_bytes()
        content_type = MEDIA_TYPES.get(page.path.suffix, "text/html")
        date = iso_date(page.path)
        host = page.url.split("/")[2]
        request_headers = StatusAndHeaders(
            f"GET /{page.url.split('/', 3)[3]} HTTP/1.1",
            [("Host", host), ("User-Agent", "refinery-sample")],
            is_http_request=True,
        )
        request = writer.create_warc_record(
            page.url,
            "request",
            http_headers=request_headers,
            warc_headers_dict={"WARC-Date": date, "WARC-Record-ID": record_id(page.url, "request")},
        )
        http = StatusAndHeaders(
            "200 OK",
            [
                ("Content-Type", content_type + ("; charset=utf-8" if content_type == "text/html" else "")),
                ("Content-Length", str(len(body))),
            ],
            protocol="HTTP/1.1",
        )
        response = writer.create_warc_record(
            page.url,
            "response",
            payload=io.BytesIO(body),
            http_headers=http,
            warc_headers_dict={
                "WARC-Date": date,
                "WARC-Record-ID": record_id(page.url, "response"),
                "WARC-Identified-Payload-Type": content_type,
            },
        )
        writer.write_record(request)
        writer.write_record(response)
    path.write_bytes(buffer.getvalue())
    return len(pages) + len(media)


def shards(items: list, size: int) -> Iterator[tuple[int, list]]:
    for index in range(0, len(items), size):
        yield index // size, items[index : index + size]


def build_warc_source(output: Path, name: str, pages: list[Page], media: list[Page], per_shard: int) -> int:
    total = 0
    for index, chunk in shards(pages, per_shard):
        total += write_warc(output / "warc" / f"{name}-{index:05d}.warc.gz", chunk, media if index == 0 else [])
    return total


def copyright_records(count: int) -> list[dict]:
    files = every_nth(sorted(DOC.glob("*/copyright")), count)
    records = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        records.append(
            {"text": text, "url": f"https://sources.debian.org/copyright/{path.parent.name}", "date": iso_date(path)}
        )
    return records


def changelog_rows(count: int, max_bytes: int = 200_000) -> list[dict]:
    rows = []
    for path in sorted(DOC.glob("*/changelog*.gz")):
        text = gzip.decompress(path.read_bytes())
        if len(text) <= max_bytes:
            rows.append(
                {
                    "text": text.decode("utf-8", errors="replace"),
                    "date": iso_date(path),
                    "url": f"https://metadata.ftp-master.debian.org/changelogs/{path.parent.name}/{path.name}",
                }
            )
    return every_nth(rows, count)


def build(output: Path) -> dict[str, int]:
    for folder in ("warc", "jsonl", "parquet"):
        (output / folder).mkdir(parents=True, exist_ok=True)
        for old in (output / folder).iterdir():
            old.unlink()
    postgres = require(DOC / "postgresql-doc-15" / "html", "postgresql-doc-15")
    python = require((DOC / "python3.11" / "html").resolve(), "python3.11-doc")
    handbook = require(DOC / "debian-handbook" / "html", "debian-handbook")
    counts = {
        "postgresql_docs": build_warc_source(
            output,
            "postgresql_docs",
            html_pages(postgres, "https://www.postgresql.org/docs/15/", 500),
            media_pages(postgres, "https://www.postgresql.org/docs/15/", 3),
            120,
        ),
        "python_docs": build_warc_source(
            output,
            "python_docs",
            html_pages(python, "https://docs.python.org/3.11/", 240, 250_000),
            media_pages(python, "https://docs.python.org/3.11/", 4),
            60,
        ),
    }
    handbook_pages = []
    for language in HANDBOOK_LANGUAGES:
        url = f"https://debian-handbook.info/browse/{language}/stable/"
        handbook_pages.extend(html_pages(handbook / language, url, 32, 120_000))
    counts["debian_handbook"] = build_warc_source(
        output,
        "debian_handbook",
        handbook_pages,
        media_pages(handbook / "en-US", "https://debian-handbook.info/", 3),
        72,
    )
    records = copyright_records(700)
    compressor = zstandard.ZstdCompressor(level=10)
    for index, chunk in shards(records, 350):
        lines = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in chunk).encode()
        (output / "jsonl" / f"debian_copyright-{index:05d}.jsonl.zst").write_bytes(compressor.compress(lines))
    counts["debian_copyright"] = len(records)
    rows = changelog_rows(800)
    schema = pa.schema([("text", pa.large_string()), ("url", pa.string()), ("date", pa.string())])
    for index, chunk in shards(rows, 200):
        table = pa.Table.from_pylist(chunk, schema=schema)
        pq.write_table(table, output / "parquet" / f"debian_changelog-{index:05d}.parquet", compression="zstd")
    counts["debian_changelog"] = len(rows)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "sample_corpus")
    args = parser.parse_args()
    counts = build(args.output)
    for name, count in counts.items():
        print(f"{name:<18} {count:>6} documents")
    digest = hashlib.sha256()
    for path in sorted(args.output.rglob("*")):
        if path.is_file() and path.suffix != ".md":
            digest.update(path.name.encode() + path.read_bytes())
    size = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file())
    print(f"total {size / 1e6:.1f} MB, content sha256 {digest.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
