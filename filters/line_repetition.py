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

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.filters.text_stats import token_ids
from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_edited


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

    def clean(self, text: str) -> tuple[str, int]:
        """The text without repetitive lines, and how many lines went."""
        kept: list[str] = []
        removed = 0
        for line in text.split("\n"):
            tokens = tuple(WORDS.findall(line)) if len(line) >= 2 * self.min_words else ()
            if len(tokens) >= self.min_words and duplicated_ngram_coverage(tokens, self.n) > self.max_coverage:
                removed += 1
            else:
                kept.append(line)
        return ("\n".join(kept) if removed else text), removed

    def process_batch(self, batch: pa.Table) -> StageResult:
        texts = batch.column(TEXT).to_pylist()
        outcomes = [self.clean(text or "") for text in texts]
        cleaned = [text for text, _ in outcomes]
        keep = np.array([bool(text.strip()) for text in cleaned], dtype=bool)
        reasons = [None if k else self.reason("all_lines_removed") for k in keep]
        result = split_edited(batch, cleaned, keep, reasons)
        result.counters = {
            "lines_removed": sum(removed for _, removed in outcomes),
            "chars_removed": sum(len(o or "") - len(c) for o, c in zip(texts, cleaned, strict=True)),
        }
        return result
