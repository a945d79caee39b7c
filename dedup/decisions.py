"""Applying a dedup decision shard by shard: per-shard decision lists and the map stage that reads them.

Every dedup stage ends with data per input shard (the ids it drops and the twin each is dropped for; or, for
line dedup, the bucket whose frequent lines to remove). Those are written as a partitioned write whose
partition number is the shard's index in the sorted shard list, so shard ``i``'s decision list is
``read_partition(DIR, i, writers)``: validated against its writers' indexes, and no larger than that shard.

The shard task tells the decider which shard its batches come from before the first batch
(:meth:`MapStage.begin_shard` with the shard's :class:`ShardInfo`); the decider looks the shard's key up in the
shard list written when the stage was prepared and loads that shard's decision list. No document id is read to
find the shard, and a drop list is applied only to the shard it was written for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
from pydantic import PrivateAttr

from refinery.pipelines import storage
from refinery.pipelines.partitions import read_partition
from refinery.pipelines.stages import GlobalContext, MapStage, ShardInfo, StageResult

SHARDS_FILE = "shards.json"


def write_shard_list(context: GlobalContext) -> tuple[str, str]:
    """Write ``work/shards.json`` (sorted shard names and their input files, relative to the run directory, so a
    moved run keeps the same file); return its path and sha256."""
    run_dir = context.work_dir.rstrip("/").rsplit("/segments/", 1)[0] + "/"
    inputs = [context.input_path(name) for name in context.shard_names]
    relative = [path[len(run_dir) :] if path.startswith(run_dir) else path for path in inputs]
    data = json.dumps(
        {"shards": [list(pair) for pair in zip(context.shard_names, relative, strict=True)]}, sort_keys=True
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


class ShardDecider(MapStage):
    """A decision stage that applies per-shard data; subclasses implement ``load`` and ``decide``."""

    shards_file: str
    shards_sha256: str

    _shards: list[list[str]] | None = PrivateAttr(default=None)
    _positions: dict[str, int] = PrivateAttr(default_factory=dict)
    _loaded: tuple[int, Any] | None = PrivateAttr(default=None)

    def setup(self) -> None:
        if self._shards is None:
            fs, inner = storage.filesystem(self.shards_file)
            with fs.open(inner, "rb") as handle:
                data = handle.read()
            if hashlib.sha256(data).hexdigest() != self.shards_sha256:
                raise RuntimeError(f"{self.shards_file} changed since the stage was prepared")
            self._shards = json.loads(data)["shards"]
            self._positions = {name: index for index, (name, _) in enumerate(self._shards)}

    def begin_shard(self, shard: ShardInfo) -> None:
        """Load the decision data of the shard whose batches come next (by its key in the prepared shard list)."""
        self.setup()
        index = self._positions.get(shard.key)
        if index is None:
            raise RuntimeError(f"shard {shard.key!r} is not among the {len(self._positions)} shards this stage decided")
        if self._loaded is None or self._loaded[0] != index:
            self._loaded = (index, self.load(index))

    def process(self, batch: pa.Table) -> StageResult:
        if self._loaded is None:
            raise RuntimeError(f"{self.stage_name}: begin_shard() must name the shard before its first batch")
        return self.decide(batch, self._loaded[1])

    def load(self, shard_index: int) -> Any:
        raise NotImplementedError

    def decide(self, batch: pa.Table, data: Any) -> StageResult:
        raise NotImplementedError
