"""Llama 3's duplicated n-gram coverage, per line: remove long lines made of repeated content.

Line-level dedup removes lines repeated across documents; it cannot catch a single very long, unique line that
repeats itself inside (a log dump, a stack trace, a keyword-stuffed footer). For every line with at least
``min_words`` words, the share of its word characters covered by word n-grams that occur more than once *within the
line* is computed (Rae et al.'s duplicated n-gram coverage, applied to a line); lines above
``max_coverage`` are removed. Documents left empty are rejected (``line_ngram_repetition:all_lines_removed``).
Counters ``lines_removed`` and ``chars_removed`` record the edit.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from refinery.filters.text_stats import token_ids
from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask, split_edited


def duplicated_ngram_coverage(tokens: tuple[str, ...], n: int) -> float:
    """Share of the characters of ``tokens`` inside a repeat of an n-gram seen earlier in the same sequence.

    First occurrences do not count (as in Gopher's duplicated n-gram fraction), so prose with a parallel
    sentence or two is not taken for a log line. Computed by a compiled kernel (one hash pass).
    """
    if len(tokens) < n + 1:
        return 0.0
    from refinery.filters.ngram_kernels import repeated_ngram_coverage  # numba: loaded when first needed

    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    return float(repeated_ngram_coverage(token_ids(tokens), lengths, n))


WORDS = re.compile(r"\w+")


@register_stage("line_ngram_repetition")
class LineNgramRepetitionFilter(LanguageAwareMapStage):
    """Remove lines whose duplicated word n-gram coverage is above a threshold."""

    n: int = Field(default=4, ge=1, le=10)
    min_words: int = Field(default=20, ge=2, description="shorter lines are never removed by this rule")
    max_coverage: float = Field(default=0.4, gt=0.0, le=1.0)

    def setup_once(self) -> None:
        """Load the compiled kernel and the word-character table before the first batch (once per worker)."""
        self.removed_lines(pa.array(["warm up"], pa.string()))

    def clean(self, text: str) -> tuple[str, int]:
        """The text without repetitive lines, and how many lines went."""
        _, lines, _ = self.removed_lines(pa.array([text], pa.string()))
        return drop_lines(text, lines.tolist()), len(lines)

    def removed_lines(self, texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(text index, line index) of every line to remove, and which texts are blank, in one compiled pass."""
        from refinery.filters.ngram_kernels import repetitive_lines  # numba: loaded when first needed

        array = pc.fill_null(texts, "")
        array = (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).cast(pa.large_string())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        data = array.buffers()[2]
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)
        return repetitive_lines(data, offsets, character_classes(), self.n, self.min_words, self.max_coverage)

    def process_batch(self, batch: pa.Table) -> StageResult:
        removed_texts, removed_lines, blank = self.removed_lines(batch.column(TEXT))
        if removed_texts.size == 0:  # the common case: nothing edited; blank documents have no line left
            reasons = [self.reason("all_lines_removed") if b else None for b in blank.tolist()]
            return split_by_mask(batch, ~blank, reasons)
        texts = batch.column(TEXT).to_pylist()
        cleaned = [text or "" for text in texts]
        edited = np.unique(removed_texts)
        for index in edited.tolist():
            cleaned[index] = drop_lines(cleaned[index], removed_lines[removed_texts == index].tolist())
        keep = np.array([bool(text.strip()) for text in cleaned], dtype=bool)
        reasons = [None if k else self.reason("all_lines_removed") for k in keep]
        result = split_edited(batch, cleaned, keep, reasons)
        result.counters = {
            "lines_removed": int(removed_texts.size),
            "chars_removed": sum(len(texts[i] or "") - len(cleaned[i]) for i in edited.tolist()),
        }
        return result


def drop_lines(text: str, lines: list[int]) -> str:
    """``text`` without the lines (indices into ``text.split("\n")``) named."""
    if not lines:
        return text
    gone = set(lines)
    return "\n".join(line for index, line in enumerate(text.split("\n")) if index not in gone)


@cache
def character_classes() -> np.ndarray:
    """Per code point: bit 1 when ``re``'s ``\\w`` matches it (``isalnum()`` or ``_``), bit 2 when ``isspace()``."""
    characters = list(map(chr, range(0x110000)))
    word = np.fromiter(map(str.isalnum, characters), dtype=np.uint8, count=len(characters))
    word[ord("_")] = 1
    space = np.fromiter(map(str.isspace, characters), dtype=np.uint8, count=len(characters))
    return word | (space << 1)
