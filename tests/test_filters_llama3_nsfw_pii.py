"""Llama 3 extras, NSFW and PII stages on real text: what triggers each rule, and what does not."""

from __future__ import annotations

import base64
import json
import tarfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from run_helpers import output_digests

from refinery.filters.line_repetition import LineNgramRepetitionFilter
from refinery.filters.pii import PiiFilter
from refinery.filters.url_blocklist import ARCHIVE, UrlBlocklistFilter, datatrove_assets
from refinery.filters.word_lists import AdultWordsFilter, DirtyWordsFilter, profanity_lists
from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe


def table(texts: list[str], **columns: list) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts, **columns})


def by_source(documents: pa.Table, source: str) -> list[str]:
    return documents.filter(pc.equal(documents["source"], source))["text"].to_pylist()


def test_line_repetition_removes_log_like_lines_only(real_documents):
    handbook = by_source(real_documents, "debian_handbook")
    changelog = by_source(real_documents, "debian_changelog")[0]
    entry = next(line.strip() for line in changelog.splitlines() if len(line.split()) >= 6)
    log_dump = " ".join([entry] * 6)
    page = handbook[0]
    stage = LineNgramRepetitionFilter()
    result = stage.process(table([page + "\n" + log_dump, page, log_dump]))
    assert result.kept["text"].to_pylist() == [page, page], "only the repetitive line goes"
    assert result.rejected["reason"].to_pylist() == ["line_ngram_repetition:all_lines_removed"]
    assert result.counters == {"lines_removed": 2, "chars_removed": 2 * len(log_dump) + 1}


def test_dirty_words_counts_per_language(real_documents):
    german = next(
        t
        for t, lang in zip(real_documents["text"].to_pylist(), real_documents["lang"].to_pylist(), strict=True)
        if lang == "de"
    )
    words = profanity_lists()["de"]
    stuffed = german + "\n" + " ".join(words[:30])
    stage = DirtyWordsFilter(max_count=20)
    result = stage.process(table([german, stuffed, stuffed], lang=["de", "de", "ja"]))
    assert result.kept["id"].to_pylist() == ["d0", "d2"], "German words count in German documents only"
    assert result.rejected["reason"].to_pylist() == ["dirty_words:too_many"]
    dense = stage.process(table([" ".join(german.split()[:200]) + " " + " ".join(words[:5])], lang=["de"]))
    assert dense.rejected["reason"].to_pylist() == ["dirty_words:too_dense"]


def test_adult_words_ignore_innocent_substrings(real_documents):
    page = by_source(real_documents, "postgresql_docs")[0]
    stage = AdultWordsFilter()
    assert stage.counts(table(["Classic assessment of the passes in a class hierarchy."]))[0] == 0
    result = stage.process(table([page, page + " porn xxx bdsm porn xxx bdsm porn xxx bdsm porn xxx"]))
    assert result.kept["id"].to_pylist() == ["d0"]
    assert result.rejected["reason"].to_pylist() == ["adult_words:too_many"]


@pytest.fixture(scope="module")
def listed() -> dict[str, str]:
    with tarfile.open(datatrove_assets() / ARCHIVE, "r:gz") as tar:
        domains = tar.extractfile("domains").read(4096).decode().splitlines()
        urls = tar.extractfile("urls").read(4096).decode().splitlines()
    subwords = (datatrove_assets() / "banned_subwords.txt").read_text().splitlines()
    return {"domain": domains[1], "url": urls[1], "subword": next(w for w in subwords if w and w[0] != "#")}


def test_url_blocklist_rules(real_documents, listed, tmp_path):
    real_urls = real_documents["url"].to_pylist()[:200]
    stage = UrlBlocklistFilter(cache_dir=str(tmp_path))
    urls = [
        *real_urls,
        f"https://{listed['domain']}/index.html",
        f"http://videos.{listed['domain']}/",
        f"http://{listed['url']}",
        "https://example.com/free-porn-videos",
        "https://example.org/boobs-and-babes",
        f"https://example.net/my{listed['subword']}page",
        None,
    ]
    result = stage.process(table([f"page {i}" for i in range(len(urls))], url=urls))
    assert result.kept.num_rows == len(real_urls) + 1, "real documentation URLs and URL-less documents stay"
    assert result.rejected["reason"].to_pylist() == [
        "url_blocklist:domain",
        "url_blocklist:domain",
        "url_blocklist:url",
        "url_blocklist:hard_banned_word",
        "url_blocklist:soft_banned_words",
        "url_blocklist:banned_subword",
    ]
    assert list(tmp_path.glob("url-blocklist-*.npy")), "the digest array is cached for the next worker"


def test_pii_rejects_heavy_pages_and_masks_the_rest(real_documents):
    copyright_texts = by_source(real_documents, "debian_copyright")
    heavy = max(copyright_texts, key=lambda t: t.count("@"))
    page = by_source(real_documents, "postgresql_docs")[0]
    contact = page + "\nWrite to jane.doe@example.org or call +1 415-555-0132 from 192.168.1.20 (version 15.4.1)."
    result = PiiFilter().process(table([heavy, contact, page]))
    assert result.rejected["reason"].to_pylist() == ["pii:too_many_emails"]
    masked = result.kept["text"][0].as_py()
    assert "<EMAIL>" in masked and "<PHONE>" in masked and "<IP>" in masked and "version 15.4.1" in masked
    assert "jane.doe" not in masked
    assert result.kept["text"][1].as_py() == page
    assert result.counters == {"emails_masked": 1, "ips_masked": 1, "phones_masked": 1}


def test_token_kl_is_a_resumable_global_stage(ray_local, tmp_path, real_documents):
    english = real_documents.filter(pc.equal(real_documents["lang"], "en")).slice(0, 300)
    blobs = [base64.b64encode(t.encode()[:3000]).decode() for t in english["text"].to_pylist()[:4]]
    (tmp_path / "in").mkdir()
    for shard in range(3):
        rows = english.slice(shard * 100, 100).select(["text", "url"]).to_pylist()
        rows += [{"text": blobs[shard], "url": f"https://blob.example/{shard}"}]
        (tmp_path / "in" / f"part-{shard}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = parse_recipe(
        {
            "name": "kl",
            "output_dir": str(tmp_path / "out"),
            "inputs": [{"name": "web", "format": "jsonl", "paths": [str(tmp_path / "in" / "*.jsonl")]}],
            "stages": [{"stage": "length", "min_chars": 10}, {"stage": "token_kl", "reject_fraction": 0.02}],
        },
        tmp_path,
    )
    result = run_recipe(recipe, show_progress=False)
    assert result.ok
    segment = tmp_path / "out/segments/01"
    assert (segment / "work/reference_unigram.parquet").exists()
    rejected = pq.read_table(segment / "rejected")
    assert set(rejected["reason"].to_pylist()) == {"token_kl:outlier_distribution"}
    assert set(blobs[:3]) <= set(rejected["text"].to_pylist()), "the encoded blobs are the outliers"
    kept = pq.read_table(segment / "kept")
    assert kept.schema.field("token_kl").type == pa.float32() and kept["token_kl"].null_count == 0
    stages = result.summary["segments"][1]["stages"]
    assert stages[0]["in"] == result.summary["segments"][0]["stages"][-1]["kept"]
    before = output_digests(tmp_path / "out")
    again = run_recipe(recipe, show_progress=False)
    assert again.summary["shards"]["processed"] == 0
    assert output_digests(tmp_path / "out") == before


def test_pii_leaves_section_numbers_alone_and_rejected_text_unmasked():
    """Section numbers (headings, cross-references, longer dotted numbers) are not IP addresses; real ones are."""
    headings = "\n\n".join(f"11.5.{i}.1. Regras\n\nTexto da seção {i}." for i in range(1, 14))
    references = " ".join(f"See Section 4.2.{i}.3 and § 7.1.{i}.2 for details." for i in range(1, 14))
    dotted = " ".join(f"Release 1.2.3.{i}.5 is out." for i in range(1, 14))
    log = "\n".join(f"203.0.113.{i} - - [07/Dec/2026] GET /" for i in range(1, 14))
    one_address = headings + "\nThe server listens on 192.168.1.20."
    result = PiiFilter().process(table([headings, references, dotted, log, one_address]))
    assert result.rejected["reason"].to_pylist() == ["pii:too_many_ips"]
    assert result.rejected["text"][0].as_py() == log  # a rejected page keeps its own text
    kept = result.kept["text"].to_pylist()
    assert kept[:3] == [headings, references, dotted]  # nothing masked, dots restored
    assert kept[3] == headings + "\nThe server listens on <IP>."
    assert result.counters["ips_masked"] == 1


def test_token_kl_reference_is_the_corpus_top_words_without_the_driver_holding_them(
    tmp_path, real_documents, monkeypatch
):
    """The reference merged from word partitions equals the whole-corpus count of every sampled word, truncated
    to ``vocabulary_size`` (ties by word), byte for byte: what the driver computed when it held every count."""
    from collections import Counter

    from test_stage_properties import InProcessContext

    from refinery.filters import token_kl

    monkeypatch.setattr(token_kl, "partition_count", lambda context, fixed: 4)
    batch = real_documents.slice(0, 240)
    context = InProcessContext(tmp_path, batch)
    stage = token_kl.TokenKlFilter(vocabulary_size=300)
    stage.prepare(context)
    counts: Counter = Counter()
    for text in batch["text"].to_pylist():
        counts.update(token_kl.document_words(text or "", stage.max_chars))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    assert len(ranked) > 300, "the vocabulary is truncated"
    top = ranked[:300]
    expected = stage._reference([w for w, _ in top], [c for _, c in top], sum(counts.values()))
    written = (tmp_path / "segments/01/work/reference_unigram.parquet").read_bytes()
    assert written == expected
    assert len(list((tmp_path / "segments/01/work/reference/top").glob("*.parquet"))) == 4
