"""Applying a dedup decision shard by shard: per-shard decision lists and the map stage that reads them.

Every dedup stage ends with data per input shard (the ids it drops and the twin each is dropped for; or, for
line dedup, the bucket whose frequent lines to remove). Those are written as a partitioned write whose
partition number is the shard's index in the sorted shard list, so shard ``i``'s decision list is
``read_partition(DIR, i, writers)``: validated against its writers' indexes, and no larger than that shard.

The runner hands the decision stage batches of one shard at a time but not the shard's name. Until it does
(``begin_shard(name)``, called by the shard task before the first batch, is all that is needed), the decider finds
the shard itself: the first id of a batch is looked up in the ids of the current shard, and on a miss in the
id column of the shards of the batch's ``source`` (shard names start with the source), starting after the
last one found. Shards are processed one after another by a worker, so this costs one id-column read per shard
and keeps one shard's ids in memory.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import PrivateAttr

from refinery.pipelines import storage
from refinery.pipelines.documents import ID, SOURCE
from refinery.pipelines.partitions import read_partition
from refinery.pipelines.stages import GlobalContext, MapStage, StageResult, split_by_mask

SHARDS_FILE = "shards.json"


def write_shard_list(context: GlobalContext) -> tuple[str, str]:
    """Write ``work/shards.json`` (sorted shard names and their input files); return its path and sha256."""
    data = json.dumps(
        {"shards": [[name, context.input_path(name)] for name in context.shard_names]}, sort_keys=True
    ).encode()
    fs, work = storage.filesystem(context.work_dir)
    storage.write_bytes_atomic(fs, storage.join(work, SHARDS_FILE), data)
    return f"{context.work_dir.rstrip('/')}/{SHARDS_FILE}", hashlib.sha256(data).hexdigest()


def shard_jobs(context: GlobalContext, **extra: Any) -> list[dict[str, Any]]:
    """One job per input shard, in sorted shard order: its index, name and input file."""
    return [
        {"shard": index, "name": name, "path": context.input_path(name), **extra}
        for index, name in enumerate(context.shard_names)
    ]


def check_decision_list(job: dict[str, Any]) -> int:
    """Read one shard's decision list with validation (an intermediate error invalidates the phase)."""
    table = read_partition(job["directory"], job["shard"], job["writers"])
    return 0 if table is None else table.num_rows


def read_ids(path: str) -> pa.Array:
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        return pq.read_table(handle, columns=[ID]).column(ID).combine_chunks()


class ShardDecider(MapStage):
    """A decision stage that applies per-shard data; subclasses implement ``load`` and ``decide``."""

    shards_file: str
    shards_sha256: str

    _shards: list[list[str]] | None = PrivateAttr(default=None)
    _current: int | None = PrivateAttr(default=None)
    _current_ids: set[str] | None = PrivateAttr(default=None)
    _loaded: tuple[int, Any] | None = PrivateAttr(default=None)

    def setup(self) -> None:
        if self._shards is None:
            fs, inner = storage.filesystem(self.shards_file)
            with fs.open(inner, "rb") as handle:
                data = handle.read()
            if hashlib.sha256(data).hexdigest() != self.shards_sha256:
                raise RuntimeError(f"{self.shards_file} changed since the stage was prepared")
            self._shards = json.loads(data)["shards"]

    def begin_shard(self, shard_name: str) -> None:
        """Tell the decider which shard the next batches come from (skips the lookup by id)."""
        self.setup()
        names = [name for name, _ in self._shards]
        self._current = names.index(shard_name)
        self._current_ids = None

    def _locate(self, batch: pa.Table) -> int:
        first = batch.column(ID)[0].as_py()
        if self._current is not None and (self._current_ids is None or first in self._current_ids):
            return self._current
        source = batch.column(SOURCE)[0].as_py()
        count = len(self._shards)
        start = 0 if self._current is None else self._current + 1
        for step in range(count):
            index = (start + step) % count
            name, path = self._shards[index]
            if not name.startswith(f"{source}--"):
                continue
            ids = set(read_ids(path).to_pylist())
            if first in ids:
                self._current, self._current_ids = index, ids
                return index
        raise RuntimeError(f"document {first!r} is in no input shard of this stage")

    def process(self, batch: pa.Table) -> StageResult:
        if batch.num_rows == 0:  # no id to locate the shard by, and nothing to decide
            return split_by_mask(batch, np.ones(0, dtype=bool), [])
        self.setup()
        index = self._locate(batch)
        if self._loaded is None or self._loaded[0] != index:
            self._loaded = (index, self.load(index))
        return self.decide(batch, self._loaded[1])

    def load(self, shard_index: int) -> Any:
        raise NotImplementedError

    def decide(self, batch: pa.Table, data: Any) -> StageResult:
        raise NotImplementedError
