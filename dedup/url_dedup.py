"""``url_dedup``: one document per normalised URL, the most recent crawl (Llama 3 §3.1.1, first dedup step).

Phases (:mod:`refinery.dedup.keyed`): ``keys`` (normalised URL → 128-bit key, hash-partitioned by Ray tasks)
→ ``groups`` (per partition: the document with the most recent ``date`` is kept, ties by smallest id; the rest
are dropped per shard) → the decision per shard: ``url_dedup:older_crawl`` with ``url_duplicate_of`` naming the
kept crawl. Documents without a usable URL pass untouched and are counted (``no_url``). The normalisation is in
:mod:`refinery.dedup.url_normalise` (http and https unified, host lower-cased, default port, fragment and one
trailing slash removed, query kept unless ``keep_query: false``).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from refinery.dedup.keyed_stage import KeyedDecision, KeyedDedup
from refinery.dedup.url_normalise import normalise_urls
from refinery.pipelines.documents import URL
from refinery.pipelines.stages import register_stage

COLUMN = "url_duplicate_of"


class UrlDedupDecision(KeyedDecision):
    stage_name = "url_dedup"
    rule = "older_crawl"
    column = COLUMN
    keep_query: bool = True

    def counters(self, batch: pa.Table) -> dict[str, int]:
        if URL not in batch.column_names:
            return {"no_url": batch.num_rows}
        if batch.column(URL).null_count == batch.num_rows:
            return {"no_url": batch.num_rows}
        keys = normalise_urls(batch.column(URL).to_pylist(), keep_query=self.keep_query)
        return {"no_url": sum(k is None for k in keys)}


@register_stage("url_dedup")
class UrlDedup(KeyedDedup):
    """Keep the most recent crawl of each normalised URL (ties: smallest id); URL-less documents pass."""

    decision = UrlDedupDecision
    keep_query: bool = True

    def key_job(self) -> dict[str, Any]:
        return {"key": "url", "keep_query": self.keep_query}

    def keep_rule(self) -> str:
        return "recent"

    def decision_fields(self) -> dict[str, Any]:
        return {"keep_query": self.keep_query}
