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
first failing rule is the one reported. Words are :func:`refinery.filters.text_stats.tokenize`'s tokens; both
stages compute them and their statistics in one compiled pass per batch over Arrow's UTF-8 buffer
(:mod:`refinery.filters.token_kernels`), which ``tests/test_gopher_kernels.py`` holds to the Python rules.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr

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

    def setup_once(self) -> None:
        """Build the code-point tables and load the compiled kernel (on-disk cache) before the first batch."""
        self.first_failures(pa.array(["warm up"], pa.string()))

    def first_failure(self, text: str) -> str | None:
        return self.first_failures(pa.array([text], pa.string()))[0]

    def process_batch(self, batch: pa.Table) -> StageResult:
        failures = self.first_failures(batch.column(TEXT))
        keep = np.array([rule is None for rule in failures], dtype=bool)
        return split_by_mask(batch, keep, [None if rule is None else self.reason(rule) for rule in failures])

    def first_failures(self, texts: pa.Array | pa.ChunkedArray) -> list[str | None]:
        """The first failing rule of every text (None: kept), in datatrove's order, from the compiled statistics."""
        from refinery.filters.token_kernels import arrow_utf8, pack_words, quality_statistics, tables

        statistics = quality_statistics(*arrow_utf8(texts), *tables(), *pack_words(sorted(set(self.stop_words))))
        words, non_symbol, non_symbol_chars, hashes, ellipses, lines, bullets, ellipsis_lines, alpha, stops = (
            statistics.T
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_length = non_symbol_chars / non_symbol  # NaN without words: every comparison false, as in Python
            per_word = np.maximum(words, 1)  # the ratios below only decide documents that have words
            rules = [
                ("too_few_words", bool(self.min_doc_words) and non_symbol < (self.min_doc_words or 0)),
                ("too_many_words", bool(self.max_doc_words) and non_symbol > (self.max_doc_words or 0)),
                ("short_mean_word", bool(self.min_avg_word_length) and mean_length < (self.min_avg_word_length or 0)),
                ("long_mean_word", bool(self.max_avg_word_length) and mean_length > (self.max_avg_word_length or 0)),
                ("too_few_words", words == 0),
                (
                    "too_many_hashes",
                    bool(self.max_symbol_word_ratio) and hashes / per_word > (self.max_symbol_word_ratio or 0),
                ),
                (
                    "too_many_ellipses",
                    bool(self.max_symbol_word_ratio) and ellipses / per_word > (self.max_symbol_word_ratio or 0),
                ),
                (
                    "too_many_bullets",
                    bool(self.max_bullet_lines_ratio) and bullets / lines > (self.max_bullet_lines_ratio or 0),
                ),
                (
                    "too_many_end_ellipses",
                    bool(self.max_ellipsis_lines_ratio)
                    and ellipsis_lines / lines > (self.max_ellipsis_lines_ratio or 0),
                ),
                (
                    "too_few_alpha_words",
                    bool(self.min_alpha_words_ratio) and alpha / per_word < (self.min_alpha_words_ratio or 0),
                ),
                ("too_few_stop_words", bool(self.min_stop_words) and stops < (self.min_stop_words or 0)),
            ]
        first = np.full(len(words), -1, dtype=np.int64)
        for index in reversed(range(len(rules))):  # the earliest failing rule wins
            first[np.asarray(rules[index][1], dtype=bool) & np.ones(len(words), dtype=bool)] = index
        return [None if index < 0 else rules[index][0] for index in first.tolist()]


#: gopher_repetition's rules before the n-gram ones, in the compiled kernel's numbering
REPETITION_RULES = ("empty", "dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")


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
        """Build the code-point tables and load the compiled kernels (on-disk cache) before the first batch."""
        self.first_failures(pa.array(["warm up"], pa.string()))

    def first_failure(self, text: str) -> str | None:
        return self.first_failures(pa.array([text], pa.string()))[0]

    def process_batch(self, batch: pa.Table) -> StageResult:
        failures = self.first_failures(batch.column(TEXT))
        keep = np.array([rule is None for rule in failures], dtype=bool)
        return split_by_mask(batch, keep, [None if rule is None else self.reason(rule) for rule in failures])

    def first_failures(self, texts: pa.Array | pa.ChunkedArray) -> list[str | None]:
        """The first failing rule of every text (None: kept): paragraphs and lines, then n-grams, compiled."""
        from refinery.filters.ngram_kernels import first_ngram_failures
        from refinery.filters.token_kernels import arrow_utf8, repetition_failures, tables

        failures, token_offsets, ids, lengths, text_lengths = repetition_failures(
            *arrow_utf8(texts),
            *tables(),
            float(self.dup_para_frac or 0.0),
            float(self.dup_para_char_frac or 0.0),
            float(self.dup_line_frac or 0.0),
            float(self.dup_line_char_frac or 0.0),
        )
        pending = failures < 0
        ngram = first_ngram_failures(ids, lengths, token_offsets, text_lengths, pending, *self._ngram_rules())
        failures[pending & (ngram >= 0)] = len(REPETITION_RULES) + ngram[pending & (ngram >= 0)]
        names = self._rule_names()
        return [None if failed < 0 else names[failed] for failed in failures.tolist()]

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

    def _rule_names(self) -> list[str]:
        return [
            *REPETITION_RULES,
            *(f"top_{n}_gram" for n, _ in self.top_n_grams),
            *(f"duplicated_{n}_n_grams" for n, _ in self.dup_n_grams),
        ]
