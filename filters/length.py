"""Document length filter: drops documents too short to teach anything or too long to be one page.

Vectorised over the batch with ``pyarrow.compute``; lengths are in Unicode characters.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from refinery.pipelines.documents import TEXT
from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import StageResult, register_stage, split_by_mask


@register_stage("length")
class DocumentLengthFilter(LanguageAwareMapStage):
    """Keep documents with ``min_chars <= len(text) <= max_chars`` (``max_chars`` null: no upper bound)."""

    min_chars: int = Field(default=50, ge=0)
    max_chars: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> DocumentLengthFilter:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) must be >= min_chars ({self.min_chars})")
        return self

    def process_batch(self, batch: pa.Table) -> StageResult:
        lengths = pc.fill_null(pc.utf8_length(batch.column(TEXT)), 0)
        too_short = pc.less(lengths, self.min_chars)
        too_long = pc.greater(lengths, self.max_chars) if self.max_chars is not None else pc.equal(lengths, -1)
        reasons = pc.if_else(
            too_short, pa.scalar(self.reason("too_short")), pc.if_else(too_long, self.reason("too_long"), None)
        )
        return split_by_mask(batch, pc.is_null(reasons), reasons)
