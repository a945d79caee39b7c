"""``line_dedup``: ccNet-style line dedup: lines frequent in their bucket are removed from every document.

Phases, each a Ray map with a marker:

1. ``buckets``: each shard's document count; the sorted shards are cut into fixed groups of consecutive shards
   of at most ``bucket_documents`` documents (a shard larger than that is a bucket of its own). The buckets
   depend only on the shard names and their row counts, never on workers or partitions;
2. ``lines`` (a task and a writer per group of consecutive shards, :mod:`refinery.dedup.shard_groups`): every
   line normalised (``normalisation``, FineWeb's by default) and hashed (xxh3-64), counted per shard, summed per
   (bucket, line) over the group (a group may span buckets), and the (bucket, hash, count) rows hash-partitioned;
3. ``counts`` (a task per partition, reading one file per ``lines`` writer): counts summed per bucket and line;
   the lines seen **more than** ``max_repeats`` times in their bucket are written per bucket.

The decision, per shard: every line whose hash is frequent in the shard's bucket is removed, **all of its
occurrences included** (as ccNet does: the first occurrence is not special, the line is boilerplate wherever it
is). Counts are occurrences, so a line repeated inside one document counts each time. Blank lines are never
counted or removed. A document left with no non-blank line is rejected (``line_dedup:empty``; the rejected row
holds the document as it entered the stage). Counters: ``lines_removed`` and ``chars_removed`` (characters of
the removed lines and their line breaks) over the documents kept.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from refinery.dedup.decisions import ShardDecider, check_decision_list, shard_jobs, write_shard_list
from refinery.dedup.lines import split_lines, without_lines
from refinery.dedup.phases import phase_dir, run_phase, writer_name, writers
from refinery.dedup.shard_groups import shard_group_jobs
from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT
from refinery.pipelines.partitions import (
    KEY_MIN_PARTITIONS,
    LINE_PARTITION_BYTES,
    partition_count,
    partition_of,
    read_partition,
    splitmix64,
    write_partitioned,
)
from refinery.pipelines.stages import GlobalContext, GlobalStage, StageResult, register_stage, split_by_mask

CHUNK_DOCUMENTS = 2_000


def count_rows(job: dict[str, Any]) -> int:
    """Phase ``buckets``: a shard's document count (from the Parquet footer)."""
    fs, inner = storage.filesystem(job["path"])
    with fs.open(inner, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def assign_buckets(rows: list[int], bucket_documents: int) -> list[int]:
    """Bucket of each shard (in sorted shard order): consecutive shards up to ``bucket_documents`` documents."""
    buckets, bucket, filled = [], 0, 0
    for count in rows:
        if filled and filled + count > bucket_documents:
            bucket, filled = bucket + 1, 0
        buckets.append(bucket)
        filled += count
    return buckets


def shard_line_counts(path: str, normalisation: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct line hashes, occurrences of each) of one shard's countable lines."""
    fs, inner = storage.filesystem(path)
    hashes, counts = [], []
    with fs.open(inner, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=CHUNK_DOCUMENTS, columns=[TEXT]):
            lines = split_lines(batch.column(0), normalisation, seed)
            unique, count = np.unique(lines.hashes[lines.countable], return_counts=True)
            hashes.append(unique)
            counts.append(count)
    return summed(
        np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
        np.concatenate(counts) if counts else np.zeros(0, np.int64),
    )


def summed(hashes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts summed per distinct hash (hashes sorted)."""
    unique, inverse = np.unique(hashes, return_inverse=True)
    return unique, np.bincount(inverse, weights=counts, minlength=len(unique)).astype(np.int64)


def count_group_lines(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``lines``: occurrences of each normalised line in a group of consecutive shards (``job["members"]``,
    each with its bucket), summed per (bucket, line) and partitioned by (bucket, line) as one writer.

    A group may span buckets: every row carries its bucket and is summed and partitioned by it, so ``counts``
    sees the same (bucket, line) totals whatever the grouping (a line's count never leaks into another bucket).
    """
    buckets, hashes, counts = [], [], []
    for member in job["members"]:
        unique, totals = shard_line_counts(member["path"], job["normalisation"], job["seed"])
        buckets.append(np.full(len(unique), member["bucket"], np.int32))
        hashes.append(unique)
        counts.append(totals)
    bucket = np.concatenate(buckets) if buckets else np.zeros(0, np.int32)
    hashes_all = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    counts_all = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    order = np.lexsort((hashes_all, bucket))
    bucket, hashes_all, counts_all = bucket[order], hashes_all[order], counts_all[order]
    new_key = np.ones(len(order), dtype=bool)
    new_key[1:] = (bucket[1:] != bucket[:-1]) | (hashes_all[1:] != hashes_all[:-1])
    starts = np.flatnonzero(new_key)
    bucket, unique = bucket[starts], hashes_all[starts]
    totals = np.add.reduceat(counts_all, starts) if len(starts) else np.zeros(0, np.int64)
    table = pa.table(
        {
            "hash": pa.array(unique, pa.uint64()),
            "count": pa.array(totals, pa.int64()),
            "bucket": pa.array(bucket, pa.int32()),
        }
    )
    keys = unique ^ splitmix64(bucket.astype(np.uint64))
    write_partitioned(job["out"], job["writer"], table, partition_of(keys, job["partitions"]), job["partitions"])
    return {"distinct_lines": len(unique), "lines": int(counts_all.sum()), "shards": len(job["members"])}


def frequent_lines(job: dict[str, Any]) -> dict[str, int]:
    """Phase ``counts``: lines seen more than ``max_repeats`` times in their bucket, written per bucket."""
    table = read_partition(job["in"], job["partition"], job["writers"])
    empty = pa.table({"hash": pa.array([], pa.uint64()), "count": pa.array([], pa.int64())})
    if table is None or table.num_rows == 0:
        write_partitioned(job["out"], job["writer"], empty, np.zeros(0, np.int64), job["buckets"])
        return {"frequent": 0}
    bucket = table.column("bucket").to_numpy()
    hashes = table.column("hash").to_numpy()
    counts = table.column("count").to_numpy()
    order = np.lexsort((hashes, bucket))
    bucket, hashes, counts = bucket[order], hashes[order], counts[order]
    starts = np.flatnonzero(np.concatenate([[True], (bucket[1:] != bucket[:-1]) | (hashes[1:] != hashes[:-1])]))
    sums = np.add.reduceat(counts, starts)
    frequent = sums > job["max_repeats"]
    rows = pa.table({"hash": pa.array(hashes[starts][frequent]), "count": pa.array(sums[frequent], pa.int64())})
    write_partitioned(job["out"], job["writer"], rows, bucket[starts][frequent].astype(np.int64), job["buckets"])
    return {"frequent": int(frequent.sum())}


class LineDedupDecision(ShardDecider):
    """Per shard: remove the lines frequent in the shard's bucket; reject documents left empty."""

    stage_name = "line_dedup"
    buckets: str
    buckets_sha256: str
    frequent_dir: str
    partitions: int
    normalisation: str
    seed: int

    def load(self, shard_index: int) -> Any:
        fs, inner = storage.filesystem(self.buckets)
        with fs.open(inner, "rb") as handle:
            bucket = json.loads(handle.read())["buckets"][shard_index]
        table = read_partition(self.frequent_dir, bucket, writers(self.partitions))
        return np.zeros(0, np.uint64) if table is None else np.sort(table.column("hash").to_numpy())

    def decide(self, batch: pa.Table, frequent: np.ndarray) -> StageResult:
        texts = batch.column(TEXT)
        lines = split_lines(texts, self.normalisation, self.seed)
        remove = lines.countable & np.isin(lines.hashes, frequent)
        touched = np.bincount(lines.parent[remove], minlength=lines.documents) > 0
        remaining = np.bincount(lines.parent[lines.countable & ~remove], minlength=lines.documents)
        keep = remaining > 0
        rebuilt = without_lines(lines, remove)
        original = pc.fill_null(texts, "").cast(pa.large_string()).combine_chunks()
        new_texts = pc.if_else(pa.array(touched), rebuilt, original)
        kept_removed = remove & keep[lines.parent]
        chars = int(pc.sum(pc.utf8_length(lines.lines.filter(pa.array(kept_removed)))).as_py() or 0)
        removed_lines = int(kept_removed.sum())
        reasons = [None if k else self.reason("empty") for k in keep]
        result = split_by_mask(batch, keep, reasons)
        result.kept = batch.set_column(batch.column_names.index(TEXT), TEXT, new_texts).filter(pa.array(keep))
        result.counters = {"lines_removed": removed_lines, "chars_removed": chars + removed_lines}
        return result


@register_stage("line_dedup")
class LineDedup(GlobalStage):
    """Remove lines seen more than ``max_repeats`` times in a bucket of ``bucket_documents`` documents."""

    max_repeats: int = Field(default=6, ge=1)
    bucket_documents: int = Field(default=30_000_000, ge=1)
    normalisation: Literal["none", "whitespace", "fineweb"] = "fineweb"
    num_partitions: int | None = Field(default=None, ge=1, le=65_536, description="null: from partition_bytes")
    partition_bytes: int = Field(default=LINE_PARTITION_BYTES, ge=1, description="input bytes per partition")

    def prepare(self, context: GlobalContext) -> LineDedupDecision:
        shards_file, shards_sha = write_shard_list(context)
        fs, work = storage.filesystem(context.work_dir)
        buckets_path = storage.join(work, "buckets", "buckets.json")
        rows = run_phase(context, "buckets", count_rows, shard_jobs(context))
        buckets = assign_buckets(rows, self.bucket_documents)
        data = (json.dumps({"buckets": buckets, "rows": rows}, sort_keys=True) + "\n").encode()
        storage.write_bytes_atomic(fs, buckets_path, data)
        lines_dir, frequent_dir = phase_dir(context, "lines", "rows"), phase_dir(context, "counts", "frequent")
        parts = partition_count(context, self.num_partitions, self.partition_bytes, KEY_MIN_PARTITIONS)
        jobs = shard_group_jobs(
            context,
            self.partition_bytes,
            out=lines_dir,
            partitions=parts,
            normalisation=self.normalisation,
            seed=context.seed,
        )
        for job in jobs:
            for member in job["members"]:
                member["bucket"] = buckets[member["shard"]]
        counted = run_phase(context, "lines", count_group_lines, jobs, partitioned=["rows"])
        groups_written = len(counted)  # from the phase's results: a resumed run reads what was written
        count_jobs = [
            {
                "partition": k,
                "in": lines_dir,
                "writers": writers(groups_written),
                "out": frequent_dir,
                "writer": writer_name(k),
                "buckets": max(buckets, default=0) + 1,
                "max_repeats": self.max_repeats,
            }
            for k in range(parts)
        ]
        run_phase(context, "counts", frequent_lines, count_jobs, partitioned=["frequent"])
        check = [
            {"directory": frequent_dir, "shard": b, "writers": writers(parts)}
            for b in range(max(buckets, default=0) + 1)
        ]
        context.map(check_decision_list, check)
        return LineDedupDecision(
            shards_file=shards_file,
            shards_sha256=shards_sha,
            buckets=f"{context.work_dir.rstrip('/')}/buckets/buckets.json",
            buckets_sha256=hashlib.sha256(data).hexdigest(),
            frequent_dir=frequent_dir,
            partitions=parts,
            normalisation=self.normalisation,
            seed=context.seed,
        )
