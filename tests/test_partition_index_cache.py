"""A writer's partition index is parsed once per process while unchanged, and re-read when rewritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from refinery.pipelines import partitions
from refinery.pipelines.partitions import IntermediateError, index_path, read_partition, write_partitioned


def _write(directory: Path, values: list[int]) -> None:
    table = pa.table({"value": values})
    write_partitioned(str(directory), "w-00000", table, np.array([v % 2 for v in values]), 2)


def test_index_is_parsed_once_and_rewrites_are_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, [1, 2, 3, 4])
    parsed: list[str] = []
    original = partitions.storage.read_json
    monkeypatch.setattr(partitions.storage, "read_json", lambda fs, path: parsed.append(path) or original(fs, path))
    for _ in range(3):
        assert read_partition(str(tmp_path), 0, ["w-00000"]).column("value").to_pylist() == [2, 4]
    assert len(parsed) == 1  # three shards' lookups, one parse
    _write(tmp_path, [6, 8, 10])  # the phase recomputed: a new index under the same name
    assert read_partition(str(tmp_path), 0, ["w-00000"]).column("value").to_pylist() == [6, 8, 10]
    assert len(parsed) == 2


def test_a_missing_index_is_an_intermediate_error(tmp_path: Path) -> None:
    _write(tmp_path, [1, 2])
    Path(index_path(str(tmp_path), "w-00000")).unlink()
    with pytest.raises(IntermediateError, match="missing"):
        read_partition(str(tmp_path), 0, ["w-00000"])
