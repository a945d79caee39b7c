"""Llama 3's token-distribution KL divergence: drop documents whose words look nothing like the corpus.

A global stage in two phases over a deterministic sample (every ``sample_every``-th document of every shard, up
to ``sample_per_shard``), each a Ray map over shard files with a phase marker so a resumed run skips it:

1. ``reference``: lowercase word counts per shard, hash-partitioned by word (``work/reference/counts``); per
   word partition the corpus counts and its ``vocabulary_size`` most frequent words; the driver merges those
   lists into the corpus unigram distribution (the ``vocabulary_size`` most frequent words plus one bucket for
   the rest), saved with the run as ``work/reference_unigram.parquet``. (The driver used to merge every shard's
   whole word counts: 1.06 GB of Python dicts at 64x, growing with the corpus.)
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
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr

from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT
from refinery.pipelines.partitions import (
    partition_count,
    partition_of,
    read_checked,
    read_partition,
    write_checked,
    write_partitioned,
)
from refinery.pipelines.stages import GlobalContext, GlobalStage, MapStage, StageResult, register_stage, split_by_mask

WORD = re.compile(r"\w+")
OTHER = "\x00other"
COLUMN = "token_kl"


def document_words(text: str, max_chars: int) -> list[str]:
    return WORD.findall(text[:max_chars].lower())


def sample_counts(job: dict[str, Any]) -> dict[str, int]:
    """Phase 1, map (per shard): word counts over the shard's sampled documents, hash-partitioned by word."""
    counts: Counter = Counter()
    for text in _sampled_texts(job):
        counts.update(document_words(text, job["max_chars"]))
    words = list(counts)
    table = pa.table({"word": pa.array(words, pa.string()), "count": pa.array(list(counts.values()), pa.int64())})
    partitions = job["partitions"]
    write_partitioned(job["out"], job["writer"], table, partition_of(word_keys(words), partitions), partitions)
    return {"words": len(words)}


def word_keys(words: list[str]) -> np.ndarray:
    """A 64-bit key per word (its partition of the count shuffle): the same word, the same key, in any process."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(w.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for w in words
        ],
        dtype=np.uint64,
    )


#: the order of the reference's words: most frequent first, ties by word (UTF-8 byte order = code point order)
RANKING = [("count", "descending"), ("word", "ascending")]


def top_rows(table: pa.Table, size: int) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=RANKING)[:size])


def partition_top_words(job: dict[str, Any]) -> dict[str, Any]:
    """Phase 1, reduce (per word partition): each word's corpus count; the partition's ``size`` most frequent.

    A word partition holds every count of its words, so the corpus's top words are among the partitions' top
    words: the driver merges those lists (``size`` rows each) and never holds the vocabulary.
    """
    table = read_partition(job["in"], job["partition"], job["writers"])
    if table is None:
        table = pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    summed = table.group_by("word").aggregate([("count", "sum")])
    summed = pa.table({"word": summed.column("word"), "count": summed.column("count_sum")})
    top = top_rows(summed, job["size"])
    record = write_checked(job["top"], top)
    return {"total": int(pc.sum(summed.column("count")).as_py() or 0), "path": job["top"], "record": record}


def merged_top_words(results: list[dict[str, Any]], size: int) -> pa.Table:
    """The ``size`` most frequent words of the corpus from the partitions' lists, one list in memory at a time."""
    top = pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    for result in results:
        top = top_rows(pa.concat_tables([top, read_checked(result["path"], result["record"])]), size)
    return top


def sample_divergences(job: dict[str, Any]) -> np.ndarray:
    """Phase 2 (per shard): KL divergence of each sampled document from the reference (8 bytes each to the
    driver, not a Python float's 32)."""
    reference = load_reference(job["reference"])
    values = [kl_divergence(document_words(t, job["max_chars"]), reference) for t in _sampled_texts(job)]
    return np.array(values, dtype=np.float64)


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
            counts_dir = f"{context.work_dir}/reference/counts"
            parts = partition_count(context, None)
            jobs = self._jobs(context, out=counts_dir, partitions=parts)
            for index, job in enumerate(jobs):
                job["writer"] = f"w{index:06d}"
            context.map(sample_counts, jobs)
            writers = [job["writer"] for job in jobs]
            tops = context.map(
                partition_top_words,
                [
                    {
                        "in": counts_dir,
                        "partition": k,
                        "writers": writers,
                        "size": self.vocabulary_size,
                        "top": f"{context.work_dir}/reference/top/part-{k:05d}.parquet",
                    }
                    for k in range(parts)
                ],
            )
            top = merged_top_words(tops, self.vocabulary_size)
            total = sum(result["total"] for result in tops)
            reference = self._reference(top.column("word").to_pylist(), top.column("count").to_pylist(), total)
            storage.write_bytes_atomic(fs, storage.join(work, "reference_unigram.parquet"), reference)
            context.mark_phase_done("reference")
        threshold_path = storage.join(work, "threshold.json")
        if not context.phase_done("threshold"):
            threshold = self.max_kl
            values = np.zeros(0, np.float64)
            if threshold is None:
                shard_values = context.map(sample_divergences, self._jobs(context, reference=reference_path))
                values = np.concatenate([np.zeros(0, np.float64), *shard_values])
                threshold = float(np.quantile(values, 1 - self.reject_fraction)) if len(values) else math.inf
            storage.write_json_atomic(fs, threshold_path, {"threshold": threshold, "sampled_documents": len(values)})
            context.mark_phase_done("threshold")
        threshold = storage.read_json(fs, threshold_path)["threshold"]
        with fs.open(storage.join(work, "reference_unigram.parquet"), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        return TokenKlDecision(
            reference=reference_path, reference_sha256=digest, threshold=threshold, max_chars=self.max_chars
        )

    def _reference(self, top_words: list[str], top_counts: list[int], total: int) -> bytes:
        """The top words by count (ties by word, so the bytes are deterministic) and the rest as one bucket."""
        total = total or 1
        other = max(total - sum(top_counts), 1)  # never zero: unseen words must stay possible
        words = [*top_words, OTHER]
        probabilities = [c / (total + 1) for c in top_counts] + [other / (total + 1)]
        table = pa.table({"word": pa.array(words, pa.string()), "probability": pa.array(probabilities, pa.float64())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **storage.PARQUET_OPTIONS)
        return sink.getvalue().to_pybytes()
