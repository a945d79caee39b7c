"""The fast paths of the heuristic filters compute exactly what the straightforward rules they replaced compute.

Each reference below is the previous implementation, kept here as the specification: the NumPy ``np.unique``
n-gram statistics of ``gopher_repetition`` and ``line_ngram_repetition`` (now compiled kernels), the tokeniser
without its per-chunk memo, ``re.split`` for lines and paragraphs (now ``str.split``), and the word-list counts
that doubled and counted every document (now only those with a match). They are compared on real documents of
the sample corpus (and, for the word lists, copies with listed words spliced in), statistic by statistic and
decision by decision.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from refinery.filters import text_stats
from refinery.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
from refinery.filters.line_repetition import LineNgramRepetitionFilter, duplicated_ngram_coverage
from refinery.filters.ngram_kernels import duplicated_ngram_chars_kernel, top_ngram_chars_kernel
from refinery.filters.text_stats import (
    SPLIT_WORDS,
    _split_chunk,
    is_symbol,
    ngram_ids,
    split_lines,
    split_paragraphs,
    token_ids,
    tokenize,
    window_sums,
    words,
)
from refinery.filters.word_lists import (
    BOUNDARY,
    LETTER,
    UNSPACED_LANGUAGES,
    WORD,
    WORD_CHARACTER,
    AdultWordsFilter,
    DirtyWordsFilter,
    WordDensityFilter,
    adult_word_list,
    alternation,
    compiled,
    consume_count,
    profanity_lists,
)


def reference_top_ngram_chars(grams: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Previous implementation: characters of the most frequent n-gram times its count, ties to the first seen."""
    _, first, counts = np.unique(grams, return_index=True, return_counts=True)
    best = counts.max()
    candidates = np.flatnonzero(counts == best)
    winner = candidates[np.argmin(first[candidates])]
    start = first[winner]
    return int((lengths[start : start + n].sum() + n - 1) * best)


def reference_duplicated_ngram_chars(grams: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Previous implementation (without its early stop): datatrove's walk over repeated n-grams."""
    _, first, inverse = np.unique(grams, return_index=True, return_inverse=True)
    candidates = np.flatnonzero(first[inverse] < np.arange(grams.size))
    if candidates.size == 0:
        return 0
    chars = window_sums(lengths, n)
    values = grams.tolist()
    seen: set[int] = set()
    repeated = index = cursor = 0
    while cursor < candidates.size:
        candidate = int(candidates[cursor])
        if candidate < index:
            cursor = int(np.searchsorted(candidates, index))
            continue
        seen.update(values[index:candidate])
        if values[candidate] in seen:
            repeated += int(chars[candidate])
            index = candidate + n
        else:
            seen.add(values[candidate])
            index = candidate + 1
        cursor += 1
    return repeated


def reference_tokenize(text: str) -> tuple[str, ...]:
    """Previous implementation: the same rules, every chunk split afresh."""
    tokens: list[str] = []
    for chunk in text.split():
        if chunk.isalnum() and chunk not in SPLIT_WORDS:
            tokens.append(chunk)
        elif chunk[-1] in ",;:!?)" and chunk[:-1].isalnum() and chunk[:-1] not in SPLIT_WORDS:
            tokens.extend((chunk[:-1], chunk[-1]))
        else:
            tokens.extend(_split_chunk(chunk))
    return tuple(tokens)


@pytest.fixture(scope="module")
def texts(real_documents) -> list[str]:
    """200 real documents of every source of the sample corpus (documentation, handbooks, licences, changelogs)."""
    documents = [t for t in real_documents.column("text").to_pylist() if t]
    return documents[:: max(1, len(documents) // 200)][:200]


def test_tokenizer_memo_changes_no_token(texts, monkeypatch):
    # a tiny memo forces clears mid-document as well: results must not depend on what is cached
    monkeypatch.setattr(text_stats, "CHUNK_CACHE_SIZE", 50)
    text_stats._CHUNK_TOKENS.clear()  # whatever earlier tests cached: every chunk goes through the tiny memo
    for text in texts:
        assert tokenize(text) == reference_tokenize(text)
    assert len(text_stats._CHUNK_TOKENS) <= 50


def test_line_and_paragraph_splits_equal_the_regexes(texts):
    paragraphs, lines = re.compile(r"\n{2,}"), re.compile(r"\n+")
    short = ["".join(chars) for k in range(9) for chars in itertools.product("a\n ", repeat=k)]
    for text in short + texts:
        assert split_lines(text) == lines.split(text)
        assert split_paragraphs(text) == paragraphs.split(text)
        assert split_paragraphs(text.strip()) == paragraphs.split(text.strip())


def test_ngram_kernels_equal_the_numpy_rules(texts):
    checked = 0
    for text in texts[::2]:
        tokens = tokenize(text)
        ids = token_ids(tokens)
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        for n in (2, 4, 5, 10):
            grams = ngram_ids(ids, n)
            if not grams.size:
                continue
            assert top_ngram_chars_kernel(ids, lengths, n) == reference_top_ngram_chars(grams, lengths, n)
            assert duplicated_ngram_chars_kernel(ids, lengths, n, np.inf) == reference_duplicated_ngram_chars(
                grams, lengths, n
            )
            checked += 1
    assert checked > 200


def reference_line_coverage(tokens: tuple[str, ...], n: int) -> float:
    """Previous implementation of the line n-gram coverage (np.unique and a difference array)."""
    if len(tokens) < n + 1:
        return 0.0
    grams = ngram_ids(token_ids(tokens), n)
    _, first, inverse = np.unique(grams, return_index=True, return_inverse=True)
    repeated_starts = first[inverse] < np.arange(grams.size)
    if not repeated_starts.any():
        return 0.0
    delta = np.zeros(len(tokens) + 1, dtype=np.int64)
    starts = np.flatnonzero(repeated_starts)
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + n, -1)
    covered = np.cumsum(delta[:-1]) > 0
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    return float(lengths[covered].sum() / lengths.sum())


def test_line_coverage_kernel_equals_the_numpy_rule(texts):
    words = re.compile(r"\w+")
    lines = [tuple(words.findall(line)) for text in texts for line in text.split("\n")]
    lines = [tokens for tokens in lines if len(tokens) >= 5][:3000]
    for n in (2, 4):
        got = [duplicated_ngram_coverage(tokens, n) for tokens in lines]
        assert got == [reference_line_coverage(tokens, n) for tokens in lines]
        assert sum(0 < value < 1 for value in got) > 20


def reference_line_clean(text: str, n: int, min_words: int, max_coverage: float) -> tuple[str, int]:
    """Previous ``line_ngram_repetition`` rule: per line, ``re.findall(r"\\w+")`` and the NumPy coverage."""
    kept, removed = [], 0
    for line in text.split("\n"):
        tokens = tuple(re.findall(r"\w+", line)) if len(line) >= 2 * min_words else ()
        if len(tokens) >= min_words and reference_line_coverage(tokens, n) > max_coverage:
            removed += 1
        else:
            kept.append(line)
    return ("\n".join(kept) if removed else text), removed


def test_line_repetition_batch_kernel_equals_the_per_line_rule(texts):
    # real pages, plus pages with log-like lines in several scripts, blank and edge-case texts
    changelog_line = "2.4-1 urgency=low * New upstream release; fixes CVE-2024-0001 (Closes: #12345)"
    repetitive = [changelog_line, "Größe_1·ändert—½ «straße» ²³\u00a0x", "日本語\u3000の テスト、文字 𝔘𝔫𝔦"] * 14
    spliced = [text + "\n" + " ".join([line] * 4) for text, line in zip(texts[:40], repetitive[:40], strict=True)]
    edge = ["", " ", "\n", " \u2003\n\t\x1c", "a\n", "\n\nword " * 30, "e\u0301t\u00e9 " * 40 + "\n" + "x_y " * 50]
    corpus = texts + spliced + edge
    for n, min_words, max_coverage in ((4, 20, 0.4), (2, 5, 0.2)):
        stage = LineNgramRepetitionFilter(n=n, min_words=min_words, max_coverage=max_coverage)
        expected = [reference_line_clean(text, n, min_words, max_coverage) for text in corpus]
        assert [stage.clean(text) for text in corpus] == expected
        batch = pa.table({"id": [str(i) for i in range(len(corpus) + 1)], "text": [*corpus, None]})
        result = stage.process(batch)
        kept = {row["id"]: row["text"] for row in result.kept.to_pylist()}
        for index, (cleaned, _) in enumerate(expected):
            assert kept.get(str(index)) == (cleaned if cleaned.strip() else None)
        assert result.rejected.num_rows == len(corpus) + 1 - len(kept)
        assert set(result.rejected["reason"].to_pylist()) == {"line_ngram_repetition:all_lines_removed"}
        assert result.counters["lines_removed"] == sum(removed for _, removed in expected) > 10
    # a batch where no line goes (the shortcut path): blank documents are still rejected, the rest kept as they are
    quiet = pa.table({"id": [str(i) for i in range(7)], "text": [*edge[:5], texts[0], None]})
    result = LineNgramRepetitionFilter().process(quiet)
    assert result.kept["id"].to_pylist() == ["4", "5"] and result.kept["text"].to_pylist() == ["a\n", texts[0]]
    assert result.rejected["reason"].to_pylist() == ["line_ngram_repetition:all_lines_removed"] * 5


def reference_repetition_failure(stage: GopherRepetitionFilter, text: str) -> str | None:
    """Previous ``first_failure`` after the line and paragraph rules: the NumPy n-gram rules in order."""
    tokens = tokenize(text)
    ids = token_ids(tokens)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    for n, fraction in stage.top_n_grams:
        grams = ngram_ids(ids, n)
        if grams.size and reference_top_ngram_chars(grams, lengths, n) / len(text) > fraction:
            return f"top_{n}_gram"
    for n, fraction in stage.dup_n_grams:
        grams = ngram_ids(ids, n)
        if grams.size and reference_duplicated_ngram_chars(grams, lengths, n) / len(text) > fraction:
            return f"duplicated_{n}_n_grams"
    return None


def reference_quality_failure(stage, text: str) -> str | None:
    """Previous implementation of ``GopherQualityFilter.first_failure`` (per-token sums)."""
    tokens = words(text)
    n_words = len(tokens)
    non_symbol = [t for t in tokens if not is_symbol(t)]
    if stage.min_doc_words and len(non_symbol) < stage.min_doc_words:
        return "too_few_words"
    if stage.max_doc_words and len(non_symbol) > stage.max_doc_words:
        return "too_many_words"
    mean_length = sum(map(len, non_symbol)) / len(non_symbol) if non_symbol else float("nan")
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
        alpha = sum(1 for t in tokens if any(c.isalpha() for c in t))
        if alpha / n_words < stage.min_alpha_words_ratio:
            return "too_few_alpha_words"
    if stage.min_stop_words and len(set(stage.stop_words).intersection(tokens)) < stage.min_stop_words:
        return "too_few_stop_words"
    return None


def test_quality_decisions_unchanged(texts):
    stage = GopherQualityFilter()
    got = [stage.first_failure(text) for text in texts]
    assert got == [reference_quality_failure(stage, text) for text in texts]
    assert len({reason for reason in got if reason}) >= 3, "documents that fail several different rules"
    # every rule's statistic reached: with the length rules off, the later rules decide
    relaxed = GopherQualityFilter(min_doc_words=None, min_avg_word_length=None, max_avg_word_length=None)
    assert [relaxed.first_failure(t) for t in texts] == [reference_quality_failure(relaxed, t) for t in texts]


def test_repetition_decisions_unchanged(texts):
    # line and paragraph rules off: every document reaches the n-gram rules
    stage = GopherRepetitionFilter(dup_line_frac=None, dup_para_frac=None, dup_line_char_frac=None,
                                   dup_para_char_frac=None)  # fmt: skip
    got = [stage.first_failure(text) for text in texts]
    expected = [reference_repetition_failure(stage, text) for text in texts]
    assert got == expected
    assert len({reason for reason in expected if reason}) >= 3, "documents that fail several different rules"


def reference_alternation(words: tuple[str, ...], spaced: bool) -> str:
    """The rule's pattern, spelled out: each entry with the break runs between two of its words doubled, as the
    text's are ("hijo de puta" reads "hijo  de  puta"), longest entry first, standing alone in spaced lists. Word
    characters here come from Python's Unicode categories (L, M, N and "_"), not from RE2."""

    def is_word(character: str) -> bool:
        return unicodedata.category(character)[0] in "LMN" or character == "_"

    def doubled(entry: str) -> str:
        runs = ["".join(run) for _, run in itertools.groupby(entry, key=is_word)]
        inner = range(1, len(runs) - 1)
        return "".join(re.escape(run * 2 if i in inner and not is_word(run[0]) else run) for i, run in enumerate(runs))

    body = "|".join(doubled(word) for word in sorted(words, key=len, reverse=True))
    boundary = r"[^\p{L}\p{M}\p{N}_]"
    return rf"(?i)(?:^|{boundary})(?:{body})(?:$|{boundary})" if spaced else f"(?i)(?:{body})"


def reference_word_list_decisions(stage, batch: pa.Table) -> list[str | None]:
    """Previous implementation: every document doubled and counted, words counted for every document.

    Its classes are those of the rule: a word is letters, combining marks, numbers and ``_``; in scripts without
    spaces an entry counts when it has more than one character besides its marks; an entry of several words counts
    where the text holds it as written (``reference_alternation``)."""
    text = pc.fill_null(batch.column("text"), "")
    languages = stage.languages(batch)
    counts = np.zeros(batch.num_rows, dtype=np.int64)
    for language in sorted(set(languages.tolist())):
        spaced = stage.spaced(language)
        words = tuple(
            w
            for w in stage.words_for(language)
            if spaced or sum(not unicodedata.category(c).startswith("M") for c in w) > 1
        )
        if not words:
            continue
        rows = np.flatnonzero(languages == language)
        doubled = pc.replace_substring_regex(text.take(pa.array(rows)), r"([^\p{L}\p{M}\p{N}_]+)", r"\1\1")
        pattern = reference_alternation(words, spaced)
        counts[rows] = pc.count_substring_regex(doubled, pattern).to_numpy(zero_copy_only=False)
    spaced_words = pc.count_substring_regex(text, WORD).to_numpy(zero_copy_only=False)
    letters = pc.count_substring_regex(text, r"\p{L}").to_numpy(zero_copy_only=False)
    word_counts = np.maximum(np.where(np.isin(languages, list(UNSPACED_LANGUAGES)), letters // 2, spaced_words), 1)
    density = counts / word_counts
    return [
        stage.reason("too_many") if c > stage.max_count else stage.reason("too_dense") if d > stage.max_density else ""
        for c, d in zip(counts, density, strict=True)
    ]


def with_listed_words(real_documents, stage) -> pa.Table:
    """Real documents, and copies of them with listed words of their language spliced in (0 to 30 of them,
    adjacent pairs, upper case, inside longer words, multi-word entries with a break doubled), so every rule and
    every counting path is exercised."""
    rng = np.random.default_rng(0)
    documents = real_documents.slice(0, 300)
    lists = profanity_lists()
    english = stage.words_for("en")
    texts, languages = [], []
    for text, language in zip(documents["text"].to_pylist(), documents["lang"].to_pylist(), strict=True):
        words = text.split(" ")
        listed = stage.words_for(language) or english
        for _ in range(int(rng.integers(0, 30))):
            word = listed[int(rng.integers(len(listed)))]
            forms = (word, word.upper(), f"{word} {word}", f"x{word}", f"{word},{word}", word.replace(" ", "  ", 1))
            form = forms[int(rng.integers(len(forms)))]
            words.insert(int(rng.integers(len(words) + 1)), form)
        texts.append(" ".join(words)[:20_000])
        languages.append(language)
    languages += ["zh", "ja"]
    texts += ["他说这是" + lists["zh"][3] + "的问题。" * 3, lists["ja"][5] * 4 + "です"]
    plain = documents.slice(0, 100)
    texts, languages = plain["text"].to_pylist() + texts, plain["lang"].to_pylist() + languages
    return pa.table({"id": list(range(len(texts))), "text": texts, "lang": languages})


def stage_decisions(stage: WordDensityFilter, batch: pa.Table) -> list[str]:
    """The stage's rejection reason per row of ``batch`` ("" where it keeps the row; ids are row numbers)."""
    result = stage.process(batch)
    reasons = dict(zip(result.rejected["id"].to_pylist(), result.rejected["reason"].to_pylist(), strict=True))
    return [reasons.get(row, "") for row in range(batch.num_rows)]


@pytest.mark.parametrize("stage_class", [DirtyWordsFilter, AdultWordsFilter], ids=["dirty_words", "adult_words"])
def test_word_list_decisions_unchanged(real_documents, stage_class):
    stage = stage_class()
    batch = with_listed_words(real_documents, stage)
    expected = reference_word_list_decisions(stage, batch)
    assert stage_decisions(stage, batch) == expected
    assert set(expected) >= {"", stage.reason("too_many")}


def test_alternations_spell_out_the_rule_for_every_shipped_list():
    # the stages' patterns (entry_pattern, with RE2's classes) are the reference's, for every list and both spacings
    lists = [*profanity_lists().values(), adult_word_list()]
    for entries in lists:
        for spaced in (True, False):
            assert alternation(entries, spaced) == reference_alternation(entries, spaced)
    assert sum(r"\ \ " in reference_alternation(entries, True) for entries in lists) == 8, "ar bn de es fr hi pt ur"


def test_re2_engines_agree_on_classes_and_case_folding():
    # the word lists count with google-re2 compiled once; Arrow's RE2 defined the counts: same classes for every
    # code point, same case-insensitive matches for every character of every list against every cased character
    every = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    joined = "".join(every)  # runs of matching code points found in one pass (RE2's Python loop is per match)
    array = pa.array(every, pa.string())
    # the word class (with the marks, \p{M}: Mn, Mc, Me), its complement, the marks alone and the letters that
    # scripts without spaces count; case-insensitive too, as the alternations and presence patterns use them
    classes = (WORD_CHARACTER, BOUNDARY, r"\p{M}", LETTER)
    members_of = {}
    for members in (*classes, *(f"(?i){members}" for members in classes)):
        arrow = np.array(every, dtype=object)[pc.match_substring_regex(array, f"^(?:{members})$").to_numpy(False)]
        ours = "".join(compiled(f"(?:{members})+").findall(joined))
        assert "".join(arrow) == ours, members
        members_of[members] = ours
    assert members_of[WORD_CHARACTER] == members_of["(?i)" + WORD_CHARACTER]
    assert len(members_of[WORD_CHARACTER]) + len(members_of[BOUNDARY]) == len(every)
    assert "\u0301" in members_of[WORD_CHARACTER] and "\u093e" in members_of[r"\p{M}"]  # acute accent; Devanagari AA
    cased = "".join(c for c in every if c.lower() != c or c.upper() != c or c.casefold() != c)
    # the word class is closed under RE2's case folding (presence_pattern's exactness argument needs it): every
    # character that (?i) matches is a word character exactly when the character itself is one
    word = compiled(WORD_CHARACTER)
    for char in cased:
        folded = compiled("(?i)" + re.escape(char)).findall(cased)
        assert {word.fullmatch(c) is not None for c in [char, *folded]} == {word.fullmatch(char) is not None}, char
    lists = [*profanity_lists().values(), adult_word_list()]
    listed = sorted({c for words in lists for w in words for c in w})
    candidates = pa.array(list(cased) + listed, pa.string())
    values = np.array(candidates.to_pylist(), dtype=object)
    for char in listed:
        pattern = "(?i)" + re.escape(char)
        arrow = set(values[pc.match_substring_regex(candidates, pattern).to_numpy(False)])
        assert set(compiled(pattern).findall(cased + "".join(listed))) == arrow, char


def test_consume_count_counts_as_arrow_does(texts):
    pattern = alternation((*profanity_lists()["en"], "the", "of", "and"), True)
    sample = [t[:5000] for t in texts[:60]] + ["ass ass", "x ass ass ass x", "ass  ass", "", "Ass,ASS;ass"]
    arrow = pc.count_substring_regex(pa.array(sample), pattern).to_pylist()
    assert [consume_count(compiled(pattern), t, 10**6) for t in sample] == arrow
    assert [consume_count(compiled(pattern), t, 3) for t in sample] == [min(3, c) for c in arrow]
    assert max(arrow) > 3


class MarkedWordsFilter(WordDensityFilter):
    """A list with entries that end in punctuation or hold a double break, whose first word is not an entry
    (entries of words joined by breaks, "gosh--darn" and "dang it", count where the text holds them as written)."""

    def words_for(self, language: str) -> tuple[str, ...]:
        return ("darn;", "gosh--darn", "heck!", "fiddlesticks", "dang it")


def test_word_lists_find_every_document_that_counts_with_marked_entries(texts):
    # entries that end in a break are found by their first word run (presence_pattern), entries of words joined by
    # breaks whole: both as written, and with other breaks between their words (not counted)
    stage = MarkedWordsFilter(max_count=4)
    forms = ["darn; ", "darn;; ", "gosh--darn ", "GOSH--DARN! ", "heck! ", "(heck!)", "xheck! ", "dang it ", "darn "]
    forms += ["gosh-darn ", "gosh---darn ", "dang  it ", "dang\nit "]
    rng = np.random.default_rng(1)
    made = []
    for text in texts[:60]:
        words = text[:400].split(" ")
        for _ in range(int(rng.integers(0, 8))):
            words.insert(int(rng.integers(len(words) + 1)), forms[int(rng.integers(len(forms)))])
        made.append(" ".join(words))
    batch = pa.table({"id": list(range(len(made))), "text": made, "lang": ["en"] * len(made)})
    expected = reference_word_list_decisions(stage, batch)
    assert stage_decisions(stage, batch) == expected
    assert {"", stage.reason("too_many"), stage.reason("too_dense")} <= set(expected)


class CombiningMarkWordsFilter(WordDensityFilter):
    """Entries that start with, end in or hold combining marks, in Devanagari and in decomposed Latin."""

    def words_for(self, language: str) -> tuple[str, ...]:
        return ("\u093eचोद", "कमीना", "मुँह में ले", "cafe\u0301", "e\u0301", "nai\u0308ve!", "\u0301x")


def test_word_lists_find_every_document_that_counts_in_scripts_with_marks():
    # real Hindi, Bengali and Thai sentences (the GLib/GTK translations of tests/fixtures/marked_scripts.json) with
    # listed words of their language spliced in, alone, doubled, after a letter, with a mark written on them
    fixture = json.loads((Path(__file__).parent / "fixtures" / "marked_scripts.json").read_text())["languages"]
    rng = np.random.default_rng(2)
    texts, languages = [], []
    for language in ("hi", "bn", "th", "hi", "bn", "th"):
        sentences = [entry["text"] for entry in fixture[language]]
        listed = profanity_lists()[language]
        for sentence in sentences:
            words = sentence.split(" ")
            for _ in range(int(rng.integers(0, 6))):
                word = listed[int(rng.integers(len(listed)))]
                forms = (word, f"{word} {word}", f"क{word}", f"{word}\u0902", f"{word}।{word}", word + word)
                words.insert(int(rng.integers(len(words) + 1)), forms[int(rng.integers(len(forms)))])
            texts.append(" ".join(words))
            languages.append(language)
    marked = ["काचोद कमीना मुँह में ले", "cafe\u0301 e\u0301 x\u0301x nai\u0308ve! \u0301x", "मुँह  में ले \u093eचोद"]
    texts, languages = texts + marked * 3, languages + ["hi"] * 3 * len(marked)
    batch = pa.table({"id": list(range(len(texts))), "text": texts, "lang": languages})
    for stage in (DirtyWordsFilter(max_count=3, max_density=0.05), CombiningMarkWordsFilter(max_count=2)):
        expected = reference_word_list_decisions(stage, batch)
        assert stage_decisions(stage, batch) == expected
        assert {"", stage.reason("too_many"), stage.reason("too_dense")} <= set(expected)
