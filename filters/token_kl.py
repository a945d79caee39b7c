"""Llama 3's token-distribution KL divergence: drop documents whose words look nothing like the corpus.

A global stage in two phases over a deterministic sample (every ``sample_every``-th document of every shard, up
to ``sample_per_shard``), each a Ray map over shard files with a phase marker so a resumed run skips it:

1. ``reference``: lowercase word counts per shard, merged into the corpus unigram distribution (the
   ``vocabulary_size`` most frequent words plus one bucket for the rest), saved with the run as
   ``work/reference_unigram.parquet``;
2. ``threshold``: the KL divergence ``KL(document || reference)`` of every sampled document; unless the recipe
   fixes ``max_kl``, the threshold is the ``1 - reject_fraction`` quantile of those values, saved as
   ``work/threshold.json``.

Then every document gets a ``token_kl`` column and those above the threshold are rejected
(``token_kl:outlier_distribution``): pages of tokens the corpus almost never uses (hex dumps, encoded blobs,
word salad, another script than the corpus's).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT
from refinery.pipelines.stages import GlobalContext, GlobalStage, MapStage, StageResult, register_stage, split_by_mask

WORD = re.compile(r"\w+")
OTHER = "\x00other"
COLUMN = "token_kl"


def document_words(text: str, max_chars: int) -> list[str]:
    return WORD.findall(text[:max_chars].lower())


def sample_counts(job: dict[str, Any]) -> dict[str, int]:
    """Phase 1 (per shard): word counts over the shard's sampled documents."""
    counts: Counter = Counter()
    for text in _sampled_texts(job):
        counts.update(document_words(text, job["max_chars"]))
    return dict(counts)


def sample_divergences(job: dict[str, Any]) -> list[float]:
    """Phase 2 (per shard): KL divergence of each sampled document from the reference."""
    reference = load_reference(job["reference"])
    return [kl_divergence(document_words(t, job["max_chars"]), reference) for t in _sampled_texts(job)]


def _sampled_texts(job: dict[str, Any]) -> list[str]:
    fs, path = storage.filesystem(job["path"])
    with fs.open(path, "rb") as handle:
        texts = pq.read_table(handle, columns=[TEXT]).column(TEXT).to_pylist()
    return [t or "" for t in texts[:: job["every"]][: job["limit"]]]


def load_reference(path: str) -> dict[str, float]:
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        table = pq.read_table(handle)
    return dict(zip(table["word"].to_pylist(), table["probability"].to_pylist(), strict=True))


def kl_divergence(words: list[str], reference: dict[str, float]) -> float:
    """KL(document || reference) in nats; words outside the reference vocabulary share its ``other`` mass."""
    if not words:
        return 0.0
    counts = Counter(w if w in reference else OTHER for w in words)
    total = sum(counts.values())
    divergence = 0.0
    for word, count in counts.items():
        p = count / total
        divergence += p * math.log(p / reference[word])
    return divergence


class TokenKlDecision(MapStage):
    """The per-shard half of ``token_kl``: score with the saved reference, reject above the threshold."""

    stage_name = "token_kl"
    reference: str
    reference_sha256: str
    threshold: float
    max_chars: int

    _reference: dict[str, float] | None = PrivateAttr(default=None)

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(COLUMN, pa.float32())]

    def setup(self) -> None:
        if self._reference is None:
            self._reference = load_reference(self.reference)

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        scores = np.array(
            [kl_divergence(document_words(t or "", self.max_chars), self._reference) for t in batch[TEXT].to_pylist()],
            dtype=np.float32,
        )
        keep = scores <= self.threshold
        reasons = [None if k else self.reason("outlier_distribution") for k in keep]
        return split_by_mask(batch.append_column(COLUMN, pa.array(scores, pa.float32())), keep, reasons)


@register_stage("token_kl")
class TokenKlFilter(GlobalStage):
    """Reject documents whose word distribution diverges from the corpus's own (two global phases)."""

    vocabulary_size: int = Field(default=100_000, ge=100)
    sample_every: int = Field(default=1, ge=1)
    sample_per_shard: int = Field(default=2_000, ge=1)
    reject_fraction: float = Field(default=0.01, gt=0.0, lt=1.0)
    max_kl: float | None = Field(default=None, gt=0.0, description="fixed threshold; null: from reject_fraction")
    max_chars: int = Field(default=20_000, ge=100)

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(COLUMN, pa.float32())]

    def _jobs(self, context: GlobalContext, **extra: Any) -> list[dict[str, Any]]:
        return [
            {
                "path": context.input_path(name),
                "every": self.sample_every,
                "limit": self.sample_per_shard,
                "max_chars": self.max_chars,
                **extra,
            }
            for name in context.shard_names
        ]

    def prepare(self, context: GlobalContext) -> MapStage:
        fs, work = storage.filesystem(context.work_dir)
        reference_path = f"{context.work_dir}/reference_unigram.parquet"
        if not context.phase_done("reference"):
            merged: Counter = Counter()
            for counts in context.map(sample_counts, self._jobs(context)):
                merged.update(counts)
            storage.write_bytes_atomic(fs, storage.join(work, "reference_unigram.parquet"), self._reference(merged))
            context.mark_phase_done("reference")
        threshold_path = storage.join(work, "threshold.json")
        if not context.phase_done("threshold"):
            threshold = self.max_kl
            values: list[float] = []
            if threshold is None:
                for shard_values in context.map(sample_divergences, self._jobs(context, reference=reference_path)):
                    values.extend(shard_values)
                threshold = float(np.quantile(values, 1 - self.reject_fraction)) if values else math.inf
            storage.write_json_atomic(fs, threshold_path, {"threshold": threshold, "sampled_documents": len(values)})
            context.mark_phase_done("threshold")
        threshold = storage.read_json(fs, threshold_path)["threshold"]
        with fs.open(storage.join(work, "reference_unigram.parquet"), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        return TokenKlDecision(
            reference=reference_path, reference_sha256=digest, threshold=threshold, max_chars=self.max_chars
        )

    def _reference(self, counts: Counter) -> bytes:
        """The top words by count (ties by word, so the bytes are deterministic) and the rest as one bucket."""
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        top, rest = ranked[: self.vocabulary_size], ranked[self.vocabulary_size :]
        total = sum(counts.values()) or 1
        other = max(sum(c for _, c in rest), 1)  # never zero: unseen words must stay possible
        words = [w for w, _ in top] + [OTHER]
        probabilities = [c / (total + 1) for _, c in top] + [other / (total + 1)]
        table = pa.table({"word": pa.array(words, pa.string()), "probability": pa.array(probabilities, pa.float64())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **storage.PARQUET_OPTIONS)
        return sink.getvalue().to_pybytes()
