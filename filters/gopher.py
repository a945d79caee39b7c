"""Gopher quality and repetition filters (Rae et al. 2021, Table A1), with datatrove's default thresholds.

Rule names (``gopher_quality:RULE``) and the datatrove reason each corresponds to:

=======================  ==============================
too_few_words            gopher_short_doc
too_many_words           gopher_long_doc
short_mean_word          gopher_below_avg_threshold
long_mean_word           gopher_above_avg_threshold
too_many_hashes          gopher_too_many_hashes
too_many_ellipses        gopher_too_many_ellipsis
too_many_bullets         gopher_too_many_bullets
too_many_end_ellipses    gopher_too_many_end_ellipsis
too_few_alpha_words      gopher_below_alpha_threshold
too_few_stop_words       gopher_enough_stop_words
=======================  ==============================

``gopher_repetition`` uses datatrove's rule names as they are (``dup_para_frac``, ``top_2_gram``,
``duplicated_5_n_grams``, ...). Both decide on the same statistics and in the same order as datatrove, so the
first failing rule is the one reported; words come from :func:`refinery.filters.text_stats.words`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr

from refinery.filters.text_stats import duplicates, is_symbol, split_lines, split_paragraphs, token_ids, words
from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class _DocumentRuleFilter(LanguageAwareMapStage):
    """Runs ``first_failure(text)`` per document; subclasses hold the rules."""

    def first_failure(self, text: str) -> str | None:
        raise NotImplementedError

    def process_batch(self, batch: pa.Table) -> StageResult:
        texts = batch.column(TEXT).to_pylist()
        reasons = [self.first_failure(text or "") for text in texts]
        keep = np.array([reason is None for reason in reasons], dtype=bool)
        labelled = [None if r is None else self.reason(r) for r in reasons]
        return split_by_mask(batch, keep, labelled)


@register_stage("gopher_quality")
class GopherQualityFilter(_DocumentRuleFilter):
    """Gopher quality rules: document length in words, word length, symbols, bullets, alphabetic words, stop words."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = Field(default=0.8, description="datatrove: max_non_alpha_words_ratio")
    min_stop_words: int | None = 2
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS))

    def first_failure(self, text: str) -> str | None:
        tokens = words(text)
        n_words = len(tokens)
        # per distinct token (a C-speed count first): the same sums as per token, far fewer Python steps
        distinct = Counter(tokens)
        n_non_symbol = non_symbol_chars = 0
        for token, count in distinct.items():
            if not is_symbol(token):
                n_non_symbol += count
                non_symbol_chars += len(token) * count
        if self.min_doc_words and n_non_symbol < self.min_doc_words:
            return "too_few_words"
        if self.max_doc_words and n_non_symbol > self.max_doc_words:
            return "too_many_words"
        mean_length = non_symbol_chars / n_non_symbol if n_non_symbol else float("nan")
        if self.min_avg_word_length and mean_length < self.min_avg_word_length:
            return "short_mean_word"
        if self.max_avg_word_length and mean_length > self.max_avg_word_length:
            return "long_mean_word"
        if n_words == 0:
            return "too_few_words"
        if self.max_symbol_word_ratio and text.count("#") / n_words > self.max_symbol_word_ratio:
            return "too_many_hashes"
        if self.max_symbol_word_ratio and (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
            return "too_many_ellipses"
        lines = text.splitlines() or [""]
        if self.max_bullet_lines_ratio:
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines)
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return "too_many_bullets"
        if self.max_ellipsis_lines_ratio:
            ellipses = sum(line.rstrip().endswith(("...", "…")) for line in lines)
            if ellipses / len(lines) > self.max_ellipsis_lines_ratio:
                return "too_many_end_ellipses"
        if self.min_alpha_words_ratio:
            alpha = sum(count for token, count in distinct.items() if any(map(str.isalpha, token)))
            if alpha / n_words < self.min_alpha_words_ratio:
                return "too_few_alpha_words"
        if self.min_stop_words and len(set(self.stop_words).intersection(distinct)) < self.min_stop_words:
            return "too_few_stop_words"
        return None


@register_stage("gopher_repetition")
class GopherRepetitionFilter(_DocumentRuleFilter):
    """Gopher repetition rules: duplicated lines and paragraphs, dominant and duplicated word n-grams."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = Field(default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)])
    dup_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    )
    _rule_arrays: tuple[np.ndarray, ...] | None = PrivateAttr(default=None)

    def setup_once(self) -> None:
        """Load the compiled n-gram kernels (numba import and on-disk cache) before the first batch, once per worker."""
        from refinery.filters.ngram_kernels import first_ngram_failure

        warm = np.arange(12, dtype=np.int64)
        first_ngram_failure(warm, np.ones(12, dtype=np.int64), 100, *self._ngram_rules())

    def first_failure(self, text: str) -> str | None:
        if not text:
            return "empty"
        paragraphs = split_paragraphs(text.strip())
        repeated, repeated_chars = duplicates(paragraphs)
        if self.dup_para_frac and repeated / len(paragraphs) > self.dup_para_frac:
            return "dup_para_frac"
        if self.dup_para_char_frac and repeated_chars / len(text) > self.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = split_lines(text)
        repeated, repeated_chars = duplicates(lines)
        if self.dup_line_frac and repeated / len(lines) > self.dup_line_frac:
            return "dup_line_frac"
        if self.dup_line_char_frac and repeated_chars / len(text) > self.dup_line_char_frac:
            return "dup_line_char_frac"
        from refinery.filters.ngram_kernels import first_ngram_failure  # numba: loaded when first needed

        tokens = words(text)
        failed = first_ngram_failure(
            token_ids(tokens),
            np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)),
            len(text),
            *self._ngram_rules(),
        )
        return None if failed < 0 else self._ngram_rule_names()[failed]

    def _ngram_rules(self) -> tuple[np.ndarray, ...]:
        """The n-gram thresholds as arrays for the compiled kernel: top ns, top fractions, dup ns, dup fractions."""
        if self._rule_arrays is None:
            self._rule_arrays = (
                np.array([n for n, _ in self.top_n_grams], dtype=np.int64),
                np.array([f for _, f in self.top_n_grams], dtype=np.float64),
                np.array([n for n, _ in self.dup_n_grams], dtype=np.int64),
                np.array([f for _, f in self.dup_n_grams], dtype=np.float64),
            )
        return self._rule_arrays

    def _ngram_rule_names(self) -> list[str]:
        return [f"top_{n}_gram" for n, _ in self.top_n_grams] + [f"duplicated_{n}_n_grams" for n, _ in self.dup_n_grams]
