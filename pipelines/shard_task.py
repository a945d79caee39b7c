"""One shard through one map segment: read once, apply the fused stages in memory, write once, mark done.

This is a plain function of (shard, segment, run directory): it runs the same inside a Ray task, in a test,
or in a notebook. Its outputs depend only on the shard's bytes and the recipe, never on which worker ran it or
when, which is what makes runs byte-identical and resumable.

A stage that raises on a batch does not lose the batch: the batch is bisected until the documents that raise
are isolated, and those are errored with the exception text while the rest go on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.accounting import StageTally, check_shard, text_chars
from refinery.pipelines.documents import ERROR, FILE, STAGE, conform
from refinery.pipelines.plan import Segment
from refinery.pipelines.readers import READERS, FileReadError, IngestBatch
from refinery.pipelines.readers.base import INGEST
from refinery.pipelines.recipe import InputSpec
from refinery.pipelines.shards import Shard
from refinery.pipelines.stages import MapStage, ShardInfo, StageResult, with_error

#: Test hook for resilience tests: a folder; the first attempt at each shard whose name contains
#: ``REFINERY_CRASH_MATCH`` kills its own worker process mid-shard (after the first batch).
CRASH_DIR_ENV = "REFINERY_CRASH_ONCE_DIR"
CRASH_MATCH_ENV = "REFINERY_CRASH_MATCH"


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to process one shard of one segment; small and picklable."""

    shard: Shard
    input_spec: InputSpec
    segment: Segment
    run_dir: str
    batch_size: int
    #: the shard's identity, told to every stage before the first batch (``MapStage.begin_shard``)
    info: ShardInfo | None = None


_PREPARED: dict[str, tuple[MapStage, ...]] = {}


def prepared_stages(segment: Segment) -> tuple[MapStage, ...]:
    """The segment's stages after ``setup()``, once per worker process (models load once, not per shard)."""
    key = segment.fingerprint
    if key not in _PREPARED:
        stages = tuple(stage for stage in segment.stages if isinstance(stage, MapStage))
        for stage in stages:
            stage.setup()
        _PREPARED[key] = stages
    return _PREPARED[key]


def run_stage_isolated(stage: MapStage, batch: pa.Table) -> StageResult:
    """``stage.process(batch)``; if it raises, bisect so only the documents that raise are errored."""
    try:
        result = stage.process(batch)
    except Exception as error:
        if batch.num_rows <= 1:
            message = f"{type(error).__name__}: {error}"
            return StageResult(
                kept=batch.slice(0, 0), rejected=_no_rows_with_reason(batch), errored=with_error(batch, message)
            )
        middle = batch.num_rows // 2
        return _merge(run_stage_isolated(stage, batch.slice(0, middle)), run_stage_isolated(stage, batch.slice(middle)))
    produced = result.kept.num_rows + result.rejected.num_rows + result.num_errored
    if produced != batch.num_rows:
        raise RuntimeError(
            f"stage {stage.stage_name!r} returned {produced} rows for a batch of {batch.num_rows}: a stage must "
            "return every document as kept, rejected or errored"
        )
    return result


def _no_rows_with_reason(batch: pa.Table) -> pa.Table:
    return batch.slice(0, 0).append_column("reason", pa.array([], pa.string()))


def _merge(first: StageResult, second: StageResult) -> StageResult:
    def concat(a: pa.Table | None, b: pa.Table | None) -> pa.Table | None:
        tables = [t for t in (a, b) if t is not None and t.num_rows]
        if not tables:
            return a if a is not None else b
        return pa.concat_tables(tables, promote_options="default")

    counters = dict(first.counters)
    for key, value in second.counters.items():
        counters[key] = counters.get(key, 0) + value
    return StageResult(
        kept=concat(first.kept, second.kept),
        rejected=concat(first.rejected, second.rejected),
        errored=concat(first.errored, second.errored),
        counters=counters,
    )


class _Outputs:
    """The three Parquet outputs of a shard, written under temporary names until ``commit``."""

    def __init__(self, job: ShardJob, fs: Any, root: str) -> None:
        segment = job.segment
        self.file_key = job.shard.key
        path = lambda kind: storage.join(root, segment.path(kind, job.shard.name))  # noqa: E731
        self.kept = storage.ParquetSink(fs, path("kept"), segment.kept_schema)
        self.rejected = storage.ParquetSink(fs, path("rejected"), segment.rejected_schema)
        self.errors = storage.ParquetSink(fs, path("errors"), segment.errors_schema)

    def reject(self, rows: pa.Table) -> None:
        self.rejected.write(conform(rows, self.rejected.schema))

    def error(self, rows: pa.Table | None, stage: str) -> None:
        if rows is None or rows.num_rows == 0:
            return
        rows = rows.append_column(STAGE, pa.array([stage] * rows.num_rows, pa.string()))
        rows = rows.append_column(FILE, pa.array([self.file_key] * rows.num_rows, pa.string()))
        self.errors.write(conform(rows, self.errors.schema))

    def file_error(self, message: str) -> None:
        row = {STAGE: [INGEST], FILE: [self.file_key], ERROR: [message]}
        self.errors.write(conform(pa.table(row), self.errors.schema))

    def sinks(self) -> tuple[storage.ParquetSink, ...]:
        return (self.kept, self.rejected, self.errors)


def _input_batches(job: ShardJob, fs: Any, root: str) -> Iterator[IngestBatch | pa.Table]:
    """Ingest batches for segment 0; the previous segment's kept rows for later segments."""
    if job.segment.reads_inputs:
        yield from READERS[job.input_spec.format](job.shard, job.input_spec, job.batch_size)
        return
    previous = storage.join(root, f"segments/{job.segment.index - 1:02d}/kept/{job.shard.name}.parquet")
    with fs.open(previous, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=job.batch_size):
            yield pa.Table.from_batches([batch])


def _maybe_crash(job: ShardJob) -> None:
    folder, match = os.environ.get(CRASH_DIR_ENV), os.environ.get(CRASH_MATCH_ENV, "")
    if not folder or match not in job.shard.name:
        return
    flag = os.path.join(folder, job.shard.name)
    if not os.path.exists(flag):
        open(flag, "w").close()
        os._exit(137)


def process_shard(job: ShardJob) -> dict[str, Any]:
    """Run one shard through its segment and return its stats (also written to ``stats/``)."""
    fs, root = storage.filesystem(job.run_dir)
    segment = job.segment
    stages = prepared_stages(segment)
    info = job.info or ShardInfo(job.shard.name, job.shard.source, 0)
    tallies = [StageTally(name) for name in segment.stage_names]
    seconds = [0.0] * len(tallies)
    cpu = [0.0] * len(tallies)  # CPU seconds per stage: comparable between runs whatever the machine's load
    started, started_at, cpu_started = time.perf_counter(), time.time(), time.process_time()
    for offset, stage in enumerate(stages):  # a decision list loaded here counts as its stage's time
        clock, cpu_clock = time.perf_counter(), time.process_time()
        stage.begin_shard(info)
        seconds[len(tallies) - len(stages) + offset] += time.perf_counter() - clock
        cpu[len(tallies) - len(stages) + offset] += time.process_time() - cpu_clock
    outputs = _Outputs(job, fs, root)
    file_errors: list[str] = []
    try:
        batches = _input_batches(job, fs, root)
        batch_count = 0
        while True:
            clock, cpu_clock = time.perf_counter(), time.process_time()
            try:
                item = next(batches)
            except StopIteration:
                break
            except FileReadError as error:
                file_errors.append(str(error))
                outputs.file_error(str(error))
                break
            if isinstance(item, IngestBatch):
                seconds[0] += time.perf_counter() - clock
                cpu[0] += time.process_time() - cpu_clock
                chars_in = text_chars(item.kept) + text_chars(item.rejected)
                tallies[0].add(item.kept, item.rejected, item.errored, chars_in, item.counters)
                outputs.reject(item.rejected)
                outputs.error(item.errored, INGEST)
                table = item.kept
            else:
                table = item
            first = len(tallies) - len(stages)
            _run_chain(stages, table, tallies[first:], (seconds, cpu), first, outputs)
            batch_count += 1
            if batch_count == 1:
                _maybe_crash(job)
        for sink in outputs.sinks():
            sink.commit()
    except BaseException:
        for sink in outputs.sinks():
            sink.abort()
        raise
    stats = {
        "shard": job.shard.name,
        "source": job.shard.source,
        "file": job.shard.key,
        "segment": segment.index,
        "stages": [tally.to_dict() for tally in tallies],
        "file_errors": file_errors,
        "rows": {"kept": outputs.kept.rows, "rejected": outputs.rejected.rows, "errors": outputs.errors.rows},
    }
    check_shard(stats)
    storage.write_json_atomic(fs, storage.join(root, segment.path("stats", job.shard.name)), stats)
    marker = {
        "shard": job.shard.name,
        "fingerprint": segment.fingerprint,
        "seconds": [
            {"stage": t.stage, "seconds": round(s, 6), "cpu_seconds": round(c, 6)}
            for t, s, c in zip(tallies, seconds, cpu, strict=True)
        ],
        "wall_seconds": round(time.perf_counter() - started, 6),
        # when and how much CPU (this worker process, Arrow's threads included): the report's CPU-per-node plot
        "started_at": round(started_at, 3),
        "cpu_seconds": round(time.process_time() - cpu_started, 6),
        "kept_sha256": outputs.kept.sha256,
        "kept_rows": outputs.kept.rows,
        "worker": storage.worker_identity(),
    }
    storage.write_json_atomic(fs, storage.join(root, segment.path("done", job.shard.name)), marker)
    return {"stats": stats, "marker": marker}


def _run_chain(
    stages: tuple[MapStage, ...],
    table: pa.Table,
    tallies: list[StageTally],
    clocks: tuple[list[float], list[float]],
    first: int,
    outputs: _Outputs,
) -> None:
    seconds, cpu = clocks
    for offset, (stage, tally) in enumerate(zip(stages, tallies, strict=True)):
        clock, cpu_clock = time.perf_counter(), time.process_time()
        chars_in = text_chars(table)
        result = run_stage_isolated(stage, table) if table.num_rows else StageResult(table, _no_rows_with_reason(table))
        seconds[first + offset] += time.perf_counter() - clock
        cpu[first + offset] += time.process_time() - cpu_clock
        tally.add(result.kept, result.rejected, result.errored, chars_in, result.counters)
        outputs.reject(result.rejected)
        outputs.error(result.errored, stage.stage_name)
        table = result.kept
    outputs.kept.write(conform(table, outputs.kept.schema))
