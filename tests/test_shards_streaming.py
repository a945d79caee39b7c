"""The shards assembly streams: it holds one block of rows, not its partition nor a whole output shard, and writes
the very bytes the whole-partition assembly wrote (same shards, rows, order, row groups, digests)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_shards_writer import run_dir  # noqa: F401  (the module's real run: a fixture)

from refinery.mixes import shard_writer, writer
from refinery.mixes.writer import write_mix
from refinery.pipelines import storage
from refinery.pipelines.manifest import load_manifest

WEIGHTS = {"buckets": {"*": {"weight": 1}}, "heldout_fraction": 0.1}


def read_scatter_file(path: str) -> pa.Table:
    """A whole scatter file: its Arrow IPC stream (the trailer after the stream's end is not read)."""
    return pa.ipc.open_stream(pa.py_buffer(Path(path).read_bytes())).read_all()


def whole_partition_units(job: dict[str, Any]) -> dict[str, str]:
    """The assembly as it was: the whole partition read into one table, one stable sort by (unit, position),
    one take, then per unit its zstd Parquet bytes in ``row_group_rows`` slices. ``{path: sha256}`` per unit."""
    schema = pa.ipc.read_schema(pa.py_buffer(job["schema"]))
    tables = [read_scatter_file(path) for path, _ in job["files"]]
    table = pa.concat_tables(tables) if tables else schema.append(pa.field("_unit", pa.int32())).empty_table()
    units = table.column("_unit").to_numpy() if table.num_rows else np.zeros(0, np.int32)
    orders = table.column("_order").to_numpy() if table.num_rows else np.zeros(0, np.uint64)
    order = np.lexsort((orders, units))
    ordered = table.select(schema.names).take(pa.array(order, pa.int64())).cast(schema)
    digests = {}
    for unit in job["units"]:
        start = int(np.searchsorted(units[order], unit["unit"], side="left"))
        end = int(np.searchsorted(units[order], unit["unit"], side="right"))
        sink = io.BytesIO()
        parquet = pq.ParquetWriter(sink, schema, **storage.PARQUET_OPTIONS)
        for first in range(start, end, job["row_group_rows"]):
            parquet.write_table(ordered.slice(first, min(job["row_group_rows"], end - first)))
        parquet.close()
        digests[unit["path"]] = hashlib.sha256(sink.getvalue()).hexdigest()
    return digests


@pytest.mark.parametrize("rows_per_shard", [100_000, 37, 1])
def test_streamed_shards_are_the_whole_partition_assembly_byte_for_byte(
    run_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
    rows_per_shard: int,
):
    """At 1, several and many output shards, with blocks far smaller than a shard (a shard spans many blocks, a
    block many shards) and row groups of 7 rows (row groups straddle blocks): every unit the streaming assembly
    writes has the bytes the whole-partition assembly gives for the same partition files, and its record says so.
    """
    from refinery.mixes import scatter_files

    monkeypatch.setattr(writer, "BLOCK_BYTES", 20_000)
    real, compared, blocks = shard_writer.assemble_partition, [], set()

    def checked(job: dict[str, Any]) -> dict[str, Any]:
        expected = whole_partition_units(job)
        result = real(job)
        assert {r["path"]: r["sha256"] for r in result["records"]} == expected
        for record in result["records"]:
            assert hashlib.sha256((tmp_path / "mix" / record["path"]).read_bytes()).hexdigest() == record["sha256"]
        compared.extend(expected)
        return result

    read_block = scatter_files.ScatterFile.read_block

    def counting(self, block: int) -> pa.Table:
        blocks.add((self.path.split("/part-")[1].split("/")[0], block))
        return read_block(self, block)

    monkeypatch.setattr(writer, "assemble_partition", checked)
    monkeypatch.setattr(scatter_files.ScatterFile, "read_block", counting)
    manifest = load_manifest(
        write_mix(
            run_dir, WEIGHTS | {"shard_rows": rows_per_shard}, tmp_path / "mix", row_group_rows=7, in_process=True
        )
    )
    entries = manifest["shards"] + list(manifest["heldout"].values())
    assert sorted(compared) == sorted(e["path"] for e in entries)
    assert len(blocks) >= 10, "blocks as large as the output: the test would not show streaming"
    if rows_per_shard == 100_000:  # one shard spans every block of the training partition
        assert len(manifest["shards"]) == 1
        assert pq.ParquetFile(tmp_path / "mix" / entries[0]["path"]).num_row_groups > len(blocks) > 10
    if rows_per_shard == 1:  # a block holds many shards
        assert len(manifest["shards"]) > 10 * len(blocks)


def arrow_peak_of_assembly(job: dict[str, Any]) -> tuple[int, int]:
    """In a fresh process: (peak bytes Arrow allocated while one assembly ran, Arrow bytes of its partition)."""
    from refinery.mixes.shard_writer import assemble_partition

    assemble_partition(job)
    peak = pa.default_memory_pool().max_memory()
    return peak, sum(read_scatter_file(path).nbytes for path, _ in job["files"])


def test_an_assembly_holds_a_block_not_its_partition_nor_its_shard(
    run_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
):
    """One output shard holding the whole mix (so one partition holds everything): the assembly task, run in a
    fresh process, never has more than a fraction of its partition in Arrow memory at once. Blocks of ~1/20 of
    the output and 10-row row groups; before, the task read the whole partition into one table and took a sorted
    copy of it (its peak was about twice the partition)."""
    monkeypatch.setattr(writer, "BLOCK_BYTES", 10_000)
    peaks = []

    real = shard_writer.assemble_partition

    def measured_then_real(job: dict[str, Any]) -> dict[str, Any]:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            peaks.append(pool.apply(arrow_peak_of_assembly, (job,)))
        return real(job)

    monkeypatch.setattr(writer, "assemble_partition", measured_then_real)
    write_mix(run_dir, WEIGHTS | {"shard_rows": 100_000}, tmp_path / "mix", row_group_rows=10, in_process=True)
    peak, partition = max(peaks, key=lambda p: p[1])
    assert partition > 1_000_000, "a partition too small to show anything"
    assert peak < partition / 4, f"the assembly held {peak} bytes of Arrow memory for a {partition}-byte partition"


@pytest.mark.parametrize("where", ["block", "trailer"])
def test_an_altered_scatter_file_is_refused_before_use_and_scattered_again(
    run_dir: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch,
    where: str,
):
    """One byte of a scatter file flipped (inside a block's batch, or in its trailer) after its writer recorded it:
    the assembly refuses it before decoding (its digest), the scatter runs again, and the mix is the one written
    without the damage, byte for byte."""
    weights = WEIGHTS | {"shard_rows": 40}
    expected = write_mix(run_dir, weights, tmp_path / "clean", in_process=True)
    real, calls = shard_writer.assemble_partition, []

    def damaging(job: dict[str, Any]) -> dict[str, Any]:
        if not calls and job["files"]:
            path, record = job["files"][0]
            data = bytearray(Path(path).read_bytes())
            at = len(data) // 3 if where == "block" else len(data) - 20
            data[at] ^= 0xFF
            Path(path).write_bytes(bytes(data))
            assert len(data) == record["bytes"]  # same size: only a digest can tell
        calls.append(job["partition"])
        return real(job)

    monkeypatch.setattr(writer, "assemble_partition", damaging)
    again = write_mix(run_dir, weights, tmp_path / "damaged", in_process=True)
    assert len(calls) > len(set(calls)), "the damaged partition's assembly was refused and run again"
    digests = {p.relative_to(expected.parent): p.read_bytes() for p in expected.parent.rglob("*.parquet")}
    assert digests and all(
        (again.parent / relative).read_bytes() == data
        for relative, data in digests.items()
        if "_work" not in str(relative)
    )
