"""FineWeb quality filter (Penedo et al. 2024; datatrove's ``FineWebQualityFilter`` defaults).

Rejects pages where too few lines end in terminal punctuation (``line_punct_ratio``), too many lines are short
(``short_line_ratio``), too many characters sit in duplicated lines (``char_dup_ratio``), or there are too many
newlines per word (``list_ratio``): the list-like, menu-like pages FineWeb's ablations found harmful.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field

from refinery.filters.gopher import _DocumentRuleFilter
from refinery.filters.text_stats import duplicates, sentence_terminals
from refinery.pipelines.documents import TEXT
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask


@register_stage("fineweb_quality")
class FineWebQualityFilter(_DocumentRuleFilter):
    """FineWeb's line-punctuation, short-line, duplicated-character and list-ratio rules."""

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    stop_chars: list[str] | None = Field(default=None, description="line-ending marks; null: sentence terminals")
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3

    def setup_once(self) -> None:
        """Build the code-point tables and load the compiled word counter (on-disk cache) before the first batch."""
        self.word_counts(pa.array(["warm up"], pa.string()))

    def word_counts(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """``len(text_stats.tokenize(text))`` of every text, in one compiled pass (``token_kernels``)."""
        from refinery.filters.token_kernels import arrow_utf8, tables, token_counts

        return token_counts(*arrow_utf8(texts), *tables())

    def process_batch(self, batch: pa.Table) -> StageResult:
        texts = batch.column(TEXT)
        counts = self.word_counts(texts).tolist()
        reasons = [self.first_failure(text or "", count) for text, count in zip(texts.to_pylist(), counts, strict=True)]
        keep = np.array([reason is None for reason in reasons], dtype=bool)
        return split_by_mask(batch, keep, [None if r is None else self.reason(r) for r in reasons])

    def first_failure(self, text: str, word_count: int | None = None) -> str | None:
        """The first failing rule; ``word_count`` is the text's token count when the caller has it."""
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return "empty"
        stops = tuple(self.stop_chars) if self.stop_chars is not None else sentence_terminals()
        ratio = sum(1 for line in lines if line.endswith(stops)) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return "line_punct_ratio"
        if sum(1 for line in lines if len(line) <= self.short_line_length) / len(lines) > self.short_line_thr:
            return "short_line_ratio"
        if duplicates(lines)[1] / len(text.replace("\n", "")) > self.char_duplicates_ratio:
            return "char_dup_ratio"
        if word_count is None:
            word_count = int(self.word_counts(pa.array([text], pa.string()))[0])
        if text.count("\n") / max(word_count, 1) > self.new_line_ratio:
            return "list_ratio"
        return None
