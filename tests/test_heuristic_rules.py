"""Every heuristic rule fires on real text built to break it and stays quiet on the real page it came from."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from refinery.filters.c4 import C4QualityFilter
from refinery.filters.fineweb import FineWebQualityFilter
from refinery.filters.gopher import STOP_WORDS, GopherQualityFilter, GopherRepetitionFilter

FILTERS = (GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter())


def passes_all(text: str) -> bool:
    return all(f.process(pa.table({"id": ["x"], "text": [text]})).kept.num_rows == 1 for f in FILTERS)


@pytest.fixture(scope="module")
def clean(real_documents) -> str:
    """A real PostgreSQL manual page that passes every heuristic filter."""
    for text, source in zip(real_documents["text"].to_pylist(), real_documents["source"].to_pylist(), strict=True):
        if source == "postgresql_docs" and len(text.splitlines()) >= 8 and passes_all(text):
            return text
    raise AssertionError("the sample corpus has no clean PostgreSQL page")


def reason_of(stage, text: str) -> str | None:
    result = stage.process(pa.table({"id": ["x"], "text": [text]}))
    return None if result.kept.num_rows else result.rejected.column("reason")[0].as_py()


def sentences(text: str) -> list[str]:
    return re.findall(r"[^.!?\n]+[.!?]", text)


def test_the_clean_page_passes_every_filter(clean):
    assert passes_all(clean)


GOPHER_QUALITY = [
    ("too_few_words", {}, lambda t: " ".join(t.split()[:30])),
    ("too_many_words", {"max_doc_words": 50}, lambda t: t),
    ("short_mean_word", {"min_avg_word_length": 8}, lambda t: t),
    ("long_mean_word", {}, lambda t: " ".join("".join(p) for p in zip(*[iter(t.split())] * 3, strict=False))),
    ("too_many_hashes", {}, lambda t: "\n".join("# " + " # ".join(line.split()) for line in t.splitlines())),
    ("too_many_ellipses", {}, lambda t: t.replace(" ", " ... ")),
    ("too_many_bullets", {}, lambda t: "\n".join("- " + line for line in t.splitlines())),
    (
        "too_many_end_ellipses",
        {},
        lambda t: "\n".join(s[:-1] + ("..." if i % 2 else ".") for i, s in enumerate(sentences(t))),
    ),
    ("too_few_stop_words", {}, lambda t: " ".join(w for w in t.split() if w.lower() not in STOP_WORDS)),
]


@pytest.mark.parametrize(("rule", "params", "make"), GOPHER_QUALITY, ids=[r[0] for r in GOPHER_QUALITY])
def test_gopher_quality_rules(clean, rule, params, make):
    stage = GopherQualityFilter(**params)
    if params:
        assert reason_of(GopherQualityFilter(), make(clean)) is None, "default thresholds keep the page"
    assert reason_of(stage, make(clean)) == f"gopher_quality:{rule}"


def test_gopher_quality_rejects_pages_of_numbers(clean, real_documents):
    changelogs = " ".join(
        t
        for t, s in zip(real_documents["text"].to_pylist(), real_documents["source"].to_pylist(), strict=True)
        if s == "debian_changelog"
    )
    numbers = " ".join(re.findall(r"\b\d{4,}\b", changelogs)[:400])
    assert reason_of(GopherQualityFilter(), numbers) == "gopher_quality:too_few_alpha_words"


GOPHER_REPETITION = [
    ("dup_para_frac", lambda t: "\n\n".join(re.split(r"\n{2,}", t) * 2)),
    ("dup_line_frac", lambda t: "\n".join(line for line in t.splitlines() for _ in range(2))),
    ("top_2_gram", lambda t: " ".join(["query planner"] * 400) + " " + t.replace("\n", " ")),
    ("duplicated_5_n_grams", lambda t: " ".join([" ".join(sentences(t)[:6])] * 3)),
]


@pytest.mark.parametrize(("rule", "make"), GOPHER_REPETITION, ids=[r[0] for r in GOPHER_REPETITION])
def test_gopher_repetition_rules(clean, rule, make):
    assert reason_of(GopherRepetitionFilter(), make(clean)) == f"gopher_repetition:{rule}"


def paragraphs_twice(text: str) -> str:
    return "\n\n".join(re.split(r"\n{2,}", text) * 2)


def lines_twice(text: str) -> str:
    return "\n".join(line for line in text.splitlines() for _ in range(2))


ISOLATED_REPETITION = [  # each rule alone (the rules before it switched off), on real text that breaks it
    ("dup_para_char_frac", {"dup_para_frac": None}, paragraphs_twice),
    ("dup_line_char_frac", {"dup_line_frac": None}, lines_twice),
    ("top_3_gram", {"top_n_grams": [(3, 0.18)]}, lambda t: " ".join(["the query planner"] * 300) + " " + t),
    ("top_4_gram", {"top_n_grams": [(4, 0.16)]}, lambda t: " ".join(["the query planner runs"] * 300) + " " + t),
    *[
        (f"duplicated_{n}_n_grams", {"dup_n_grams": [(n, 0.1)]}, lambda t: " ".join([" ".join(sentences(t)[:6])] * 3))
        for n in range(6, 11)
    ],
]


@pytest.mark.parametrize(("rule", "params", "make"), ISOLATED_REPETITION, ids=[r[0] for r in ISOLATED_REPETITION])
def test_each_gopher_repetition_rule_alone(clean, rule, params, make):
    assert reason_of(GopherRepetitionFilter(**params), clean) is None
    assert reason_of(GopherRepetitionFilter(**params), make(clean)) == f"gopher_repetition:{rule}"


def test_c4_removes_lines_and_rejects_pages(clean):
    stage = C4QualityFilter()
    noisy = "\n".join(
        [
            "Skip to main content",  # no terminal punctuation
            "Please enable JavaScript to view the comments.",
            "This site uses cookies to improve your experience.",
            "PostgreSQL supports indexes [1] on expressions.",
            "Too short.",
            "A line with a " + "very" * 300 + " long word.",
            *clean.splitlines(),
        ]
    )
    result = stage.process(pa.table({"id": ["x"], "text": [noisy]}))
    kept = result.kept.column("text")[0].as_py()
    assert "JavaScript" not in kept and "cookies" not in kept and "Skip to main" not in kept
    assert "Too short." not in kept and "veryvery" not in kept
    assert "PostgreSQL supports indexes" in kept and "[1]" not in kept
    assert result.counters["lines_removed"] >= 5 + sum(1 for line in clean.splitlines() if line.strip() not in kept)
    assert result.counters["chars_removed"] == len(noisy) - len(kept)
    assert (
        reason_of(stage, clean + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.")
        == "c4_quality:lorem_ipsum"
    )
    assert reason_of(stage, clean + "\nWrite the setting as { key = value } in the file.") == "c4_quality:curly_bracket"
    assert reason_of(stage, " ".join(sentences(clean)[:3])) == "c4_quality:too_few_sentences"


def test_fineweb_rules(clean):
    stage = FineWebQualityFilter()
    unpunctuated = "\n".join(line.rstrip(".!?:") for line in clean.splitlines())
    assert reason_of(stage, unpunctuated) == "fineweb_quality:line_punct_ratio"
    short = "\n".join(w + "." for w in clean.split())
    assert reason_of(stage, short) == "fineweb_quality:short_line_ratio"
    longest = max(clean.splitlines(), key=len)
    assert reason_of(stage, clean + "\n" + longest + "\n" + longest) == "fineweb_quality:char_dup_ratio"
    listy = "\n".join(" ".join(pair) + "." for pair in zip(*[iter(clean.split())] * 2, strict=False))
    lenient = FineWebQualityFilter(short_line_thr=1.0, char_duplicates_ratio=1.0)
    assert reason_of(lenient, listy) == "fineweb_quality:list_ratio"


def test_thresholds_can_differ_per_language(clean):
    stage = GopherQualityFilter(per_language={"ja": {"min_doc_words": 10}})
    short = " ".join(sorted(sentences(clean), key=len)[-2:])
    assert 10 < len(short.split()) < 50
    table = pa.table({"id": ["en", "ja"], "text": [short, short], "lang": ["en", "ja"]})
    result = stage.process(table)
    assert result.kept.column("id").to_pylist() == ["ja"]
    assert result.rejected.column("reason").to_pylist() == ["gopher_quality:too_few_words"]


def test_only_languages_leaves_other_languages_untouched(clean, real_documents):
    japanese = next(
        t
        for t, lang in zip(real_documents["text"].to_pylist(), real_documents["lang"].to_pylist(), strict=True)
        if lang == "ja" and C4QualityFilter().clean(t)[0] is None
    )
    table = pa.table({"id": ["en", "ja"], "text": [" ".join(clean.split()[:20]), japanese], "lang": ["en", "ja"]})
    assert C4QualityFilter().process(table).kept.num_rows == 0, "C4's rules reject Japanese punctuation"
    result = C4QualityFilter(only_languages=["en"]).process(table)
    assert result.kept.to_pylist() == [{"id": "ja", "text": japanese, "lang": "ja"}]
    assert result.rejected["reason"].to_pylist() == ["c4_quality:too_few_sentences"]
