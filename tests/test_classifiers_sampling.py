"""``refinery label``'s sampler: per-shard tasks that never read an unsampled shard's text (issue 17).

The run here is real sample-corpus documents written as a run directory (``run.json`` + kept / rejected shards of
unequal sizes), so the test needs no pipeline run; one test draws the sample through real Ray tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from refinery.classifiers import sampling
from refinery.classifiers.labelling.run import ensure_sample


def in_process(function, items):
    return [function(item) for item in items]


def write_run(run_dir: Path, documents: pa.Table, sizes: list[int], rejected: int = 0) -> list[Path]:
    """Cut ``documents`` into kept shards of ``sizes`` rows (and one rejected shard of ``rejected`` rows)."""
    kept_dir, rejected_dir = run_dir / "segments/00/kept", run_dir / "segments/00/rejected"
    kept_dir.mkdir(parents=True)
    rejected_dir.mkdir(parents=True)
    paths, start = [], 0
    for index, size in enumerate(sizes):
        paths.append(kept_dir / f"shard-{index:03d}.parquet")
        pq.write_table(documents.slice(start, size), paths[-1])
        start += size
    pq.write_table(
        documents.slice(start, rejected).append_column("reason", pa.nulls(rejected, pa.string())),
        rejected_dir / "shard-000.parquet",
    )
    kept = [str(p.relative_to(run_dir)) for p in paths]
    (run_dir / "run.json").write_text(json.dumps({"outputs": {"kept": kept}}))
    return paths


@pytest.fixture(scope="module")
def documents(real_documents: pa.Table) -> pa.Table:
    table = real_documents.filter(pc.greater(pc.utf8_length(pc.fill_null(real_documents["text"], "")), 0))
    return table.select(["id", "text", "source", "url", "date", "lang"])


def test_label_sampling_never_reads_unsampled_shards_text(documents, tmp_path, monkeypatch):
    n = documents.num_rows
    sizes = [n // 40] * 20 + [n - (n // 40) * 20 - 40]  # 20 small shards and one large one; 40 rejected rows
    paths = write_run(tmp_path / "run", documents, sizes, rejected=40)
    reads: list[tuple[str, tuple[str, ...]]] = []
    original = sampling.read_columns

    def recording(path: str, columns: list[str]) -> pa.Table:
        reads.append((path, tuple(columns)))
        return original(path, columns)

    monkeypatch.setattr(sampling, "read_columns", recording)
    sample = sampling.sample_run(
        tmp_path / "run", 12, seed=3, include_rejected=True, store_chars=100, map_function=in_process
    )
    assert sample.num_rows == 12 and sample.schema == sampling.SAMPLE_SCHEMA
    assert max(pc.utf8_length(sample["text"]).to_pylist()) <= 100, "texts are clipped inside the tasks"
    holders = set()
    for path in [*paths, tmp_path / "run/segments/00/rejected/shard-000.parquet"]:
        ids = set(pq.read_table(path, columns=["id"])["id"].to_pylist())
        if ids & set(sample["id"].to_pylist()):
            holders.add(str(path))
    text_reads = {path for path, columns in reads if "text" in columns}
    assert text_reads == holders, "text is read from exactly the shards holding a sampled document"
    assert len(holders) < len(paths) + 1, "some shards hold no sampled document (the test is not vacuous)"
    assert len({path for path, _ in reads}) == len(paths) + 1, "every shard's ids were counted"

    # the same rule as the in-memory sampler over the whole table (so the shard layout does not matter) ...
    everything = pq.read_table(paths).select(["id", "text", "source", "lang"])
    expected = sampling.stratified_sample(
        everything.append_column("origin", pa.array(["kept"] * everything.num_rows)), 12, seed=3
    )
    kept_only = sampling.sample_run(tmp_path / "run", 12, seed=3, map_function=in_process)
    assert kept_only["id"].to_pylist() == expected["id"].to_pylist()
    # ... and deterministic: same run, size and seed → the same rows in the same order; another seed differs
    again = sampling.sample_run(
        tmp_path / "run", 12, seed=3, include_rejected=True, store_chars=100, map_function=in_process
    )
    assert again.equals(sample)
    assert sampling.sample_run(tmp_path / "run", 12, seed=4, map_function=in_process)["id"].to_pylist() != (
        kept_only["id"].to_pylist()
    )


def test_label_sample_does_not_depend_on_shard_layout(documents, tmp_path):
    n = documents.num_rows
    write_run(tmp_path / "a", documents, [n // 2, n - n // 2])
    write_run(tmp_path / "b", documents, [n // 10] * 9 + [n - (n // 10) * 9])
    first = sampling.sample_run(tmp_path / "a", 60, seed=0, map_function=in_process)
    second = sampling.sample_run(tmp_path / "b", 60, seed=0, map_function=in_process)
    assert first.num_rows == 60 and first.equals(second), "each shard contributes in proportion to its size"


def test_an_empty_sampled_text_is_replaced_by_the_next_in_its_stratum(documents, tmp_path):
    one_stratum = documents.filter(pc.equal(documents["source"], documents["source"][0]))
    first = sampling.sample_run(*_run_of(tmp_path / "a", one_stratum), 5, seed=0, map_function=in_process)
    emptied_id = first["id"][0].as_py()
    texts = [
        ("" if i == emptied_id else t)
        for i, t in zip(one_stratum["id"].to_pylist(), one_stratum["text"].to_pylist(), strict=True)
    ]
    emptied = one_stratum.set_column(1, "text", pa.array(texts, pa.large_string()))
    second = sampling.sample_run(*_run_of(tmp_path / "b", emptied), 5, seed=0, map_function=in_process)
    assert second.num_rows == 5 and emptied_id not in second["id"].to_pylist()
    assert set(first["id"].to_pylist()) - {emptied_id} < set(second["id"].to_pylist())


def _run_of(run_dir: Path, table: pa.Table) -> tuple[Path]:
    write_run(run_dir, table, [table.num_rows // 2, table.num_rows - table.num_rows // 2])
    return (run_dir,)


def test_label_samples_through_ray_tasks(ray_local, documents, tmp_path):
    n = documents.num_rows
    write_run(tmp_path / "run", documents, [n // 4] * 3 + [n - (n // 4) * 3])
    on_ray = ensure_sample(tmp_path / "run", tmp_path / "labels", 30, 0, False, 200)
    assert on_ray.equals(sampling.sample_run(tmp_path / "run", 30, 0, store_chars=200, map_function=in_process))
    assert pq.read_table(tmp_path / "labels" / "documents.parquet").equals(on_ray)
