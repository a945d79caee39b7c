"""The compiled tokeniser and Gopher statistics (``filters/token_kernels.py``) equal the Python rules they replaced.

The references below are the previous implementations, kept here as the specification: ``text_stats.tokenize``
(the spaCy-like Python tokeniser, still in the package), ``GopherQualityFilter.first_failure`` as per-document
Python sums over a ``Counter`` of tokens, and ``GopherRepetitionFilter.first_failure`` with ``str.split`` lines and
paragraphs, Python-string duplicates and Python-hash token ids. They are compared token by token, statistic by
statistic and decision by decision on real pages of the sample corpus, the multilingual crawl fixture (short
distinct pages in a dozen languages), the distinct-page corpus when it is on the machine, adversarial edge texts,
and thousands of random chunks over an alphabet of every character the rules treat specially.
"""

from __future__ import annotations

import random
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.filters import text_stats
from refinery.filters.fineweb import FineWebQualityFilter
from refinery.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
from refinery.filters.ngram_kernels import duplicated_ngram_chars_kernel, first_ngram_failure, top_ngram_chars_kernel
from refinery.filters.text_stats import (
    duplicates,
    is_symbol,
    split_lines,
    split_paragraphs,
    token_ids,
    tokenize,
    words,
)
from refinery.filters.token_kernels import (
    ALNUM,
    ALPHA,
    DECIMAL,
    LINE_BREAK,
    PUNCT,
    QUALITY_COLUMNS,
    SPACE,
    arrow_utf8,
    code_point_tables,
    lexicon,
    pack_words,
    quality_statistics,
    tables,
    token_counts,
    tokenize_batch,
)

REPO = Path(__file__).resolve().parents[1]
CRAWL = REPO / "tests" / "fixtures" / "multilingual_crawl"
DISTINCT = Path("/tmp/refinery-world/n16384")


# --- the previous implementations (the specification) ------------------------------------------------------


def reference_quality(stage: GopherQualityFilter, text: str) -> str | None:
    """Previous ``GopherQualityFilter.first_failure``: Python sums over the document's tokens."""
    tokens = words(text)
    n_words = len(tokens)
    distinct = Counter(tokens)
    n_non_symbol = non_symbol_chars = 0
    for token, count in distinct.items():
        if not is_symbol(token):
            n_non_symbol += count
            non_symbol_chars += len(token) * count
    if stage.min_doc_words and n_non_symbol < stage.min_doc_words:
        return "too_few_words"
    if stage.max_doc_words and n_non_symbol > stage.max_doc_words:
        return "too_many_words"
    mean_length = non_symbol_chars / n_non_symbol if n_non_symbol else float("nan")
    if stage.min_avg_word_length and mean_length < stage.min_avg_word_length:
        return "short_mean_word"
    if stage.max_avg_word_length and mean_length > stage.max_avg_word_length:
        return "long_mean_word"
    if n_words == 0:
        return "too_few_words"
    if stage.max_symbol_word_ratio and text.count("#") / n_words > stage.max_symbol_word_ratio:
        return "too_many_hashes"
    if stage.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > stage.max_symbol_word_ratio:
        return "too_many_ellipses"
    lines = text.splitlines() or [""]
    if stage.max_bullet_lines_ratio:
        bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
        if bullets / len(lines) > stage.max_bullet_lines_ratio:
            return "too_many_bullets"
    if stage.max_ellipsis_lines_ratio:
        ellipses = sum(line.rstrip().endswith(("...", "…")) for line in lines)
        if ellipses / len(lines) > stage.max_ellipsis_lines_ratio:
            return "too_many_end_ellipses"
    if stage.min_alpha_words_ratio:
        alpha = sum(count for token, count in distinct.items() if any(map(str.isalpha, token)))
        if alpha / n_words < stage.min_alpha_words_ratio:
            return "too_few_alpha_words"
    if stage.min_stop_words and len(set(stage.stop_words).intersection(distinct)) < stage.min_stop_words:
        return "too_few_stop_words"
    return None


def reference_quality_statistics(text: str, stop_words: list[str]) -> list[int]:
    """The statistics the rules above decide on, in ``QUALITY_COLUMNS`` order."""
    tokens = tokenize(text)
    lines = text.splitlines() or [""]
    return [
        len(tokens),
        sum(not is_symbol(t) for t in tokens),
        sum(len(t) for t in tokens if not is_symbol(t)),
        text.count("#"),
        text.count("...") + text.count("…"),
        len(lines),
        sum(line.lstrip().startswith(("•", "-")) for line in lines),
        sum(line.rstrip().endswith(("...", "…")) for line in lines),
        sum(any(map(str.isalpha, t)) for t in tokens),
        len(set(stop_words).intersection(tokens)),
    ]


def reference_repetition(stage: GopherRepetitionFilter, text: str) -> str | None:
    """Previous ``GopherRepetitionFilter.first_failure``: Python lines/paragraphs and Python-hash token ids."""
    if not text:
        return "empty"
    paragraphs = split_paragraphs(text.strip())
    repeated, repeated_chars = duplicates(paragraphs)
    if stage.dup_para_frac and repeated / len(paragraphs) > stage.dup_para_frac:
        return "dup_para_frac"
    if stage.dup_para_char_frac and repeated_chars / len(text) > stage.dup_para_char_frac:
        return "dup_para_char_frac"
    lines = split_lines(text)
    repeated, repeated_chars = duplicates(lines)
    if stage.dup_line_frac and repeated / len(lines) > stage.dup_line_frac:
        return "dup_line_frac"
    if stage.dup_line_char_frac and repeated_chars / len(text) > stage.dup_line_char_frac:
        return "dup_line_char_frac"
    tokens = words(text)
    rules = (
        np.array([n for n, _ in stage.top_n_grams], dtype=np.int64),
        np.array([f for _, f in stage.top_n_grams], dtype=np.float64),
        np.array([n for n, _ in stage.dup_n_grams], dtype=np.int64),
        np.array([f for _, f in stage.dup_n_grams], dtype=np.float64),
    )
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    failed = first_ngram_failure(token_ids(tokens), lengths, len(text), *rules)
    names = [f"top_{n}_gram" for n, _ in stage.top_n_grams] + [f"duplicated_{n}_n_grams" for n, _ in stage.dup_n_grams]
    return None if failed < 0 else names[failed]


# --- corpora -----------------------------------------------------------------------------------------------

EDGE_TEXTS = [
    "",
    " ",
    "\n",
    "\n\n\n",
    " \t\u3000\u00a0\n",
    "\r\n\r\n",
    "...",
    "…",
    "... … ....",
    "•\n•\n- \n  - x\n",
    "# ## ###\n#",
    "*** --- ___ ((( ))) !!! ???",
    "U.S. e.g. i.e. etc. Mr. Dr.Smith a.b.c. A. I. x.y.z.w",
    "don't can't won't it's they're I'm we'll you've he'd IT'S THEY'RE O'Neil rock'n'roll 'tis ’s n't",
    "DON'T They’re it’s ſ's it'ſ CANNOT cannot Cannot gonna gotta cannot. (gonna) Gotta",
    "https://example.org/a?b=c&d=e www.example.com mail me@example.org ftp://x.y and/or AND/OR",
    "state-of-the-art 32-bit 1-8 2+2 a:b x=y he/she a,b 1,000 asyncio.Runner a--b a—b a–b a~b 3*4 2^10 1--8",
    "日本語のテキスト。これはテストです！「引用」『二重』（括弧）【見出し】",
    "中文文本，标点符号；还有：问号？感叹号！",
    "e\u0301te\u0301 cafe\u0301. n\u0303o Z\u0351\u0322a\u035blgo\u0489",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀😀 𝟙𝟚𝟛 𐍈𐍈 emoji 👍🏽 flags 🇫🇷",
    "line one\r\nline two\r\nline two\r\n\r\n\r\npara\x0bvt\x0cff\x1cfs\x1dgs\x1ers\x85nel\u2028ls\u2029ps",
    "a" * 5000,
    ("word " * 300).strip(),
    "x" * 2000 + " " + "y. " * 100,
    "''quoted'' ``quoted`` '' `` \"double\" „low“ «guillemets» ‚single‘",
    "$100 £5 €3 ¥7 §2 50% 30° ™® © +1 ²³ ½ x²",
    "....word word.... (...) [..] {.}",
    "-\n-\n-\n-\nnot a bullet\n",
    "the be to of and that have with " * 20,
    "The The THE the. the, (the) the's",
]


def random_texts(count: int, seed: int = 19) -> list[str]:
    """Random short texts over every character and word the tokeniser treats specially."""
    alphabet = list(".'’`-—–~:<>=/,+*^@#…•()[]\"“”«»!?;%$§°™+_&{}1234567890aAzZéſ²Kİ \n\r\t\u00a0\u3000。，")
    pieces = [*alphabet, "www.", "://", "cannot", "gonna", "it", "they", "e.g", "n't", "'s", "'re", "’s", "and/or"]
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(count)]


def read_corpus(folder: Path, limit: int) -> list[str]:
    """Texts of a corpus folder (warc/, jsonl/, parquet/ as the readers read them)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from harness import load_documents

    texts = [t for t in load_documents(folder).column("text").to_pylist() if t is not None]
    return texts[:: max(1, len(texts) // limit)][:limit]


@pytest.fixture(scope="module")
def corpus(real_documents) -> list[str]:
    """Real pages: the sample corpus's first shards, the multilingual fixture, and the edge texts."""
    sample = [t for t in real_documents.column("text").to_pylist() if t]
    return sample + read_corpus(CRAWL, 1500) + EDGE_TEXTS


def spans_to_tokens(texts: list[str]) -> list[tuple[str, ...]]:
    token_offsets, starts, ends = tokenize_batch(*arrow_utf8(pa.array(texts, pa.string())), *tables())
    return [
        tuple(text[a:b] for a, b in zip(starts[first:last].tolist(), ends[first:last].tolist(), strict=True))
        for text, first, last in zip(texts, token_offsets[:-1].tolist(), token_offsets[1:].tolist(), strict=True)
    ]


# --- tests -------------------------------------------------------------------------------------------------


def test_code_point_tables_are_pythons_predicates():
    classes, lower, fold = code_point_tables()
    words = [*text_stats.EXCEPTIONS, *text_stats.PRONOUNS, *text_stats.CLITICS, *text_stats.ALWAYS_SPLIT_CLITICS]
    lexicon_chars = {c for word in words for c in word}
    lexicon_codes = {ord(c) for c in lexicon_chars}
    rng = random.Random(7)
    sample = list(range(0x3000)) + [rng.randrange(0x110000) for _ in range(20_000)]
    for code in sample:
        char = chr(code)
        kind = int(classes[code])
        assert bool(kind & SPACE) == char.isspace()
        assert bool(kind & ALNUM) == char.isalnum() == bool(re.fullmatch(r"[^\W_]", char))
        assert bool(kind & DECIMAL) == bool(re.fullmatch(r"\d", char))
        assert bool(kind & ALPHA) == char.isalpha()
        assert bool(kind & PUNCT) == (char in text_stats.PUNCTUATION)
        assert bool(kind & LINE_BREAK) == (len(f"a{char}b".splitlines()) == 2)
        # lower case as the kernels compare it (with the lexicon's characters), and re's (?i) for the clitics
        lowered = char.lower()
        assert (lower[code] in lexicon_codes) == (lowered in lexicon_chars)
        assert lower[code] not in lexicon_codes or lower[code] == ord(lowered)
        folded = [ord(letter) for letter in "ntsrelvdm" if re.fullmatch(f"(?i){letter}", char)]
        assert fold[code] == (folded[0] if folded else code)
    _points, word_offsets, group_offsets, split_at = lexicon()
    assert group_offsets[-1] == len(word_offsets) - 1 and split_at.tolist() == [3, 3, 3, 3]


def test_tokens_equal_the_python_tokeniser(corpus):
    texts = corpus + random_texts(4000)
    got = spans_to_tokens(texts)
    for text, tokens in zip(texts, got, strict=True):
        assert tokens == tokenize(text), text[:200]
    counts = token_counts(*arrow_utf8(pa.array(texts, pa.string())), *tables())
    assert counts.tolist() == [len(tokens) for tokens in got]
    # every rule of the tokeniser was exercised: clitics, abbreviations, infixes, URLs, split words, dot runs
    flat = {token for tokens in got for token in tokens}
    assert {"n't", "'s", "U.S.", "e.g.", "-", "can", "not", "gon", "...", "www.example.com"} <= flat


def test_quality_statistics_equal_the_python_sums(corpus):
    texts = corpus + random_texts(1000, seed=3)
    stop_words = ["the", "be", "to", "of", "and", "that", "have", "with", "The", "é"]
    got = quality_statistics(*arrow_utf8(pa.array(texts, pa.string())), *tables(), *pack_words(sorted(stop_words)))
    assert len(QUALITY_COLUMNS) == got.shape[1]
    for text, row in zip(texts, got.tolist(), strict=True):
        assert row == reference_quality_statistics(text, stop_words), text[:200]


QUALITY_VARIANTS = [
    {},
    {"min_doc_words": None, "min_avg_word_length": None, "max_avg_word_length": 6},
    {"max_symbol_word_ratio": 0.02, "max_bullet_lines_ratio": 0.2, "max_ellipsis_lines_ratio": 0.05},
    {
        "min_alpha_words_ratio": 0.7,
        "min_stop_words": 3,
        "stop_words": ["the", "der", "die", "le", "la", "de", "of", "and"],
    },
    {"min_doc_words": 0, "max_doc_words": 200, "min_alpha_words_ratio": None, "min_stop_words": 0},
]
REPETITION_VARIANTS = [
    {},
    {"dup_para_frac": None, "dup_line_frac": 0.05, "dup_line_char_frac": 0.03},
    {"dup_para_frac": 0.05, "dup_para_char_frac": 0.02, "dup_line_frac": None, "dup_line_char_frac": None},
    {"top_n_grams": [(2, 0.05), (3, 0.04)], "dup_n_grams": [(5, 0.03), (7, 0.02)]},
]


def decisions_and_batch_agree(stage, texts: list[str], reference) -> dict[str | None, int]:
    """The stage's decisions equal the reference per text, and its batch split (kept rows, reasons) as well."""
    expected = [reference(stage, text) for text in texts]
    assert stage.first_failures(pa.array(texts, pa.string())) == expected
    batch = pa.table({"id": [str(i) for i in range(len(texts) + 1)], "text": [*texts, None]})
    result = stage.process(batch)
    expected.append(reference(stage, ""))
    assert result.kept.column("id").to_pylist() == [str(i) for i, rule in enumerate(expected) if rule is None]
    assert result.rejected.column("reason").to_pylist() == [stage.reason(r) for r in expected if r is not None]
    return Counter(expected)


@pytest.mark.parametrize("params", QUALITY_VARIANTS)
def test_gopher_quality_decisions_unchanged(corpus, params):
    stage = GopherQualityFilter(**params)
    counts = decisions_and_batch_agree(stage, corpus + random_texts(300, seed=5), reference_quality)
    assert counts[None] > 20 and len(counts) >= 4, counts  # kept pages and several rules firing


@pytest.mark.parametrize("params", REPETITION_VARIANTS)
def test_gopher_repetition_decisions_unchanged(corpus, params):
    stage = GopherRepetitionFilter(**params)
    counts = decisions_and_batch_agree(stage, corpus + random_texts(300, seed=6), reference_repetition)
    assert counts[None] > 20 and len(counts) >= 3, counts


def test_fineweb_word_count_unchanged(corpus):
    stage = FineWebQualityFilter()
    texts = corpus[:1500]
    expected = [reference_fineweb(stage, text) for text in texts]
    assert [stage.first_failure(text) for text in texts] == expected
    result = stage.process(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))
    assert result.kept.column("id").to_pylist() == [str(i) for i, rule in enumerate(expected) if rule is None]
    assert "list_ratio" in expected


def reference_fineweb(stage: FineWebQualityFilter, text: str) -> str | None:
    """Previous ``FineWebQualityFilter.first_failure``: the list ratio over ``len(words(text))``."""
    lines = [line for line in text.split("\n") if line.strip() != ""]
    if not lines:
        return "empty"
    stops = tuple(stage.stop_chars) if stage.stop_chars is not None else text_stats.sentence_terminals()
    ratio = sum(1 for line in lines if line.endswith(stops)) / len(lines)
    if ratio < stage.line_punct_thr and not (ratio == 0 and stage.line_punct_exclude_zero):
        return "line_punct_ratio"
    if sum(1 for line in lines if len(line) <= stage.short_line_length) / len(lines) > stage.short_line_thr:
        return "short_line_ratio"
    if duplicates(lines)[1] / len(text.replace("\n", "")) > stage.char_duplicates_ratio:
        return "char_dup_ratio"
    if text.count("\n") / max(len(words(text)), 1) > stage.new_line_ratio:
        return "list_ratio"
    return None


@pytest.mark.skipif(not DISTINCT.exists(), reason="the distinct-page corpus is built by scripts/build_world_corpus.py")
def test_distinct_pages_tokens_and_decisions_unchanged():
    texts = read_corpus(DISTINCT, 3000)
    for text, tokens in zip(texts, spans_to_tokens(texts), strict=True):
        assert tokens == tokenize(text), text[:200]
    decisions_and_batch_agree(GopherQualityFilter(), texts, reference_quality)
    decisions_and_batch_agree(GopherRepetitionFilter(), texts, reference_repetition)


def reference_first_ngram_failure(ids, lengths, text_length, top_ns, top_fractions, dup_ns, dup_fractions) -> int:
    """Previous ``first_ngram_failure``: every rule computed by its own kernel, no shortcut between lengths."""
    for rule, n in enumerate(top_ns.tolist()):
        if ids.size >= n and top_ngram_chars_kernel(ids, lengths, n) / text_length > top_fractions[rule]:
            return rule
    for rule, n in enumerate(dup_ns.tolist()):
        limit = dup_fractions[rule] * text_length
        if ids.size >= n and duplicated_ngram_chars_kernel(ids, lengths, n, limit) / text_length > dup_fractions[rule]:
            return top_ns.size + rule
    return -1


def test_ngram_shortcut_gives_every_rule_its_exact_value(corpus):
    """Each rule in turn is put exactly at its threshold's edge (the rules before it exactly at theirs, so they
    pass), so a shortcut that got any n-gram length's value wrong would move the first failure."""
    rng = np.random.default_rng(11)
    sequences = [token_ids(tokens) for tokens in map(tokenize, corpus[::7])]
    for vocabulary in (3, 8, 50, 10_000):  # synthetic texts: from nearly all repeats to almost none
        sequences += [rng.integers(0, vocabulary, rng.integers(1, 120)).astype(np.int64) for _ in range(60)]
    top_ns, dup_ns = np.array([2, 3, 4], dtype=np.int64), np.array([5, 6, 7, 8, 9, 10], dtype=np.int64)
    checked = 0
    for ids in sequences:
        if ids.size < 2:
            continue
        lengths = (np.abs(ids) % 7 + 1).astype(np.int64)
        text_length = int(lengths.sum() + ids.size)
        ratios = [top_ngram_chars_kernel(ids, lengths, n) / text_length for n in top_ns.tolist()]
        ratios += [duplicated_ngram_chars_kernel(ids, lengths, n, np.inf) / text_length for n in dup_ns.tolist()]
        for edge in range(len(ratios)):
            fractions = np.array(ratios, dtype=np.float64)
            fractions[edge] = np.nextafter(fractions[edge], -np.inf)
            arguments = (ids, lengths, text_length, top_ns, fractions[:3].copy(), dup_ns, fractions[3:].copy())
            assert first_ngram_failure(*arguments) == reference_first_ngram_failure(*arguments)
            checked += 1
    assert checked > 2000
