"""The one shuffle mechanism of every global stage: key rows, hash-partition them into files, process each partition.

URL, exact, line, MinHash and semantic dedup (and any later global stage) all need the same thing: rows keyed
by something (a URL, a text hash, a band key, a cluster id) brought together with every other row of the same
key, without any process holding the corpus. The map side of a phase calls :func:`write_partitioned` once per
input shard (a Ray task): the rows are split by partition and each non-empty partition is written as
``DIR/part-NNNNN/WRITER.parquet``; last, an index ``DIR/_index/WRITER.json`` records every file's row count,
size and sha256. The reduce side (one Ray task per partition) calls :func:`read_partition`, which reads the
files of one partition from every writer in sorted writer order (so the result does not depend on which
task finished first) and checks each against its writer's index. A file that is missing, truncated or
altered raises :class:`IntermediateError` naming it; the global runner then invalidates the phase that wrote
it and recomputes it, so a corrupted intermediate is never silently used.

Memory per task is bounded by one input shard (map side) or one partition (reduce side), never the corpus.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage

INDEX_FOLDER = "_index"


class IntermediateError(RuntimeError):
    """An intermediate file failed validation (missing, wrong size, wrong checksum or row count)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"intermediate file {path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self):  # survives Ray's pickling with its fields intact
        return (IntermediateError, (self.path, self.problem))


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection on 64-bit integers that spreads every input bit over the output.

    The one copy every stage uses (partitioning, MinHash, line dedup, shard sampling), so a key hashes the same
    everywhere.
    """
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def partition_of(keys: np.ndarray, num_partitions: int) -> np.ndarray:
    """The partition of each 64-bit key: a splitmix64 finaliser, then modulo (uniform even for structured keys)."""
    return (splitmix64(keys) % np.uint64(num_partitions)).astype(np.int64)


def table_bytes(table: pa.Table) -> bytes:
    """A table as zstd Parquet bytes; the same table always gives the same bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **storage.PARQUET_OPTIONS)
    return sink.getvalue()


def _record(data: bytes, rows: int) -> dict[str, Any]:
    return {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_checked(path: str, table: pa.Table) -> dict[str, Any]:
    """Write ``table`` atomically to ``path`` (fsspec URL or local) and return its record (rows, bytes, sha256)."""
    fs, inner = storage.filesystem(path)
    data = table_bytes(table)
    storage.write_bytes_atomic(fs, inner, data)
    return _record(data, table.num_rows)


def read_checked(path: str, record: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """Read a file written by :func:`write_checked`, verifying size, sha256 and row count against ``record``."""
    fs, inner = storage.filesystem(path)
    try:
        with fs.open(inner, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise IntermediateError(path, "missing") from None
    if len(data) != record["bytes"]:
        raise IntermediateError(path, f"{len(data)} bytes, its writer recorded {record['bytes']}")
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise IntermediateError(path, "sha256 differs from what its writer recorded")
    # ParquetFile, not pq.read_table: the dataset layer read_table builds costs ~0.4 ms per call, which was most
    # of a reduce task's time at 64x (one small file per writer per partition: 0.63 -> 0.21 ms per file)
    table = pq.ParquetFile(pa.BufferReader(data)).read(columns=columns)
    if table.num_rows != record["rows"]:
        raise IntermediateError(path, f"{table.num_rows} rows, its writer recorded {record['rows']}")
    return table


def partition_path(directory: str, partition: int, writer: str) -> str:
    return f"{directory.rstrip('/')}/part-{partition:05d}/{writer}.parquet"


def index_path(directory: str, writer: str) -> str:
    return f"{directory.rstrip('/')}/{INDEX_FOLDER}/{writer}.json"


def write_partitioned(
    directory: str, writer: str, table: pa.Table, partitions: np.ndarray, num_partitions: int
) -> dict[str, Any]:
    """Write ``table``'s rows into their partitions (``partitions[i]`` is row i's) and index them.

    Rows keep their relative order inside a partition. The index is written last, so a writer whose index
    exists has written every one of its files.
    """
    partitions = np.asarray(partitions, dtype=np.int64)
    if len(partitions) != table.num_rows:
        raise ValueError(f"{len(partitions)} partition numbers for {table.num_rows} rows")
    if len(partitions) and (partitions.min() < 0 or partitions.max() >= num_partitions):
        raise ValueError(f"partition numbers must lie in [0, {num_partitions})")
    order = np.argsort(partitions, kind="stable")
    sorted_parts = partitions[order]
    table = table.take(pa.array(order))
    bounds = np.flatnonzero(np.diff(sorted_parts)) + 1
    starts = np.concatenate([[0], bounds]) if len(sorted_parts) else np.array([], dtype=np.int64)
    ends = np.concatenate([bounds, [len(sorted_parts)]]) if len(sorted_parts) else np.array([], dtype=np.int64)
    files: dict[str, Any] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        partition = int(sorted_parts[start])
        files[str(partition)] = write_checked(
            partition_path(directory, partition, writer), table.slice(start, end - start)
        )
    index = {"writer": writer, "num_partitions": num_partitions, "rows": table.num_rows, "files": files}
    fs, inner = storage.filesystem(index_path(directory, writer))
    storage.write_json_atomic(fs, inner, index)
    return index


#: Parsed writer indexes kept per worker process, up to this many bytes of index JSON (least recently used out).
INDEX_CACHE_BYTES = 64 * 2**20
_INDEX_CACHE: OrderedDict[tuple[str, tuple[Any, ...]], tuple[int, dict[str, Any]]] = OrderedDict()
_INDEX_CACHE_LOCK = threading.Lock()
_INDEX_CACHE_TOTAL = [0]  # bytes of index JSON in the cache: a running total, not a sum per insert


def _file_version(info: dict[str, Any]) -> tuple[Any, ...]:
    """What changes when a file is rewritten (an atomic rename gives a new mtime locally, a new ETag on S3)."""
    return tuple(info.get(key) for key in ("size", "mtime", "ETag", "LastModified", "created"))


def read_index(directory: str, writer: str) -> dict[str, Any]:
    """A writer's index, parsed once per worker process while the file is unchanged.

    Why: a decision stage reads one partition (its shard) from every writer, and each writer's index lists
    every shard; parsing all of them again for every shard made the per-shard cost grow with the number of
    shards (exact and MinHash dedup decisions: +67% and +130% seconds per MB from 8x to 64x).
    """
    path = index_path(directory, writer)
    fs, inner = storage.filesystem(path)
    try:
        info = fs.info(inner)
        key = (path, _file_version(info))
        with _INDEX_CACHE_LOCK:
            hit = _INDEX_CACHE.get(key)
            if hit is not None:
                _INDEX_CACHE.move_to_end(key)
                return hit[1]
        index = storage.read_json(fs, inner)
    except FileNotFoundError:
        raise IntermediateError(path, "missing (its writer never finished)") from None
    except ValueError as error:
        raise IntermediateError(path, f"unreadable index: {error}") from None
    size = int(info.get("size") or 0)
    with _INDEX_CACHE_LOCK:
        if key not in _INDEX_CACHE:
            _INDEX_CACHE[key] = (size, index)
            _INDEX_CACHE_TOTAL[0] += size
        while _INDEX_CACHE_TOTAL[0] > INDEX_CACHE_BYTES and len(_INDEX_CACHE) > 1:
            _INDEX_CACHE_TOTAL[0] -= _INDEX_CACHE.popitem(last=False)[1][0]
    return index


def read_partition(
    directory: str, partition: int, writers: list[str], columns: list[str] | None = None
) -> pa.Table | None:
    """Every writer's rows of one partition, concatenated in sorted writer order; ``None`` if there are none."""
    tables = []
    for writer in sorted(writers):
        record = read_index(directory, writer)["files"].get(str(partition))
        if record is not None:
            tables.append(read_checked(partition_path(directory, partition, writer), record, columns))
    if not tables:
        return None
    return pa.concat_tables(tables)


def phase_of(work_dir: str, path: str) -> str | None:
    """The phase folder an intermediate file lies in (its first path component under ``work_dir``)."""
    work = work_dir.rstrip("/") + "/"
    if not path.startswith(work):
        _, work_inner = storage.filesystem(work_dir)
        _, path_inner = storage.filesystem(path)
        work, path = work_inner.rstrip("/") + "/", path_inner
        if not path.startswith(work):
            return None
    return posixpath.normpath(path[len(work) :]).split("/")[0]


#: Default target of a shuffle's input bytes per partition (the previous segment's kept Parquet, compressed).
#: A reduce task then holds the rows derived from about this much input, whatever the corpus's size.
PARTITION_BYTES = 64 * 2**20
#: The exact-key shuffles (``url_dedup``, ``exact_dedup``) carry one small row per document (two key halves, id,
#: source, date, quality, shard: ~150 bytes), so a partition may take much more input: 1 GiB of input is ~1M
#: short pages, ~150 MB of rows. They keep at least ``KEY_MIN_PARTITIONS`` (the count they used to fix).
KEY_PARTITION_BYTES = 2**30
KEY_MIN_PARTITIONS = 16
#: ``line_dedup`` carries a row per line (~30 per short page): a quarter of that input per partition.
LINE_PARTITION_BYTES = 256 * 2**20
#: Partition folders are named part-NNNNN; more partitions than this would also mean tiny reduce tasks.
MAX_PARTITIONS = 65_536


def partitions_for_bytes(input_bytes: int, partition_bytes: int = PARTITION_BYTES) -> int:
    """``ceil(input_bytes / partition_bytes)`` clamped to ``1..MAX_PARTITIONS``."""
    if partition_bytes <= 0:
        raise ValueError(f"partition_bytes must be positive, got {partition_bytes}")
    return max(1, min(MAX_PARTITIONS, -(-input_bytes // partition_bytes)))


def input_sizes(context: Any) -> list[int]:
    """Bytes of each of a global segment's input shard files, in shard order, from one listing per folder."""
    fs, _ = storage.filesystem(context.work_dir)
    paths = [storage.filesystem(context.input_path(name))[1] for name in context.shard_names]
    sizes: dict[str, int] = {}
    for folder in sorted({posixpath.dirname(p) for p in paths}):
        for info in fs.ls(folder, detail=True) if fs.exists(folder) else []:
            sizes[posixpath.normpath(info["name"])] = int(info["size"])
    return [sizes.get(posixpath.normpath(p), 0) for p in paths]


def input_bytes(context: Any) -> int:
    """Bytes of a global segment's input shard files, from one listing per folder (no file is opened)."""
    return sum(input_sizes(context))


def groups_by_bytes(sizes: list[int], target_bytes: int) -> list[list[int]]:
    """Consecutive indexes of ``sizes`` cut into groups of about ``target_bytes`` (each group at least one).

    Why: a map phase with one writer per input shard makes every reduce task read one file per shard, so the
    files a shuffle reads grow with shards × partitions; writers of ``target_bytes`` of input each (the same
    target as a partition's) keep that count near partitions².
    """
    if target_bytes <= 0:
        raise ValueError(f"target_bytes must be positive, got {target_bytes}")
    groups: list[list[int]] = []
    held = 0
    for index, size in enumerate(sizes):
        if not groups or (held + size > target_bytes and held > 0):
            groups.append([])
            held = 0
        groups[-1].append(index)
        held += size
    return groups


def partition_count(context: Any, fixed: int | None, partition_bytes: int = PARTITION_BYTES, minimum: int = 1) -> int:
    """A shuffle's partition count: ``fixed`` when the recipe sets one, else derived from the input's size (at
    least ``minimum``, so that a small corpus's reduce phase still has a task per CPU).

    Why: a fixed count (16, 32) makes each reduce task's memory grow with the corpus (at 1B documents one
    MinHash partition held ~14 GB of band rows); a target of input bytes per partition keeps it flat. The
    count depends only on the input files' sizes, which are deterministic, so a rerun partitions identically;
    decisions of the dedup stages do not depend on the count (tests/test_dedup_stages.py compares 4 and 16).
    """
    if fixed is not None:
        return fixed
    return max(minimum, partitions_for_bytes(input_bytes(context), partition_bytes))
