"""The word-list stages keep combining marks inside words (Devanagari, Bengali, Thai, Tamil, Telugu, NFD accents).

Before, a word was ``[\\p{L}\\p{N}_]+``: every vowel sign, virama or tone mark (``\\p{M}``) was a word break, so the
separator doubling doubled it and the shipped Hindi, Bengali and Thai entries written with marks never matched
(Hindi कमीना is क मी ना with two vowel signs), Devanagari sentences counted about two "words" per word, and a
decomposed accent (``e`` + U+0301) cut an English word in two. The texts are real translated messages
(``tests/fixtures/marked_scripts.json``, from Debian's GLib and GTK 3 catalogues; see
``scripts/build_marked_scripts_fixture.py``).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from word_list_texts import fixture_sentences, splice, table

from refinery.filters.word_lists import AdultWordsFilter, DirtyWordsFilter, profanity_lists

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "marked_scripts.json"
# shipped entries written with combining marks, none of which the old classes ever counted
SPLICED = {"hi": ("कमीना", "मादरचोद"), "bn": ("মাগী", "শুয়োর"), "th": ("เย็ด", "แม่ง")}


@pytest.fixture(scope="module")
def sentences() -> dict[str, list[str]]:
    return fixture_sentences(FIXTURE.name)


@pytest.mark.parametrize("language", sorted(SPLICED))
def test_listed_words_with_marks_are_counted(sentences, language):
    assert set(SPLICED[language]) <= set(profanity_lists()[language])
    assert all(any(unicodedata.category(c).startswith("M") for c in word) for word in SPLICED[language])
    words = " ".join(sentences[language]).split()
    plain, spliced = " ".join(words), splice(words, SPLICED[language], 3)
    stage = DirtyWordsFilter(max_count=2)
    languages = np.array([language] * 2, dtype=object)
    assert stage.text_counts([plain, spliced], languages, limit=100).tolist() == [0, 3]
    result = stage.process(table([plain, spliced], language))
    assert result.kept["id"].to_pylist() == [0]
    assert result.rejected["reason"].to_pylist() == ["dirty_words:too_many"]
    # a listed word with a further mark written on it is another word (spaced scripts): not counted
    if language != "th":
        marked_on = splice(words, tuple(word + "\u0902" for word in SPLICED[language]), 3)  # + anusvara
        assert stage.text_counts([marked_on], languages[:1], limit=100).tolist() == [0]


@pytest.mark.parametrize("language", ["hi", "mr", "ne", "bn", "ta", "te"])
def test_word_count_of_a_sentence_with_marks_is_its_space_separated_words(sentences, language):
    texts = sentences[language]
    counted = DirtyWordsFilter().word_counts(texts, np.array([language] * len(texts), dtype=object))
    assert counted.tolist() == [len(text.split()) for text in texts]


def test_thai_word_count_counts_letters_not_marks(sentences):
    # scripts without spaces count a word per two characters; a mark is part of the character it is written on
    texts = sentences["th"]
    stripped = ["".join(c for c in text if not unicodedata.category(c).startswith("M")) for text in texts]
    assert stripped != texts
    stage = DirtyWordsFilter()
    languages = np.array(["th"] * len(texts), dtype=object)
    assert stage.word_counts(texts, languages).tolist() == stage.word_counts(stripped, languages).tolist()


def test_decomposed_english_counts_like_its_composed_form(real_documents):
    page = next(
        text
        for text, source in zip(real_documents["text"].to_pylist(), real_documents["source"].to_pylist(), strict=True)
        if source == "postgresql_docs" and len(text) > 3000
    )
    words = page[:3000].split()
    accented = ("café", "naïve", "résumé", "fiancée", "déjà", "Señor", "Zoë")
    composed = [
        # adult words alone, and one with an accent written on its last letter (ń: another word, in NFC one code
        # point, in NFD "n" + U+0301, where the old classes saw "porn" followed by a break)
        splice(words, (*accented, "porn", "xxx", "porń"), 10),
        splice(words, accented, 7),
        splice(words[:150], ("porń", "bdsm", "café"), 3),
    ]
    decomposed = [unicodedata.normalize("NFD", text) for text in composed]
    assert all(a != b for a, b in zip(composed, decomposed, strict=True))
    languages = np.array(["en"] * len(composed), dtype=object)
    for stage in (AdultWordsFilter(max_count=1), DirtyWordsFilter(max_count=1, max_density=0.004)):
        counts = stage.text_counts(composed, languages, limit=100)
        assert stage.text_counts(decomposed, languages, limit=100).tolist() == counts.tolist()
        assert stage.word_counts(decomposed, languages).tolist() == stage.word_counts(composed, languages).tolist()
        nfc, nfd = stage.process(table(composed, "en")), stage.process(table(decomposed, "en"))
        assert nfd.rejected["id"].to_pylist() == nfc.rejected["id"].to_pylist()
        assert nfd.rejected["reason"].to_pylist() == nfc.rejected["reason"].to_pylist()
    adult = AdultWordsFilter(max_count=1)
    assert adult.text_counts(decomposed, languages, limit=100).tolist() == [2, 0, 1], "porn, xxx; bdsm"
    assert pc.count_substring_regex(pa.array(composed), "porń").to_pylist() == [1, 0, 1]
    result = adult.process(table(decomposed, "en"))
    assert result.rejected["reason"].to_pylist() == ["adult_words:too_many", "adult_words:too_dense"]


class TinyMarkedList(DirtyWordsFilter):
    """Entries over a, b, a combining acute, a space and "!": starting with, ending in and holding a mark."""

    def words_for(self, language: str) -> tuple[str, ...]:
        return ("a", "ab", "a\u0301", "\u0301b", "a b", "a!", "b\u0301 a", "ba\u0301b")

    def spaced(self, language: str) -> bool:
        return language != "th"


@pytest.mark.parametrize("language", ["en", "th"], ids=["spaced", "unspaced"])
def test_presence_pattern_is_exact_on_every_short_text_with_marks(language):
    # every text of up to 6 characters over a, B, b, U+0301, space and "!": the counts of the stage (only the texts
    # its presence pattern finds are doubled) equal those of doubling and counting every text
    import itertools

    from refinery.filters.word_lists import SEPARATORS, alternation, counted_entries, presence_pattern

    stage = TinyMarkedList()
    words = counted_entries(stage.words_for(language), stage.spaced(language))
    assert presence_pattern(words, stage.spaced(language)) is not None
    texts = ["".join(t) for n in range(7) for t in itertools.product("aBb\u0301 !", repeat=n)]
    # matched in normal form (a + U+0301 is á there, as the entry a + U+0301 is): tests/test_word_lists_normal_form.py
    normal = [unicodedata.normalize("NFC", text) for text in texts]
    doubled = pc.replace_substring_regex(pa.array(normal), SEPARATORS, r"\1\1")
    expected = pc.count_substring_regex(doubled, alternation(words, stage.spaced(language))).to_pylist()
    got = stage.text_counts(texts, np.array([language] * len(texts), dtype=object), limit=100)
    assert got.tolist() == expected
    assert max(expected) >= 3 and sum(1 for count in expected if count) > len(texts) // 10
    # the multi-word entries count where the text holds them as written (tests/test_word_lists_phrases.py)
    for entry, forms in (
        ("a b", ("a b", "a  b", "a B", "a!b")),
        ("b\u0301 a", ("b\u0301 a", "b\u0301 !a", "B\u0301 a", "b a")),
    ):
        alone = pc.count_substring_regex(doubled, alternation((entry,), stage.spaced(language))).to_pylist()
        assert [alone[texts.index(text)] for text in forms] == [1, 0, 1, 0], entry


def test_ordinary_words_among_the_entries_are_not_counted_by_default(sentences):
    """A Bengali page that names Bangladesh is not "too dense"; a listed insult still counts; ``excluded_words={}``
    counts every shipped entry (the lists as they ship)."""
    words = " ".join(sentences["bn"]).split()[:150]
    country = splice(words, ("বাংলাদেশ",), 3)  # 3 in ~150 words: over the 0.01 density limit if counted
    insult = splice(words, ("মাগী",), 3)
    default, as_shipped = DirtyWordsFilter(), DirtyWordsFilter(excluded_words={})
    languages = np.array(["bn"] * 2, dtype=object)
    assert default.text_counts([country, insult], languages, limit=100).tolist() == [0, 3]
    assert as_shipped.text_counts([country, insult], languages, limit=100).tolist() == [3, 3]
    assert default.process(table([country, insult], "bn")).kept["id"].to_pylist() == [0]
    assert as_shipped.process(table([country, insult], "bn")).kept["id"].to_pylist() == []
