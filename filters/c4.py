"""C4 quality filter (Raffel et al. 2020; datatrove's ``C4QualityFilter`` defaults): line edits and page rules.

Per line (lines are stripped): drop it if a word is longer than ``max_word_length``; remove Wikipedia-style
citations (``[1]``, ``[edit]``); drop it without terminal punctuation (or ending in an ellipsis), with fewer
than ``min_words_per_line`` words, mentioning javascript, or mentioning cookies / terms of use. Per page:
reject ``lorem_ipsum`` and ``curly_bracket`` (a ``{`` in a kept line), and ``too_few_sentences`` when the kept
lines hold fewer than ``min_num_sentences``. Kept pages keep only the kept lines; the counters
``lines_removed`` and ``chars_removed`` record the edit.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.filters.text_stats import count_sentences, tokenize
from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_edited

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@register_stage("c4_quality")
class C4QualityFilter(LanguageAwareMapStage):
    """C4's line removals and page rules; every threshold configurable, -1 disables the numeric ones."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True

    def clean(self, text: str) -> tuple[str | None, str]:
        """(kept text, '') or (None, rule) for a rejected page."""
        sentences = 0
        kept: list[str] = []
        for raw in text.splitlines():
            line = raw.strip()
            line_words = line.split()
            if self.max_word_length != -1 and any(len(word) > self.max_word_length for word in line_words):
                continue
            if self.remove_citations:
                line = CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith("...")):
                continue
            if len(line_words) < self.min_words_per_line:
                continue
            lowered = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lowered:
                return None, "lorem_ipsum"
            if self.filter_javascript and "javascript" in lowered:
                continue
            if self.filter_curly_bracket and "{" in line:
                return None, "curly_bracket"
            if self.filter_policy and any(phrase in lowered for phrase in POLICY_SUBSTRINGS):
                continue
            if self.min_num_sentences != -1:
                sentences += count_sentences(tokenize(line))
            kept.append(line)
        if sentences < self.min_num_sentences:
            return None, "too_few_sentences"
        return "\n".join(kept).strip(), ""

    def process_batch(self, batch: pa.Table) -> StageResult:
        texts = batch.column(TEXT).to_pylist()
        outcomes = [self.clean(text or "") for text in texts]
        outcomes = [(None, "all_lines_removed") if c is not None and not c.strip() else (c, r) for c, r in outcomes]
        keep = np.array([cleaned is not None for cleaned, _ in outcomes], dtype=bool)
        reasons = [None if cleaned is not None else self.reason(rule) for cleaned, rule in outcomes]
        new_text = [
            cleaned if cleaned is not None else text for (cleaned, _), text in zip(outcomes, texts, strict=True)
        ]
        result = split_edited(batch, new_text, keep, reasons)
        before_lines = sum(len((t or "").splitlines()) for t, k in zip(texts, keep, strict=True) if k)
        after_lines = sum(len(c.splitlines()) for c, _ in outcomes if c is not None)
        chars_before = pc.sum(pc.utf8_length(batch.column(TEXT).filter(pa.array(keep)))).as_py() or 0
        chars_after = sum(len(c) for c, _ in outcomes if c is not None)
        result.counters = {"lines_removed": before_lines - after_lines, "chars_removed": chars_before - chars_after}
        return result
