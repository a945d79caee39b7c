"""Build corpora that look more like the world than the bundled sample does, from real text, on demand.

Two corpora (neither is committed; both are deterministic from ``--seed`` and the text on this machine):

``multilingual``  a crawl of whole man pages in every language ``/usr/share/man/LANG`` holds on this machine
                  (Debian ships translations with man-db, dpkg, apt, coreutils, ...; more with the
                  ``manpages-de``, ``manpages-fr``, ... packages), each kept only when no paragraph of it is
                  English (fastText lid.176, the pipeline's own language ID), so a shard of one language
                  holds no English at all. One source per language; formats rotate by language: WARC
                  (the rendered text as HTML, a <p> per paragraph), JSONL (zstd) and Parquet (pages as UTF-8
                  text). A few English man pages form one more source, as a crawl would have some.

``distinct``      ``--documents N`` (any N; the 64x benchmark uses 1,048,576) documents of distinct real text
                  with exact, near and URL duplicates planted at known rates. The text is real sentences
                  from the bundled sample corpus (Debian documentation, 9 languages), recombined: see
                  :func:`original_text` for how distinctness is reached from a finite pool, honestly.
                  ``truth.parquet`` records every planted duplicate and what it copies.

``fixture``       the committed test fixture ``tests/fixtures/multilingual_crawl``: sections of man pages
                  (not whole pages, to stay a few tens of KB) in eight languages plus English.

Each output folder gets ``contents.json`` (what it holds: languages, documents, bytes, planted duplicates)
and ``recipe_inputs.json`` (the ``inputs:`` list to put into a recipe). See docs/proving_ground.md.

Prerequisites: groff (``apt-get install -y groff-base``, present wherever ``man`` works) for ``multilingual``
and ``fixture``; nothing beyond the project for ``distinct``.

    .venv/bin/python scripts/build_world_corpus.py multilingual --output /tmp/world/multilingual
    .venv/bin/python scripts/build_world_corpus.py distinct --documents 1048576 --output /tmp/world/x64
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

REPO = Path(__file__).resolve().parents[1]
MAN = Path("/usr/share/man")
NAMESPACE = uuid.UUID("6f1d2a4e-3b5c-5d7e-8f90-a1b2c3d4e5f6")  # fixed: WARC record ids derive from it
ZSTD_LEVEL = 3
FORMATS = ("warc", "jsonl", "parquet")
SUFFIX = {"warc": ".warc.gz", "jsonl": ".jsonl.zst", "parquet": ".parquet"}
#: /usr/share/man folder -> ISO 639-1 code the language ID model answers.
MAN_LANGUAGES = {
    "cs": "cs", "da": "da", "de": "de", "es": "es", "fi": "fi", "fr": "fr", "hu": "hu", "id": "id", "it": "it",
    "ja": "ja", "ko": "ko", "nl": "nl", "pl": "pl", "pt": "pt", "pt_BR": "pt", "ro": "ro", "ru": "ru",
    "sl": "sl", "sr": "sr", "sv": "sv", "tr": "tr", "uk": "uk", "zh_CN": "zh", "zh_TW": "zh",
}  # fmt: skip
#: A paragraph this long or longer that the language ID calls English (at this confidence) makes a page English.
MIN_PARAGRAPH_CHARS = 60
ENGLISH_SCORE = 0.5
ENGLISH_PAGES = 40  # English man pages in the crawl (one source), as a crawl would have some


# ------------------------------------------------------------------------------------------------------ rendering


def man_source(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def render(path: Path, device: str = "utf8") -> str:
    """The man page rendered by groff as plain UTF-8 text without overstrikes.

    ``-k`` runs preconv, which reads the page's own encoding declaration; the output depends on the file only.
    (groff-base has no HTML device: WARC pages wrap this text as HTML, one ``<p>`` per paragraph.)
    """
    command = ["groff", "-k", "-mandoc", f"-T{device}", "-P", "-cbou"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "SOURCE_DATE_EPOCH": "0"}
    done = subprocess.run(command, input=man_source(path), capture_output=True, env=env, timeout=60, check=False)
    text = done.stdout.decode("utf-8", errors="replace")
    return text


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def file_date(path: Path) -> str:
    return datetime.fromtimestamp(int(path.stat().st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------- language identification


class LanguageId:
    """The pipeline's own fastText language ID (lid.176), applied to whole texts or to paragraphs."""

    def __init__(self) -> None:
        from refinery.filters.language_id import FastTextLanguageId

        self._stage = FastTextLanguageId(min_score=0.0)
        self._stage.setup()

    def identify(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        if not texts:
            return []
        table = pa.table(
            {
                "id": [str(i) for i in range(len(texts))],
                "text": pa.array(list(texts), pa.large_string()),
                "source": ["lid"] * len(texts),
            }
        )
        kept = self._stage.process(table).kept
        return list(zip(kept["lang"].to_pylist(), kept["lang_score"].to_pylist(), strict=True))

    def english_paragraphs(self, text: str) -> int:
        long = [p for p in paragraphs(text) if len(p) >= MIN_PARAGRAPH_CHARS]
        return sum(lang == "en" and score >= ENGLISH_SCORE for lang, score in self.identify(long))


# ------------------------------------------------------------------------------------------------------ writers


def html_page(title: str, body_paragraphs: Sequence[str]) -> str:
    from html import escape

    body = "".join(f"<p>{escape(p)}</p>\n" for p in body_paragraphs)
    head = f'<head><meta charset="utf-8"><title>{escape(title)}</title></head>'
    return f"<!DOCTYPE html>\n<html>{head}\n<body>\n{body}</body></html>\n"


def warc_bytes(filename: str, documents: Sequence[dict[str, str]]) -> bytes:
    """A gzipped WARC of one response per document (``html`` payload); ids are UUID-5 of the URL and date."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    for document in documents:
        body = document["html"].encode("utf-8")
        record_id = f"<urn:uuid:{uuid.uuid5(NAMESPACE, document['url'] + document['date'])}>"
        headers = StatusAndHeaders(
            "response",
            [
                ("WARC-Type", "response"),
                ("WARC-Record-ID", record_id),
                ("WARC-Date", document["date"]),
                ("WARC-Target-URI", document["url"]),
                ("WARC-Filename", filename),
            ],
            protocol="WARC/1.1",
        )
        http = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))], "HTTP/1.1"
        )
        writer.write_record(
            writer.create_warc_record(
                document["url"], "response", payload=io.BytesIO(body), length=len(body),
                http_headers=http, warc_headers=headers,
            )
        )  # fmt: skip
    return buffer.getvalue()


def jsonl_bytes(documents: Sequence[dict[str, str]]) -> bytes:
    lines = "".join(json.dumps(_text_fields(d), ensure_ascii=False) + "\n" for d in documents)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(lines.encode())


def parquet_bytes(documents: Sequence[dict[str, str]]) -> bytes:
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string()), ("url", pa.string()), ("date", pa.string())])
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pylist([_text_fields(d) for d in documents], schema=schema)
    pq.write_table(table, sink, compression="zstd", row_group_size=2_000)
    return sink.getvalue().to_pybytes()


def _text_fields(document: dict[str, str]) -> dict[str, str]:
    return {key: document[key] for key in ("id", "text", "url", "date")}


def write_shard(folder: Path, source: str, index: int, fmt: str, documents: Sequence[dict[str, str]]) -> Path:
    """``folder/FMT/SOURCE-NNNNN.SUFFIX``, written under a temporary name and renamed into place."""
    path = folder / fmt / f"{source}-{index:05d}{SUFFIX[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = {"warc": lambda d: warc_bytes(path.name, d), "jsonl": jsonl_bytes, "parquet": parquet_bytes}[fmt]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(writer(documents))
    os.replace(temporary, path)
    return path


def recipe_inputs(folder: Path, sources: dict[str, str]) -> list[dict]:
    """The recipe ``inputs:`` list for ``sources`` (name -> format); ids come from the ``id`` field."""
    inputs = []
    for name, fmt in sorted(sources.items()):
        spec = {"name": name, "format": fmt, "paths": [f"{fmt}/{name}-*{SUFFIX[fmt]}"]}
        if fmt != "warc":
            spec["id_field"] = "id"
        inputs.append(spec)
    return inputs


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------- the multilingual crawl


@dataclass(frozen=True)
class ManPage:
    folder: str  # /usr/share/man folder name (de, pt_BR, ...) or "en"
    path: Path

    @property
    def url(self) -> str:
        return f"https://manpages.debian.org/{self.folder}/{self.path.parent.name}/{self.path.name.removesuffix('.gz')}"


def man_pages(folder: str, seed: int) -> list[ManPage]:
    """Every regular man page of one language folder in a seeded order (``en``: /usr/share/man/man*)."""
    roots = sorted(MAN.glob("man[1-9]")) if folder == "en" else sorted((MAN / folder).glob("man[1-9]"))
    files = sorted(p for root in roots for p in root.iterdir() if p.is_file() and not p.is_symlink())
    order = np.random.default_rng([seed, int(hashlib.sha256(folder.encode()).hexdigest()[:8], 16)]).permutation(
        len(files)
    )
    return [ManPage(folder, files[i]) for i in order]


def page_documents(page: ManPage, unit: str, max_sections: int) -> list[dict[str, str]]:
    """A page as one document (``file``) or as its sections (``section``), text and HTML alike."""
    text = render(page.path, "utf8")
    if unit == "file":
        return [{"id": page.url, "url": page.url, "date": file_date(page.path), "text": text,
                 "html": html_page(page.path.name, paragraphs(text))}]  # fmt: skip
    sections = [cap(s.strip()) for s in re.split(r"\n(?=\S)", text) if len(s.strip()) >= 200][:max_sections]
    return [
        {
            "id": f"{page.url}#{i}",
            "url": f"{page.url}#{i}",
            "date": file_date(page.path),
            "text": section,
            "html": html_page(page.path.name, paragraphs(section)),
        }
        for i, section in enumerate(sections)
    ]


#: The fixture's languages: eight besides English, four scripts, every format (formats rotate by position).
FIXTURE_FOLDERS = ("de", "fr", "es", "ja", "ru", "zh_CN", "pl", "nl", "en")


def cap(section: str, limit: int = 1_200) -> str:
    """The section's first paragraphs up to ``limit`` characters (at least one): keeps the fixture small."""
    kept: list[str] = []
    for paragraph in re.split(r"(\n\s*\n)", section):
        if kept and sum(map(len, kept)) + len(paragraph) > limit:
            break
        kept.append(paragraph)
    return "".join(kept).strip()


def build_multilingual(
    output: Path,
    seed: int,
    per_language: int,
    unit: str = "file",
    max_sections: int = 4,
    per_shard: int = 100,
    folders: Sequence[str] | None = None,
) -> dict:
    """The multilingual crawl (see the module docstring); returns what ``contents.json`` records."""
    lid = LanguageId()
    folders = list(folders or [f for f in MAN_LANGUAGES if (MAN / f).is_dir()] + ["en"])
    sources: dict[str, str] = {}
    contents: dict[str, dict] = {}
    for position, folder in enumerate(folders):
        expected = MAN_LANGUAGES.get(folder, "en")
        kept: list[dict[str, str]] = []
        refused = {"english_paragraphs": 0, "other_language": 0, "empty": 0}
        limit = ENGLISH_PAGES if folder == "en" and unit == "file" else per_language
        for page in man_pages(folder, seed):
            if len(kept) >= limit:
                break
            for document in page_documents(page, unit, max_sections):
                if len(document["text"]) < 200:
                    refused["empty"] += 1
                    continue
                [(lang, _)] = lid.identify([document["text"]])
                if lang != expected:
                    refused["other_language"] += 1
                elif expected != "en" and lid.english_paragraphs(document["text"]):
                    refused["english_paragraphs"] += 1
                else:
                    kept.append(document)
        kept = kept[:limit]
        if not kept:
            continue
        fmt = FORMATS[position % len(FORMATS)]
        source = f"man_{folder.lower()}"
        shards = [kept[i : i + per_shard] for i in range(0, len(kept), per_shard)]
        for index, shard in enumerate(shards):
            write_shard(output, source, index, fmt, shard)
        sources[source] = fmt
        contents[source] = {
            "language": expected, "format": fmt, "documents": len(kept), "shards": len(shards),
            "text_bytes": sum(len(d["text"].encode()) for d in kept), "refused": refused,
        }  # fmt: skip
    languages = sorted({c["language"] for c in contents.values()})
    summary = {
        "corpus": "multilingual", "seed": seed, "unit": unit, "languages": languages,
        "documents": sum(c["documents"] for c in contents.values()),
        "text_bytes": sum(c["text_bytes"] for c in contents.values()), "sources": contents,
        "english_rule": f"no paragraph of >= {MIN_PARAGRAPH_CHARS} chars identified as English at >= {ENGLISH_SCORE}",
    }  # fmt: skip
    write_json(output / "contents.json", summary)
    write_json(output / "recipe_inputs.json", recipe_inputs(output, sources))
    return summary


# ---------------------------------------------------------------------------------- the distinct corpus, planted dups

SENTENCE_SPLIT = re.compile(r"(?<=[.!?。])\s+|\n+")
BASE_DATE = datetime(2024, 1, 1, tzinfo=UTC)
KINDS = ("original", "exact", "near", "url")


@dataclass(frozen=True)
class SentencePool:
    """The sentences by language: a document draws all its sentences from one language, as a page would."""

    sentences: list[str]
    languages: list[str]  # sorted
    by_language: list[np.ndarray]  # indexes into ``sentences``, per language
    shares: np.ndarray  # each language's share of the sentences: how often a document is in it

    def __len__(self) -> int:
        return len(self.sentences)


MIN_SENTENCE_LANGUAGE_SCORE = 0.5
MIN_LANGUAGE_SENTENCES = 500  # rarer languages would repeat their few sentences too often


def sentence_pool(cache: Path) -> SentencePool:
    """Every distinct sentence (20-400 characters) of the bundled sample corpus's extracted text, by language.

    The sample is committed, so the pool (and every document built from it) is the same on any machine. Each
    sentence's language comes from the pipeline's language ID; sentences it is unsure of (score < 0.5) and
    languages with fewer than 500 sentences are left out.
    """
    cached = cache / "sentences.parquet"
    if not cached.exists():
        sys.path.insert(0, str(REPO / "benchmarks"))
        from harness import load_documents

        texts = load_documents(REPO / "sample_corpus", cache)["text"].to_pylist()
        found = sorted(
            {s.strip() for text in texts for s in SENTENCE_SPLIT.split(text or "") if 20 <= len(s.strip()) <= 400}
        )
        identified = LanguageId().identify(found)
        table = pa.table(
            {
                "sentence": pa.array(found, pa.large_string()),
                "lang": [lang for lang, _ in identified],
                "score": pa.array([score for _, score in identified], pa.float32()),
            }
        )
        cache.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, cached)
    table = pq.read_table(cached)
    sure = table.filter(pa.compute.greater_equal(table["score"], MIN_SENTENCE_LANGUAGE_SCORE))
    sentences = sure["sentence"].to_pylist()
    langs = np.array(sure["lang"].to_pylist(), dtype=object)
    names, counts = np.unique(langs, return_counts=True)
    languages = sorted(str(n) for n, c in zip(names, counts, strict=True) if c >= MIN_LANGUAGE_SENTENCES)
    by_language = [np.flatnonzero(langs == lang) for lang in languages]
    sizes = np.array([len(i) for i in by_language], dtype=np.float64)
    return SentencePool(sentences, languages, by_language, sizes / sizes.sum())


def original_text(slot: int, seed: int, pool: SentencePool) -> str:
    """Document ``slot``'s text: 2-9 paragraphs of 1-5 sentences each of one language, by a per-slot RNG.

    The language is drawn with the pool's shares (mostly English, as the sample is), then every sentence
    from that language's sentences.

    Why this is distinct text: each document is a fresh draw of ~16 sentences out of a pool of ~10^5, so two
    documents share a sentence rarely and share a line (a paragraph of several sentences) almost never; exact
    collisions are checked after generation (``contents.json`` ``collisions``: each is redrawn). What it is
    not: coherent prose. Sentences are real (word and character statistics, languages and scripts of the
    Debian documentation they come from) but their order is random, and each sentence recurs in about
    N * 16 / len(pool) documents: at 1M documents ~100 times, so MinHash sees some shared 5-grams between
    unrelated documents (well below its 0.8 threshold) and line dedup sees single-sentence lines repeat.
    """
    rng = np.random.default_rng([seed, slot, 0])
    language = int(rng.choice(len(pool.languages), p=pool.shares))
    counts = rng.integers(1, 6, size=int(rng.integers(2, 10)))
    candidates = pool.by_language[language]
    picks = candidates[rng.integers(0, len(candidates), size=int(counts.sum()))]
    parts, start = [], 0
    for count in counts:
        parts.append(" ".join(pool.sentences[i] for i in picks[start : start + count]))
        start += count
    return "\n\n".join(parts)


def near_copy(text: str, slot: int, seed: int) -> str:
    """``text`` with one word replaced per 300 words (at least one): a 5-gram Jaccard of ~0.85-0.97."""
    rng = np.random.default_rng([seed, slot, 2])
    words = text.split(" ")
    for position in rng.integers(0, len(words), size=max(1, len(words) // 300)):
        words[position] = "revised"
    return " ".join(words)


def slot_plan(slot: int, seed: int, rates: dict[str, float]) -> tuple[str, int]:
    """(kind, the slot it copies) for one slot: duplicates copy a uniformly chosen earlier original."""
    if slot == 0:
        return "original", 0
    rng = np.random.default_rng([seed, slot, 1])
    draw = rng.random()
    kind = "original"
    edge = 0.0
    for name in ("exact", "near", "url"):
        edge += rates[name]
        if draw < edge:
            kind = name
            break
    if kind == "original":
        return kind, slot
    target = int(rng.integers(0, slot))
    target_kind, target_of_target = slot_plan(target, seed, rates)
    if target_kind != "original":  # copy an original, never a copy (a copy's target is always an original)
        target = target_of_target
    return kind, target


def slot_document(slot: int, seed: int, rates: dict[str, float], pool: SentencePool) -> tuple[dict[str, str], dict]:
    kind, target = slot_plan(slot, seed, rates)
    base = original_text(target, seed, pool)
    date = (BASE_DATE + timedelta(minutes=slot)).strftime("%Y-%m-%dT%H:%M:%SZ")
    url = f"https://world.refinery.test/{target // 1000:04d}/{target}.html"
    if kind == "exact":
        text, url = base, f"https://mirror.refinery.test/{slot}.html"
    elif kind == "near":
        text, url = near_copy(base, slot, seed), f"https://mirror.refinery.test/{slot}.html"
    elif kind == "url":  # the same page crawled again later, its text since rewritten
        text = original_text(slot, seed, pool)
    else:
        text = base
    document = {"id": f"d{slot:09d}", "url": url, "date": date, "text": text}
    return document, {"id": document["id"], "kind": kind, "copies": f"d{target:09d}"}


def _build_distinct_shard(job: dict) -> dict:
    pool = sentence_pool(Path(job["cache"]))
    documents, truth = [], []
    for slot in range(job["first"], job["last"]):
        document, record = slot_document(slot, job["seed"], job["rates"], pool)
        if job["format"] == "warc":
            document["html"] = html_page(document["id"], paragraphs(document["text"]))
        documents.append(document)
        truth.append(record)
    write_shard(Path(job["output"]), "world", job["index"], job["format"], documents)
    hashes = [int.from_bytes(hashlib.blake2b(d["text"].encode(), digest_size=8).digest(), "little") for d in documents]
    return {
        "truth": truth, "hashes": hashes, "text_bytes": sum(len(d["text"].encode()) for d in documents),
    }  # fmt: skip


def build_distinct(
    output: Path, documents: int, seed: int, rates: dict[str, float], per_shard: int, workers: int, cache: Path
) -> dict:
    """The distinct corpus (see the module docstring); returns what ``contents.json`` records."""
    sentence_pool(cache)  # once, before the workers read it
    shards = [(i, f, min(f + per_shard, documents)) for i, f in enumerate(range(0, documents, per_shard))]
    jobs = [
        {
            "index": i,
            "first": f,
            "last": last,
            "seed": seed,
            "rates": rates,
            "output": str(output),
            "cache": str(cache),
            "format": FORMATS[i % len(FORMATS)],
        }
        for i, f, last in shards
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_build_distinct_shard, jobs))
    truth = [record for result in results for record in result["truth"]]
    kinds = [record["kind"] for record in truth]
    hashes = np.array([h for result in results for h in result["hashes"]], dtype=np.uint64)
    original = np.array([k in ("original", "url") for k in kinds])
    unique_originals = len(np.unique(hashes[original]))
    pq.write_table(pa.Table.from_pylist(truth), output / "truth.parquet")
    summary = {
        "corpus": "distinct", "seed": seed, "documents": documents, "shards": len(shards), "per_shard": per_shard,
        "text_bytes": sum(r["text_bytes"] for r in results), "rates": rates,
        "planted": {kind: kinds.count(kind) for kind in KINDS},
        "distinct_texts_among_originals": unique_originals, "collisions": int(original.sum()) - unique_originals,
        "pool_sentences": len(sentence_pool(cache)),
        "pool_languages": dict(
            zip(sentence_pool(cache).languages, [round(float(x), 4) for x in sentence_pool(cache).shares], strict=True)
        ),
    }  # fmt: skip
    write_json(output / "contents.json", summary)
    inputs = [
        {"name": f"world_{fmt}", "format": fmt, "paths": [f"{fmt}/world-*{SUFFIX[fmt]}"]}
        | ({} if fmt == "warc" else {"id_field": "id"})
        for fmt in sorted({job["format"] for job in jobs})
    ]
    write_json(output / "recipe_inputs.json", inputs)
    return summary


# ---------------------------------------------------------------------------------------------------------- main


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="corpus", required=True)
    multilingual = commands.add_parser("multilingual", help="whole man pages in every language here, no English")
    multilingual.add_argument("--per-language", type=int, default=1_000)
    fixture = commands.add_parser("fixture", help="the small committed test fixture (man page sections)")
    fixture.add_argument("--per-language", type=int, default=24)
    distinct = commands.add_parser("distinct", help="N distinct documents with planted duplicates")
    distinct.add_argument("--documents", type=int, required=True)
    distinct.add_argument("--exact-rate", type=float, default=0.03)
    distinct.add_argument("--near-rate", type=float, default=0.03)
    distinct.add_argument("--url-rate", type=float, default=0.02)
    distinct.add_argument("--per-shard", type=int, default=2_048)
    distinct.add_argument("--workers", type=int, default=2)
    distinct.add_argument("--cache", type=Path, default=Path("/tmp/refinery-world-cache"))
    for command in (multilingual, fixture, distinct):
        command.add_argument("--output", type=Path, required=True)
        command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(None if argv is None else list(argv))
    args.output.mkdir(parents=True, exist_ok=True)
    if args.corpus == "multilingual":
        summary = build_multilingual(args.output, args.seed, args.per_language)
    elif args.corpus == "fixture":
        summary = build_multilingual(
            args.output, args.seed, args.per_language, unit="section", max_sections=3, folders=FIXTURE_FOLDERS
        )
    else:
        rates = {"exact": args.exact_rate, "near": args.near_rate, "url": args.url_rate}
        summary = build_distinct(
            args.output, args.documents, args.seed, rates, args.per_shard, args.workers, args.cache
        )
    summary.pop("sources", None)
    print(json.dumps(summary, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
