"""Multi-word entries of the word lists ("hijo de puta") count where the text holds them as they are written.

The counting runs on the text with every run of word breaks doubled, so that adjacent matches each keep a boundary
of their own. An entry's own breaks were not doubled, so the 134 shipped entries made of several words (ar 46,
es 30, bn 22, fr 15, pt 7, ja 6 written with ・, de 4, hi 2, ur 2) could never match. Each entry now reads with the
break runs between its words doubled (``entry_pattern``), so it counts exactly where the plain text holds its words
with the same breaks between them. The texts are real translated messages (``tests/fixtures/phrase_languages.json``,
from Debian's GLib and GTK 3 catalogues; see ``scripts/build_marked_scripts_fixture.py``).
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
from word_list_texts import fixture_sentences, splice, table

from refinery.filters.word_lists import (
    SEPARATORS,
    AdultWordsFilter,
    DirtyWordsFilter,
    adult_word_list,
    alternation,
    counted_entries,
    presence_pattern,
    profanity_lists,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "phrase_languages.json"
# shipped multi-word entries that were never counted: none of their words is an entry of its own
SPLICED = {
    "es": ("me cago en dios", "me cago en tu madre", "me cago en la leche"),
    "ar": ("يا ابن الكلب", "يا حمار", "يا ولد الحرام"),
    "fr": ("fils de chien", "ta gueule", "tête de nœud"),
}


@pytest.fixture(scope="module")
def sentences() -> dict[str, list[str]]:
    return fixture_sentences(FIXTURE.name)


def counts(stage, texts: list[str], language: str) -> list[int]:
    return stage.text_counts(texts, np.array([language] * len(texts), dtype=object), limit=100).tolist()


@pytest.mark.parametrize("language", sorted(SPLICED))
def test_multi_word_entries_spliced_into_real_text_are_counted(sentences, language):
    listed = profanity_lists()[language]
    assert set(SPLICED[language]) <= set(listed)
    assert not {word for entry in SPLICED[language] for word in entry.split()} & set(listed)
    words = " ".join(sentences[language]).split()
    plain, spliced = " ".join(words), splice(words, SPLICED[language])
    stage = DirtyWordsFilter(max_count=2)
    assert counts(stage, [plain, spliced, spliced.upper()], language) == [0, 3, 3]
    result = stage.process(table([plain, spliced], language))
    assert result.kept["id"].to_pylist() == [0]
    assert result.rejected["reason"].to_pylist() == ["dirty_words:too_many"]


@pytest.mark.parametrize("language", sorted(SPLICED))
def test_an_entry_counts_only_with_the_breaks_it_is_written_with(sentences, language):
    """One space in the entry is one space in the text: two spaces, a line break, a no-break space or a comma
    between its words is not the entry (as in C4's literal matching); punctuation around it is a boundary."""
    words = " ".join(sentences[language]).split()
    stage = DirtyWordsFilter()
    as_written = [splice(words, (entry,)) for entry in SPLICED[language]]
    around = [splice(words, (f"«{entry}»!",)) for entry in SPLICED[language]]
    ends = [f"{SPLICED[language][0]} {' '.join(words)} {SPLICED[language][1]}"]
    assert counts(stage, as_written + around + ends, language) == [1, 1, 1, 1, 1, 1, 2]
    other_breaks = [
        splice(words, (entry.replace(" ", separator, 1),))
        for entry in SPLICED[language]
        for separator in ("  ", "\n", "\u00a0", ", ", "-")
    ]
    inside_words = [splice(words, (form,)) for entry in SPLICED[language] for form in (f"x{entry}", f"{entry}x")]
    assert counts(stage, other_breaks + inside_words, language) == [0] * (len(other_breaks) + len(inside_words))


def test_japanese_entries_written_with_a_middle_dot_count_with_that_dot():
    # Japanese is written without spaces: an entry counts anywhere, with its ・ as written
    text = "この映画は{}と呼ばれた。"
    forms = ("ディープ・スロート", "ディープ・・スロート", "ディープ スロート", "ディープ・スロート" * 2)
    assert counts(DirtyWordsFilter(), [text.format(form) for form in forms], "ja") == [1, 0, 0, 2]


class TinyPhraseList(DirtyWordsFilter):
    """Entries of words over a, b and a combining acute, joined by a space, "!" or both, and one that ends in
    "!" (cut to its first word by the presence pattern)."""

    whole_only: bool = False

    def words_for(self, language: str) -> tuple[str, ...]:
        whole = ("a b", "b a b", "a !b", "a!b", "b\u0301 a", "ab")
        return whole if self.whole_only else (*whole, "a b!")

    def spaced(self, language: str) -> bool:
        return language != "th"


@pytest.mark.parametrize("whole_only", [True, False], ids=["words-joined", "with-a-cut-entry"])
@pytest.mark.parametrize("language", ["en", "th"], ids=["spaced", "unspaced"])
def test_presence_pattern_is_exact_on_every_short_text_with_multi_word_entries(language, whole_only):
    """Every text of up to 6 characters over a, B, b, U+0301, space and "!": an entry of words joined by breaks
    matches the doubled text exactly where the plain text holds it as written (standing alone in spaced lists);
    the presence pattern finds exactly the texts whose doubled form has a match (more, where an entry is cut);
    the stage counts what doubling and counting every text counts."""
    stage = TinyPhraseList(whole_only=whole_only)
    spaced = stage.spaced(language)
    words = counted_entries(stage.words_for(language), spaced)
    texts = ["".join(t) for n in range(7) for t in itertools.product("aBb\u0301 !", repeat=n)]
    # the stages match each text in NFC (a + U+0301 is á there): the rule below is the rule on that form
    normal = [unicodedata.normalize("NFC", text) for text in texts]
    doubled = pc.replace_substring_regex(pa.array(normal), SEPARATORS, r"\1\1")
    expected = pc.count_substring_regex(doubled, alternation(words, spaced)).to_pylist()
    for entry in words if whole_only else ():
        # the rule, spelled out on the plain text: the breaks of this alphabet are " " and "!"
        alone = "(?:^|[ !])({})(?=$|[ !])" if spaced else "({})"
        plain = [re.search(alone.format(re.escape(entry)), text, re.IGNORECASE) is not None for text in normal]
        once = pc.count_substring_regex(doubled, alternation((entry,), spaced)).to_pylist()
        assert [count > 0 for count in once] == plain, entry
        assert sum(plain) >= 5, entry
    found = pc.match_substring_regex(pa.array(normal), presence_pattern(words, spaced)).to_pylist()
    if whole_only:
        assert found == [count > 0 for count in expected]
    else:
        assert all(f for f, count in zip(found, expected, strict=True) if count)
        assert sum(found) > sum(1 for count in expected if count)
    got = stage.text_counts(texts, np.array([language] * len(texts), dtype=object), limit=100)
    assert got.tolist() == expected
    assert max(expected) >= 2


def test_english_lists_have_no_multi_word_entry():
    """The English lists (dirty_words' en, adult_words' list) have no break between two words: every entry reads as
    written, so the alternations are the ones the stages counted with before the change."""
    from refinery.filters.word_lists import entry_pattern

    for words in (profanity_lists()["en"], adult_word_list()):
        assert all(entry_pattern(entry) == re.escape(entry) for entry in words)


def test_the_sample_decides_as_before(real_documents):
    """Decisions, rejected ids and match counts on the sample's real documents (896 of them English, the rest de,
    fr, es, ru, zh, it, ja, pt) are those measured before multi-word entries counted (6dc9787)."""
    results = {}
    for stage in (DirtyWordsFilter(), AdultWordsFilter()):
        result = stage.process(real_documents)
        texts = pc.fill_null(real_documents["text"], "").to_pylist()
        found = stage.text_counts(texts, stage.languages(real_documents), limit=10**6)
        rejected = sorted(zip(result.rejected["id"].to_pylist(), result.rejected["reason"].to_pylist(), strict=True))
        results[stage.stage_name] = (result.kept.num_rows, rejected, int(found.sum()), int((found > 0).sum()))
    assert results == {
        "dirty_words": (999, [], 137, 50),
        "adult_words": (
            997,
            [
                ("debian_changelog/596bd4a68cff41301d25", "adult_words:too_many"),
                ("debian_changelog/9901eadf4bee423fc48b", "adult_words:too_many"),
            ],
            43,
            16,
        ),
    }


def test_ordinary_phrases_among_the_entries_are_not_counted_by_default():
    """Three multi-word entries that counting them turned on are ordinary phrases: bn "mother's body", hi "take in
    the mouth", ja "back style" (the back view of a garment or a haircut). ``excluded_words={}`` counts them."""
    marked = json.loads((FIXTURE.parent / "marked_scripts.json").read_text())["languages"]
    bengali = splice(" ".join(entry["text"] for entry in marked["bn"][:3]).split(), ("মায়ের দেহ",))
    hindi = splice(" ".join(entry["text"] for entry in marked["hi"][:3]).split(), ("मुँह में ले",))
    japanese = "このコートはバック・スタイルも美しい。"
    default, as_shipped = DirtyWordsFilter(), DirtyWordsFilter(excluded_words={})
    for language, text in (("bn", bengali), ("hi", hindi), ("ja", japanese)):
        assert counts(default, [text], language) == [0]
        assert counts(as_shipped, [text], language) == [1]
