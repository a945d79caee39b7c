"""Per-language parameters for any map stage: thresholds for English need not be thresholds for Japanese.

A stage that subclasses :class:`LanguageAwareMapStage` gets a ``per_language`` field in the recipe::

    - stage: gopher_quality
      min_doc_words: 50
      per_language:
        de: {min_doc_words: 40}  # overrides for documents whose ``lang`` is de

Each override is validated as the stage itself would validate it (a wrong key names the language and the
field). ``only_languages: [en]`` applies a stage to those languages alone (Gopher's stop words and C4's
punctuation rules are English rules); documents of other languages pass through unchanged. Documents are
grouped by their ``lang`` column (set by ``language_id``), each group runs through its language's variant, and
the outputs come back in input order, so results stay deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from refinery.pipelines.documents import REASON
from refinery.pipelines.languages import check_languages
from refinery.pipelines.stages import MapStage, StageResult

LANG_COLUMN = "lang"
_ORDER = "__refinery_order"


class LanguageAwareMapStage(MapStage):
    """A map stage whose parameters can be overridden per language; subclasses implement ``process_batch``."""

    per_language: dict[str, dict[str, Any]] = Field(default_factory=dict)
    only_languages: list[str] | None = Field(
        default=None, description="apply to documents of these languages only; others pass untouched"
    )

    _variants: dict[str, MapStage] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _validate_overrides(self) -> LanguageAwareMapStage:
        check_languages(self.only_languages, "only_languages")
        check_languages(sorted(self.per_language), "per_language")
        base = self.model_dump(exclude={"per_language", "only_languages"})
        for language, override in self.per_language.items():
            if "per_language" in override:
                raise ValueError(f"per_language.{language}: overrides cannot nest per_language")
            try:
                self._variants[language] = type(self)(**{**base, **override})
            except ValidationError as error:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
                raise ValueError(f"per_language.{language}: {problems}") from None
        return self

    def setup(self) -> None:
        self.setup_once()
        for variant in self._variants.values():
            variant.setup()

    def setup_once(self) -> None:
        """Heavy state for this parameter set (called for the base and for every language variant)."""

    def process_batch(self, batch: pa.Table) -> StageResult:
        raise NotImplementedError(f"{type(self).__name__} must implement process_batch()")

    def process(self, batch: pa.Table) -> StageResult:
        has_languages = LANG_COLUMN in batch.column_names
        if (not self._variants and self.only_languages is None) or not has_languages or batch.num_rows == 0:
            return self.process_batch(batch)
        languages = pc.fill_null(batch.column(LANG_COLUMN), "").to_numpy(zero_copy_only=False).astype(object)
        indexed = batch.append_column(_ORDER, pa.array(np.arange(batch.num_rows, dtype=np.int64)))
        untouched = np.zeros(len(languages), dtype=bool)
        if self.only_languages is not None:
            untouched = ~np.isin(languages, self.only_languages)
        overridden = np.isin(languages, list(self._variants)) & ~untouched
        parts: list[tuple[MapStage, pa.Table]] = []
        passed = indexed.filter(pa.array(untouched))
        if (~overridden & ~untouched).any():
            parts.append((self, indexed.filter(pa.array(~overridden & ~untouched))))
        for language, variant in sorted(self._variants.items()):
            mask = languages == language
            if mask.any():
                parts.append((variant, indexed.filter(pa.array(mask))))
        results = [stage.process_batch(part) for stage, part in parts]
        # A batch with no document in ``only_languages`` has no part to run: nothing is rejected, but the result
        # must still hold an (empty) rejected table, or the shard task fails on ``None.num_rows``.
        rejected = _restore_order([r.rejected for r in results])
        if rejected is None:
            rejected = indexed.slice(0, 0).drop_columns([_ORDER]).append_column(REASON, pa.array([], pa.string()))
        return StageResult(
            kept=_restore_order([passed, *(r.kept for r in results)]),
            rejected=rejected,
            errored=_restore_order([r.errored for r in results if r.errored is not None]),
            counters=_sum_counters([r.counters for r in results]),
        )


def _restore_order(tables: list[pa.Table]) -> pa.Table | None:
    """The tables merged back into input order, or None when there are none (errored may be absent)."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return None
    merged = pa.concat_tables(tables, promote_options="permissive")
    return merged.sort_by(_ORDER).drop_columns([_ORDER])


def _sum_counters(all_counters: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counters in all_counters:
        for key, value in counters.items():
            total[key] = total.get(key, 0) + value
    return total
