"""``exact_dedup``: one document per exact text, after a configurable normalisation.

Phases (:mod:`refinery.dedup.keyed`): ``keys`` (128-bit xxh3 of the normalised text, hash-partitioned by Ray
tasks) → ``groups`` (per partition: the keeper by ``keep``; the rest dropped per shard) → the decision per shard:
``exact_dedup:duplicate`` with ``exact_duplicate_of`` naming the kept twin.

``normalisation``: ``none`` (byte-identical texts), ``whitespace`` (runs of whitespace collapsed, trimmed) or
``fineweb`` (lower-case, accents stripped, digits → 0, punctuation → space, whitespace collapsed; see
:mod:`refinery.dedup.normalise`). ``keep``: ``auto`` (highest ``quality_score`` when that column exists, else most
recent ``date``, ties by smallest id), ``recent`` or ``smallest_id``.
"""

from __future__ import annotations

from typing import Any, Literal

from refinery.dedup.keyed_stage import KeyedDecision, KeyedDedup
from refinery.pipelines.stages import register_stage

COLUMN = "exact_duplicate_of"


class ExactDedupDecision(KeyedDecision):
    stage_name = "exact_dedup"
    rule = "duplicate"
    column = COLUMN


@register_stage("exact_dedup")
class ExactDedup(KeyedDedup):
    """Keep one document per identical (normalised) text."""

    decision = ExactDedupDecision
    normalisation: Literal["none", "whitespace", "fineweb"] = "whitespace"
    keep: Literal["auto", "recent", "smallest_id"] = "auto"

    def key_job(self) -> dict[str, Any]:
        return {"key": "text", "normalisation": self.normalisation}

    def keep_rule(self) -> str:
        return self.keep
