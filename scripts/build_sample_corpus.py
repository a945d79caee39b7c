"""Build the bundled sample corpus (``sample_corpus/``) from Debian documentation packages installed on this machine.

The pipeline needs real text with real boilerplate in every input format it reads, small enough to ship in the
repository and free to redistribute. Debian's documentation packages are exactly that, so this script samples them
into the layout ``recipes/sample.yaml`` reads:

* ``warc/postgresql_docs-NNNNN.warc.gz``   PostgreSQL 15 manual (``postgresql-doc-15``), English
* ``warc/python_docs-NNNNN.warc.gz``       Python 3.11 documentation (``python3.11-doc``), English
* ``warc/debian_handbook-NNNNN.warc.gz``   The Debian Administrator's Handbook (``debian-handbook``), 9 languages
* ``jsonl/debian_copyright-NNNNN.jsonl.zst``  ``/usr/share/doc/*/copyright`` (licence texts, many near-duplicates)
* ``parquet/debian_changelog-NNNNN.parquet``  ``/usr/share/doc/*/changelog*.gz`` (repetitive, low-quality text)

Everything is deterministic: inputs are sorted and sampled with an even stride, WARC record ids are UUID-5 of the
URL and record type, dates come from file modification times (fixed by the .deb), and neither gzip nor zstd nor
Parquet embeds the time of the run. Two runs from the same package versions give byte-identical files.

    apt-get install -y --no-install-recommends debian-handbook postgresql-doc-15 python3.11-doc
    .venv/bin/python scripts/build_sample_corpus.py [--output sample_corpus]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, zip_longest
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
DOC = Path("/usr/share/doc")
# Fixed namespace for WARC-Record-IDs: changing it would change every record id (and every file's bytes).
NAMESPACE = uuid.UUID("0b3f5c1e-8a4d-5e0f-9c2b-7d6e1a4f3b20")
SOFTWARE = "refinery scripts/build_sample_corpus.py"

POSTGRES_PAGES = 250
PYTHON_PAGES = 240
HANDBOOK_PAGES_PER_LANGUAGE = 40
NON_HTML_PER_SOURCE = 4
WARC_DOCUMENTS_PER_SHARD = 125
CHANGELOG_DOCUMENTS = 600
TABLE_DOCUMENTS_PER_SHARD = 500
MIN_SHARDS = 2
MIN_HTML_BYTES = 2_000  # smaller pages are redirects and stubs
MAX_CHANGELOG_BYTES = 200_000  # decompressed; the few larger ones would dominate the corpus size
MAX_NON_HTML_BYTES = 100_000
# A handbook page counts as translated when at most this share of its main text (UTF-8 bytes, so that CJK and
# Latin scripts weigh alike) consists of lines copied verbatim from the en-US page: translations are partial.
MAX_ENGLISH_SHARE = 0.5
ZSTD_LEVEL = 10

HANDBOOK_LANGUAGES = ("en-US", "de-DE", "fr-FR", "es-ES", "it-IT", "ja-JP", "ru-RU", "pt-BR", "zh-CN")
NON_HTML_TYPES = {
    ".css": "text/css",
    ".js": "application/javascript",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
}
HTML_TYPE = "text/html"


@dataclass(frozen=True)
class Page:
    """One file to serve as a WARC response: where it lies, the URL it is served under, its media type."""

    path: Path
    url: str
    media_type: str = HTML_TYPE


@dataclass(frozen=True)
class Package:
    """What dpkg knows about an installed binary package: enough to build its Debian metadata URLs."""

    name: str
    source: str
    source_version: str
    version: str


@dataclass(frozen=True)
class SourceReport:
    """What one source contributed, for the summary printed at the end."""

    name: str
    documents: int
    non_html: int
    shards: int
    size: int


# --------------------------------------------------------------------------------------------------- generic helpers


def require_folder(folder: Path, package: str) -> Path:
    """The folder a package installs, or a clear exit naming the apt package when it is not installed."""
    if not folder.is_dir():
        raise SystemExit(
            f"error: {folder} not found; the apt package {package} provides it:\n"
            f"    apt-get install -y --no-install-recommends {package}"
        )
    return folder.resolve()


def file_date(path: Path) -> str:
    """The file's modification time as ISO 8601 UTC to the second: fixed by the .deb, so stable across installs."""
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` items at an even stride over ``items``: deterministic and covering the whole (sorted) range."""
    if len(items) <= count:
        return list(items)
    return [items[index * len(items) // count] for index in range(count)]


def split_shards(items: Sequence[T], per_shard: int) -> list[list[T]]:
    """Near-equal shards of about ``per_shard`` items, at least ``MIN_SHARDS`` so multi-file reading is exercised."""
    count = max(MIN_SHARDS, round(len(items) / per_shard))
    return [list(items[index * len(items) // count : (index + 1) * len(items) // count]) for index in range(count)]


def decode_text(data: bytes) -> str:
    """UTF-8, or Latin-1 for the few old Debian files written before UTF-8 (it never fails and never guesses)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` in one step, so that a reader (a test running meanwhile) never sees half a shard."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_shards(folder: Path, prefix: str, suffix: str, payloads: Sequence[bytes]) -> int:
    """Write ``prefix-NNNNN<suffix>`` files and remove older shards of the same prefix; returns the bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    names = {f"{prefix}-{index:05d}{suffix}" for index in range(len(payloads))}
    for stale in folder.glob(f"{prefix}-[0-9][0-9][0-9][0-9][0-9]{suffix}"):
        if stale.name not in names:
            stale.unlink()
    for index, payload in enumerate(payloads):
        write_atomically(folder / f"{prefix}-{index:05d}{suffix}", payload)
    return sum(len(payload) for payload in payloads)


# ------------------------------------------------------------------------------------------------ choosing the pages


def html_files(root: Path, max_bytes: int) -> list[Path]:
    """Real HTML pages under ``root``, sorted; symlinks are skipped because they point outside the package."""
    return sorted(
        path
        for path in root.rglob("*.html")
        if not path.is_symlink() and path.is_file() and MIN_HTML_BYTES < path.stat().st_size <= max_bytes
    )


def non_html_files(root: Path, count: int) -> list[Path]:
    """``count`` stylesheets, scripts and images, one media type after another so the first shard holds a mix."""
    by_suffix: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        wanted = path.suffix in NON_HTML_TYPES and path.is_file() and not path.is_symlink()
        if wanted and path.stat().st_size <= MAX_NON_HTML_BYTES:
            by_suffix.setdefault(path.suffix, []).append(path)
    interleaved = chain.from_iterable(zip_longest(*(by_suffix[suffix] for suffix in sorted(by_suffix))))
    return [path for path in interleaved if path is not None][:count]


def pages_under(root: Path, url_base: str, paths: Iterable[Path]) -> list[Page]:
    """Pages served from ``url_base`` at their path relative to ``root``, with the media type of their suffix."""
    return [
        Page(path, url_base + path.relative_to(root).as_posix(), NON_HTML_TYPES.get(path.suffix, HTML_TYPE))
        for path in paths
    ]


def main_text_lines(path: Path) -> list[str]:
    """The non-empty lines of the page's main content as resiliparse extracts it (navigation removed)."""
    text = extract_plain_text(HTMLTree.parse(decode_text(path.read_bytes())), main_content=True)
    return [line.strip() for line in text.splitlines() if line.strip()]


def english_share(lines: Sequence[str], english_lines: set[str]) -> float:
    """Share (by UTF-8 bytes) of a page's lines that appear verbatim in the English original: untranslated text."""
    total = sum(len(line.encode()) for line in lines)
    copied = sum(len(line.encode()) for line in lines if line in english_lines)
    return copied / total if total else 1.0


def translated_handbook_files(handbook: Path, language: str) -> list[Path]:
    """Pages of one handbook translation that are mostly translated; the package leaves many pages in English."""
    files = html_files(handbook / language, max_bytes=150_000)
    if language == "en-US":
        return files
    translated = []
    for path in files:
        original = handbook / "en-US" / path.name
        if not original.is_file():
            continue
        if english_share(main_text_lines(path), set(main_text_lines(original))) <= MAX_ENGLISH_SHARE:
            translated.append(path)
    return translated


def handbook_pages(handbook: Path) -> tuple[list[Page], dict[str, int]]:
    """Handbook pages of every language, interleaved so that each shard (the first one too) holds all languages."""
    per_language: list[list[Page]] = []
    counts: dict[str, int] = {}
    for language in HANDBOOK_LANGUAGES:
        files = spread(translated_handbook_files(handbook, language), HANDBOOK_PAGES_PER_LANGUAGE)
        per_language.append(
            pages_under(handbook / language, f"https://debian-handbook.info/browse/{language}/stable/", files)
        )
        counts[language] = len(files)
    interleaved = chain.from_iterable(zip_longest(*per_language))
    return [page for page in interleaved if page is not None], counts


# ------------------------------------------------------------------------------------------------------ WARC writing


def record_id(uri: str, record_type: str) -> str:
    """A UUID-5 record id from the URI and record type: unique per record, identical on every run."""
    return f"<urn:uuid:{uuid.uuid5(NAMESPACE, f'{uri} {record_type}')}>"


def warc_headers(record_type: str, uri: str, date: str, extra: Sequence[tuple[str, str]] = ()) -> StatusAndHeaders:
    """WARC headers in Common Crawl's order, with id and date given so that warcio does not invent them."""
    headers = [("WARC-Type", record_type), ("WARC-Date", date), ("WARC-Record-ID", record_id(uri, record_type))]
    if uri.startswith("http"):
        headers.append(("WARC-Target-URI", uri))
    return StatusAndHeaders("", [*headers, *extra], protocol="WARC/1.0")


def warcinfo_record(writer: WARCWriter, filename: str, date: str, description: str) -> ArcWarcRecord:
    """The ``warcinfo`` record that opens each file, describing where its pages come from."""
    fields = {
        "software": SOFTWARE,
        "format": "WARC File Format 1.0",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.0/",
        "description": description,
    }
    body = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode()
    headers = warc_headers("warcinfo", filename, date, [("WARC-Filename", filename)])
    return writer.create_warc_record(
        "",
        "warcinfo",
        payload=io.BytesIO(body),
        length=len(body),
        warc_headers=headers,
        warc_content_type="application/warc-fields",
    )


def request_record(writer: WARCWriter, page: Page, date: str, warcinfo_id: str) -> ArcWarcRecord:
    """The GET request a crawler would have sent for the page."""
    url = urlsplit(page.url)
    http = StatusAndHeaders(
        f"GET {url.path} HTTP/1.1",
        [("Host", url.netloc), ("User-Agent", SOFTWARE), ("Accept", "*/*")],
        is_http_request=True,
    )
    extra = [("WARC-Warcinfo-ID", warcinfo_id), ("WARC-Concurrent-To", record_id(page.url, "response"))]
    return writer.create_warc_record(
        page.url, "request", http_headers=http, warc_headers=warc_headers("request", page.url, date, extra)
    )


def response_record(writer: WARCWriter, page: Page, date: str, warcinfo_id: str) -> ArcWarcRecord:
    """The HTTP 200 response carrying the file, with ``WARC-Identified-Payload-Type`` as Common Crawl sets it."""
    body = page.path.read_bytes()
    content_type = f"{page.media_type}; charset=utf-8" if page.media_type == HTML_TYPE else page.media_type
    http = StatusAndHeaders(
        "200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))], protocol="HTTP/1.1"
    )
    extra = [("WARC-Warcinfo-ID", warcinfo_id), ("WARC-Identified-Payload-Type", page.media_type)]
    return writer.create_warc_record(
        page.url,
        "response",
        payload=io.BytesIO(body),
        length=len(body),
        http_headers=http,
        warc_headers=warc_headers("response", page.url, date, extra),
    )


def warc_bytes(filename: str, pages: Sequence[Page], description: str) -> bytes:
    """One gzipped WARC file: warcinfo, then a request and a response per page, one gzip member per record.

    warcio's gzip members come from ``zlib`` with a zero timestamp, so the output depends on the inputs only.
    """
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    info_date = max(file_date(page.path) for page in pages)
    writer.write_record(warcinfo_record(writer, filename, info_date, description))
    warcinfo_id = record_id(filename, "warcinfo")
    for page in pages:
        date = file_date(page.path)
        writer.write_record(request_record(writer, page, date, warcinfo_id))
        writer.write_record(response_record(writer, page, date, warcinfo_id))
    return buffer.getvalue()


def write_warc_source(
    output: Path, name: str, pages: Sequence[Page], non_html: Sequence[Page], description: str
) -> SourceReport:
    """All shards of one WARC source; the non-HTML responses go first in the first shard."""
    shards = split_shards(pages, WARC_DOCUMENTS_PER_SHARD)
    shards[0] = [*non_html, *shards[0]]
    payloads = [warc_bytes(f"{name}-{index:05d}.warc.gz", shard, description) for index, shard in enumerate(shards)]
    size = write_shards(output / "warc", name, ".warc.gz", payloads)
    return SourceReport(name, len(pages), len(non_html), len(shards), size)


# ------------------------------------------------------------------------------------- copyright files and changelogs


def installed_packages() -> dict[str, Package]:
    """Installed binary packages by name, from dpkg: source package and versions, to build Debian's URLs."""
    try:
        listing = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${source:Package}\t${source:Version}\t${Version}\n"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except FileNotFoundError as error:
        raise SystemExit("error: dpkg-query not found; this script reads a Debian system's /usr/share/doc") from error
    packages: dict[str, Package] = {}
    for line in sorted(listing.splitlines()):
        name, source, source_version, version = line.split("\t")
        packages.setdefault(name, Package(name, source, source_version, version))
    return packages


def package_folders(packages: dict[str, Package]) -> list[Path]:
    """``/usr/share/doc/<package>`` folders of installed packages, sorted; symlinked folders would duplicate files."""
    return sorted(path for path in DOC.iterdir() if path.name in packages and path.is_dir() and not path.is_symlink())


def metadata_url(package: Package, kind: str, installed_path: Path) -> str:
    """Debian's metadata URL for the source package's ``kind`` (copyright or changelog).

    Several binary packages of one source ship the same file, and upstream changelogs have no URL of their own, so
    any file other than the source-named package's own gets its installed path as a fragment: every URL is unique.
    """
    prefix = package.source[:4] if package.source.startswith("lib") else package.source[0]
    version = package.source_version.split(":", 1)[-1]
    url = f"https://metadata.ftp-master.debian.org/changelogs//main/{prefix}/{package.source}/"
    url += f"{package.source}_{version}_{kind}"
    canonical = "copyright" if kind == "copyright" else "changelog.Debian.gz"
    if package.name != package.source or installed_path.name != canonical:
        url += f"#{installed_path}"
    return url


def copyright_documents(packages: dict[str, Package]) -> list[dict[str, str]]:
    """Every installed package's copyright file: licence texts, many of them near-duplicates of each other."""
    documents = []
    for folder in package_folders(packages):
        path = folder / "copyright"
        if path.is_file():
            url = metadata_url(packages[folder.name], "copyright", path)
            documents.append({"text": decode_text(path.read_bytes()), "url": url, "date": file_date(path)})
    return documents


def changelog_documents(packages: dict[str, Package], count: int) -> list[dict[str, str]]:
    """``count`` changelogs (Debian and upstream) up to ``MAX_CHANGELOG_BYTES`` decompressed, evenly spread."""
    documents = []
    for folder in package_folders(packages):
        for path in sorted(folder.glob("changelog*.gz")):
            if path.is_symlink() or not path.is_file():
                continue
            data = gzip.decompress(path.read_bytes())
            if len(data) <= MAX_CHANGELOG_BYTES:
                url = metadata_url(packages[folder.name], "changelog", path)
                documents.append({"text": decode_text(data), "url": url, "date": file_date(path)})
    return spread(documents, count)


def jsonl_zst_bytes(documents: Sequence[dict[str, str]]) -> bytes:
    """One zstd-compressed JSONL shard; the frame carries no timestamp, so equal input gives equal bytes."""
    lines = "".join(json.dumps(document, ensure_ascii=False) + "\n" for document in documents)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(lines.encode())


def parquet_bytes(documents: Sequence[dict[str, str]]) -> bytes:
    """One zstd Parquet shard with ``text`` as large_string (changelogs can be long) and ``url``/``date`` strings."""
    schema = pa.schema([("text", pa.large_string()), ("url", pa.string()), ("date", pa.string())])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(list(documents), schema=schema), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def write_copyright_source(output: Path, packages: dict[str, Package]) -> SourceReport:
    """The ``debian_copyright`` JSONL shards."""
    documents = copyright_documents(packages)
    shards = split_shards(documents, TABLE_DOCUMENTS_PER_SHARD)
    size = write_shards(output / "jsonl", "debian_copyright", ".jsonl.zst", [jsonl_zst_bytes(s) for s in shards])
    return SourceReport("debian_copyright", len(documents), 0, len(shards), size)


def write_changelog_source(output: Path, packages: dict[str, Package]) -> SourceReport:
    """The ``debian_changelog`` Parquet shards."""
    documents = changelog_documents(packages, CHANGELOG_DOCUMENTS)
    shards = split_shards(documents, TABLE_DOCUMENTS_PER_SHARD)
    size = write_shards(output / "parquet", "debian_changelog", ".parquet", [parquet_bytes(s) for s in shards])
    return SourceReport("debian_changelog", len(documents), 0, len(shards), size)


# -------------------------------------------------------------------------------------------------------- the build


def describe(packages: dict[str, Package], package: str, what: str) -> str:
    """The warcinfo description: the document and the exact package version it was built from."""
    version = packages[package].version if package in packages else "unknown version"
    return f"{what}, HTML, from the Debian package {package} {version}"


def build(output: Path) -> tuple[list[SourceReport], dict[str, int]]:
    """Write every source into ``output``; returns what each contributed and the handbook pages per language."""
    postgres = require_folder(DOC / "postgresql-doc-15" / "html", "postgresql-doc-15")
    python = require_folder(DOC / "python3.11-doc" / "html", "python3.11-doc")
    handbook = require_folder(DOC / "debian-handbook" / "html", "debian-handbook")
    packages = installed_packages()

    postgres_url = "https://www.postgresql.org/docs/15/"
    python_url = "https://docs.python.org/3.11/"
    handbook_url = "https://debian-handbook.info/browse/en-US/stable/"
    handbook_documents, languages = handbook_pages(handbook)
    reports = [
        write_warc_source(
            output,
            "postgresql_docs",
            pages_under(postgres, postgres_url, spread(html_files(postgres, 300_000), POSTGRES_PAGES)),
            pages_under(postgres, postgres_url, non_html_files(postgres, NON_HTML_PER_SOURCE)),
            describe(packages, "postgresql-doc-15", "PostgreSQL 15 manual"),
        ),
        write_warc_source(
            output,
            "python_docs",
            pages_under(python, python_url, spread(html_files(python, 250_000), PYTHON_PAGES)),
            pages_under(python, python_url, non_html_files(python, NON_HTML_PER_SOURCE)),
            describe(packages, "python3.11-doc", "Python 3.11 documentation"),
        ),
        write_warc_source(
            output,
            "debian_handbook",
            handbook_documents,
            pages_under(handbook / "en-US", handbook_url, non_html_files(handbook / "en-US", NON_HTML_PER_SOURCE)),
            describe(packages, "debian-handbook", "The Debian Administrator's Handbook"),
        ),
        write_copyright_source(output, packages),
        write_changelog_source(output, packages),
    ]
    return reports, languages


def content_digest(output: Path) -> str:
    """SHA-256 over the names and bytes of every shard, to compare two builds at a glance."""
    digest = hashlib.sha256()
    for path in sorted(output.rglob("*")):
        if path.is_file() and path.suffix != ".md":
            digest.update(path.relative_to(output).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def main() -> None:
    """Parse ``--output``, build, print what each source contributed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--output", type=Path, default=REPO / "sample_corpus", help="corpus folder (default: sample_corpus/)"
    )
    output = parser.parse_args().output
    reports, languages = build(output)
    print(f"{'source':<18} {'documents':>9} {'non-HTML':>8} {'shards':>6} {'bytes':>10}")
    for report in reports:
        print(f"{report.name:<18} {report.documents:>9} {report.non_html:>8} {report.shards:>6} {report.size:>10}")
    print("debian_handbook pages per language: " + ", ".join(f"{lang} {n}" for lang, n in languages.items()))
    total = sum(report.size for report in reports)
    print(f"total {total / 1e6:.2f} MB in {output}, content sha256 {content_digest(output)}")


if __name__ == "__main__":
    main()
