"""Weighted shards from a real run: weights, epochs, held-out sets, determinism, resume, verify, interop, blend."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from run_helpers import STAGES, copy_inputs, recipe_for

from refinery.mixes.blend import megatron_blend
from refinery.mixes.sampling import MixPlanError
from refinery.mixes.writer import write_mix
from refinery.pipelines.cli import main as cli
from refinery.pipelines.manifest import ManifestError, load_manifest, shard_entries, verify_manifest
from refinery.pipelines.runner import run_recipe

BUCKETS = ("changelog", "copyright", "web")


@pytest.fixture(scope="module")
def run_dir(ray_local, tmp_path_factory) -> Path:
    """A real run over four sample shards: length, language ID and token_count (so kept rows carry n_tokens)."""
    base = tmp_path_factory.mktemp("shards_run")
    copied = copy_inputs(base / "in")
    copied["warc"][1].unlink()  # one Debian handbook shard is enough here (test time)
    stages = [{**STAGES[0], "max_chars": 20_000}, *STAGES[1:], {"stage": "token_count"}]  # long pages: test time only
    recipe = recipe_for(base / "in", base / "run", stages=stages)
    assert run_recipe(recipe, show_progress=False).ok
    return base / "run"


@pytest.fixture(scope="module")
def kept(run_dir: Path) -> pa.Table:
    return pq.read_table(sorted((run_dir / "segments/00/kept").glob("*.parquet")))


def read_shards(manifest_path: Path, heldout: bool = False) -> pa.Table:
    manifest = load_manifest(manifest_path)
    entries = [e for e in shard_entries(manifest) if (e.bucket is not None) == heldout]
    return pa.concat_tables(pq.read_table(manifest_path.parent / e.path) for e in entries)


def tree_digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


MIX = {
    "shard_rows": 40,
    "heldout_fraction": 0.1,
    "heldout_max_documents": 3,
    "buckets": {"web": {"weight": 0.5}, "copyright": {"weight": 0.3}, "changelog": {"weight": 0.2, "max_epochs": 4}},
}


@pytest.fixture(scope="module")
def mix(run_dir: Path, tmp_path_factory) -> Path:
    return write_mix(run_dir, MIX, tmp_path_factory.mktemp("mix") / "out", seed=7, selection={"method": "test"})


def test_token_count_stage_ran_in_the_run(kept: pa.Table):
    assert kept.schema.field("n_tokens").type == pa.int32()
    assert pc.min(kept.column("n_tokens")).as_py() > 0


def test_weights_honoured_within_one_document(mix: Path, kept: pa.Table):
    manifest = load_manifest(mix)
    shards = read_shards(mix)
    total = manifest["total_tokens"]
    assert total == pc.sum(shards.column("n_tokens")).as_py() == sum(s["tokens"] for s in manifest["shards"])
    largest = {b: max(kept.filter(pc.equal(kept["source"], b))["n_tokens"].to_pylist()) for b in BUCKETS}
    for bucket in BUCKETS:
        entry = manifest["buckets"][bucket]
        in_shards = shards.filter(pc.equal(shards["bucket"], bucket))
        tokens = pc.sum(in_shards["n_tokens"]).as_py() or 0
        assert tokens == entry["tokens"] and in_shards.num_rows == entry["documents"]
        assert abs(tokens - entry["target_tokens"]) <= largest[bucket], bucket
        assert entry["target_tokens"] == pytest.approx(
            MIX["buckets"][bucket]["weight"] * total, abs=2 * largest[bucket]
        )
    # no max_epochs beyond 1 for web/copyright: the default total is the largest one every cap allows
    assert any(manifest["buckets"][b]["epochs"] > 0.9 for b in BUCKETS)
    weight_sum = sum(w["weight"] for w in MIX["buckets"].values())
    for bucket in BUCKETS:  # declared and realised shares recorded, within max(0.01, one document's share)
        entry = manifest["buckets"][bucket]
        assert entry["declared_share"] == pytest.approx(MIX["buckets"][bucket]["weight"] / weight_sum, abs=1e-3)
        assert entry["realised_share"] == pytest.approx(entry["tokens"] / total)
        one_document = entry["available_tokens"] / entry["available_documents"] / total
        assert abs(entry["realised_share"] - entry["declared_share"]) <= max(0.01, one_document), bucket
    assert manifest["selection"] == {"method": "test"} and manifest["seed"] == 7


def test_manifest_records_lineage(mix: Path, run_dir: Path):
    manifest = load_manifest(mix)
    recipe = json.loads((run_dir / "recipe.json").read_text())
    assert manifest["recipe"] == {"fingerprint": recipe["fingerprint"], "recipe": recipe["recipe"]}
    assert len(manifest["run"]["fingerprint"]) == 64
    assert manifest["producer"]["refinery_version"]
    assert manifest["tokenizer"]["vocab_size"] >= 128256 and len(manifest["tokenizer"]["sha256"]) == 64
    assert manifest["tokenizer"]["bos_id"] == 128000 and manifest["tokenizer"]["eos_id"] == 128001
    for entry in shard_entries(manifest):
        file = mix.parent / entry.path
        assert file.stat().st_size == entry.bytes
        assert hashlib.sha256(file.read_bytes()).hexdigest() == entry.sha256
        assert pq.ParquetFile(file).metadata.num_rows == entry.rows
    schema = pq.read_schema(mix.parent / manifest["shards"][0]["path"])
    assert {"id", "text", "source", "lang", "n_tokens", "bucket", "epoch"} <= set(schema.names)
    assert (
        pq.ParquetFile(mix.parent / manifest["shards"][0]["path"]).metadata.row_group(0).column(1).compression == "ZSTD"
    )


def test_global_shuffle_mixes_buckets_in_every_shard(mix: Path):
    manifest = load_manifest(mix)
    assert len(manifest["shards"]) >= 2
    for entry in manifest["shards"]:
        table = pq.read_table(mix.parent / entry["path"], columns=["bucket", "id"])
        assert len(set(table["bucket"].to_pylist())) >= 2, entry["path"]
        ids = table["id"].to_pylist()
        assert ids != sorted(ids)


def test_heldout_sets_are_apart_capped_and_independent_of_weights(mix: Path, run_dir: Path, tmp_path: Path):
    manifest = load_manifest(mix)
    heldout = read_shards(mix, heldout=True)
    training_ids = set(read_shards(mix)["id"].to_pylist())
    assert heldout.num_rows and not training_ids & set(heldout["id"].to_pylist())
    for bucket, entry in manifest["heldout"].items():
        assert entry["path"].startswith("heldout/") and 0 < entry["rows"] <= 3
        assert manifest["buckets"][bucket]["heldout_documents"] == entry["rows"]
    other = write_mix(
        run_dir,
        {**MIX, "buckets": {"web": {"weight": 0.9}, "copyright": {"weight": 0.05}, "changelog": {"weight": 0.05}}},
        tmp_path / "other",
        seed=3,
    )
    assert load_manifest(other)["heldout"] == manifest["heldout"]  # same files, byte for byte


def test_upsampling_counts_epochs(run_dir: Path, tmp_path: Path, kept: pa.Table):
    available_tokens = pc.sum(kept.filter(pc.equal(kept["source"], "changelog"))["n_tokens"]).as_py()
    target = int(2.5 * available_tokens)
    weights = {
        "shard_rows": 1000,
        "buckets": {"changelog": {"tokens": target, "max_epochs": 3}, "copyright": {"weight": 1}},
    }
    manifest_path = write_mix(run_dir, weights, tmp_path / "up")
    manifest = load_manifest(manifest_path)
    changelog = manifest["buckets"]["changelog"]
    assert changelog["whole_epochs"] == 2 and changelog["epochs"] == pytest.approx(2.5, abs=0.2)
    assert changelog["available_tokens"] == available_tokens and changelog["target_tokens"] == target
    shards = read_shards(manifest_path)
    rows = shards.filter(pc.equal(shards["bucket"], "changelog"))
    epochs = np.array(rows["epoch"].to_pylist())
    ids = rows["id"].to_pylist()
    available = changelog["available_documents"]
    assert (epochs == 0).sum() == (epochs == 1).sum() == available
    assert 0 < (epochs == 2).sum() < available
    assert len(set(zip(ids, epochs.tolist(), strict=True))) == len(ids)  # a document at most once per epoch
    assert changelog["documents"] == rows.num_rows and changelog["tokens"] == pc.sum(rows["n_tokens"]).as_py()
    assert abs(changelog["tokens"] - target) <= max(rows["n_tokens"].to_pylist())
    assert set(ids) == set(rows.filter(pc.equal(rows["epoch"], 0))["id"].to_pylist())  # repeats of kept documents


def test_weight_beyond_max_epochs_names_the_bucket(run_dir: Path, tmp_path: Path):
    weights = {
        "total_tokens": 10**9,
        "buckets": {"changelog": {"weight": 0.5, "max_epochs": 2}, "web": {"weight": 0.5}},
    }
    with pytest.raises(MixPlanError, match="'changelog'"):
        write_mix(run_dir, weights, tmp_path / "too_many")
    with pytest.raises(MixPlanError, match="nosuchbucket"):
        write_mix(run_dir, {"buckets": {"nosuchbucket": {"weight": 1}}}, tmp_path / "typo")


def test_deterministic_and_resumable(mix: Path, run_dir: Path, tmp_path: Path):
    again = write_mix(run_dir, MIX, tmp_path / "again", seed=7, selection={"method": "test"})
    expected = {k: v for k, v in tree_digests(mix.parent).items() if not k.startswith("_work")}
    assert {k: v for k, v in tree_digests(again.parent).items() if not k.startswith("_work")} == expected
    shards = sorted((again.parent / "shards").glob("*.parquet"))
    shards[0].unlink()  # a lost shard
    shards[1].write_bytes(shards[1].read_bytes()[:-100] + b"x" * 100)  # a corrupt one
    untouched = {p: p.stat().st_mtime_ns for p in shards[2:]}
    write_mix(run_dir, MIX, tmp_path / "again", seed=7, selection={"method": "test"})
    assert {k: v for k, v in tree_digests(again.parent).items() if not k.startswith("_work")} == expected
    assert {p: p.stat().st_mtime_ns for p in shards[2:]} == untouched  # only the bad shards were rewritten
    different = write_mix(run_dir, MIX, tmp_path / "seed8", seed=8)
    assert load_manifest(different)["shards"][0]["sha256"] != load_manifest(mix)["shards"][0]["sha256"]


def test_verify_names_the_corrupted_shard(mix: Path, tmp_path: Path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(mix.parent, copy, ignore=shutil.ignore_patterns("_work"))
    assert cli(["verify", str(copy / "manifest.json")]) == 0
    victim = copy / load_manifest(mix)["shards"][1]["path"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert cli(["verify", str(copy / "manifest.json")]) == 1
    assert load_manifest(mix)["shards"][1]["path"] in capsys.readouterr().err
    assert [p.split(":")[0] for p in verify_manifest(copy / "manifest.json")] == [
        load_manifest(mix)["shards"][1]["path"]
    ]


@pytest.mark.parametrize("bad", ["../outside.parquet", "shards/../../outside.parquet", "/etc/passwd", "s3://b/x"])
def test_manifest_paths_leaving_the_folder_are_refused(mix: Path, tmp_path: Path, bad: str):
    manifest = json.loads(mix.read_text())
    manifest["shards"][0]["path"] = bad
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError):
        load_manifest(path)
    assert cli(["verify", str(path)]) == 2


def test_shards_load_in_datasets_pyarrow_polars_duckdb(mix: Path, tmp_path: Path, monkeypatch):
    import duckdb
    import polars as pl

    manifest = load_manifest(mix)
    files = [str(mix.parent / s["path"]) for s in manifest["shards"]]
    rows = manifest["total_documents"]
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    from datasets import load_dataset

    dataset = load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert dataset.num_rows == rows and sum(dataset["n_tokens"]) == manifest["total_tokens"]
    assert set(dataset.column_names) >= {"text", "bucket", "epoch", "n_tokens"}
    streamed = load_dataset("parquet", data_files={"train": files}, split="train", streaming=True)
    assert sum(1 for _ in streamed) == rows
    assert pq.ParquetDataset(files).read().num_rows == rows
    assert pl.read_parquet(files).height == rows
    glob = str(mix.parent / "shards" / "*.parquet")
    assert duckdb.sql(f"select count(*), sum(n_tokens) from read_parquet('{glob}')").fetchall()[0] == (
        rows,
        manifest["total_tokens"],
    )


def test_megatron_blend_from_the_cli(run_dir: Path, tmp_path: Path, capsys):
    weights = tmp_path / "weights.yaml"
    weights.write_text("shard_rows: 50\nbuckets:\n  web: {weight: 2}\n  copyright: {weight: 1}\n")
    blend_file = tmp_path / "blend.txt"
    code = cli(
        [
            "shards",
            str(run_dir),
            "--weights",
            str(weights),
            "--output",
            str(tmp_path / "out"),
            "--megatron-blend",
            str(blend_file),
        ]
    )
    assert code == 0 and "manifest" in capsys.readouterr().out
    parts = blend_file.read_text().split()
    weights_, prefixes = [float(w) for w in parts[::2]], parts[1::2]
    assert len(prefixes) == len(load_manifest(tmp_path / "out/manifest.json")["shards"]) >= 2
    assert sum(weights_) == pytest.approx(1.0, abs=1e-6)
    assert all((tmp_path / "out" / f"{p}.parquet").is_file() for p in prefixes)
    assert megatron_blend(tmp_path / "out/manifest.json") == blend_file.read_text().strip()
    assert cli(["verify", str(tmp_path / "out/manifest.json")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("buckets:\n  web: {weight: 1, tokens: 5}\n")
    assert cli(["shards", str(run_dir), "--weights", str(bad), "--output", str(tmp_path / "bad")]) == 2


def test_buckets_from_several_columns(run_dir: Path, tmp_path: Path, kept: pa.Table):
    weights = {"bucket_column": ["source", "lang"], "shard_rows": 1000, "buckets": {"*": {"weight": 1}}}
    manifest = load_manifest(write_mix(run_dir, weights, tmp_path / "multi"))
    expected = {f"{s}/{lang}" for s, lang in zip(kept["source"].to_pylist(), kept["lang"].to_pylist(), strict=True)}
    assert set(manifest["buckets"]) == expected
    assert os.path.isfile(tmp_path / "multi" / manifest["shards"][0]["path"])


def test_projection_scales_the_measured_run(run_dir: Path, capsys):
    from refinery.mixes.projection import project_run, projection_html

    projection = project_run(str(run_dir), 15e12, sample_documents=200)
    run = json.loads((run_dir / "run.json").read_text())
    stages = run["segments"][0]["stages"]
    sample = projection["sample"]
    assert 0 < sample["documents"] <= 200 + len(run["outputs"]["kept"]) and 0.05 < sample["tokens_per_char"] < 1.0
    assert projection["needed"]["output_chars"] * sample["tokens_per_char"] == pytest.approx(15e12)
    scale = projection["scale"]
    assert scale == pytest.approx(projection["needed"]["output_chars"] / stages[-1]["chars_kept"])
    assert projection["needed"]["input_documents"] == pytest.approx(stages[0]["in"] * scale)
    assert projection["measured"]["keep_rate_documents"] == pytest.approx(stages[-1]["kept"] / stages[0]["in"])
    assert [s["stage"] for s in projection["stages"]] == ["ingest", "length", "language_id", "token_count"]
    for measured, projected in zip(stages, projection["stages"], strict=True):
        assert projected["core_hours"] == pytest.approx(measured["seconds"] * scale / 3600)
    assert projection["total_core_hours"] >= projection["stage_core_hours"] > 0
    assert projection["needed"]["input_bytes"] > projection["needed"]["input_chars"] * 0.05
    fragment = projection_html(projection)
    assert fragment.startswith("<section") and "language_id" in fragment and "core-hours" in fragment
    assert cli(["project", str(run_dir), "--tokens", "15e12", "--sample-documents", "200"]) == 0
    assert "core-hours" in capsys.readouterr().out
    assert json.loads((run_dir / "projection.json").read_text())["target_tokens"] == 15e12
    assert "core-hours" in (run_dir / "report.html").read_text(), "the run report includes the projection"


def test_projection_counts_gpu_hours_for_stages_that_hold_gpus(run_dir: Path, monkeypatch):
    from refinery.mixes import projection as module

    assert module.stage_gpus({"recipe": {"stages": [{"stage": "embed", "device": "cuda"}, {"stage": "length"}]}}) == {
        "embed": 1.0,
        "length": 0.0,
    }
    monkeypatch.setattr(module, "stage_gpus", lambda recipe: {"language_id": 1.0})
    projection = module.project_run(str(run_dir), 1e9, sample_documents=50)
    by_stage = {s["stage"]: s for s in projection["stages"]}
    lid = by_stage["language_id"]
    assert lid["gpu_hours"] == pytest.approx(lid["seconds"] * projection["scale"] / 3600)
    assert by_stage["length"]["gpu_hours"] is None and projection["total_gpu_hours"] == lid["gpu_hours"]


def one_document_bucket_run(run_dir: Path, kept: pa.Table, folder: Path) -> tuple[Path, int]:
    """The run plus one more kept shard holding a bucket ``tiny`` of one document (the run's shortest): the
    shape of the default run's ``debian_changelog`` (one document of 57 tokens). Returns (run, its tokens)."""
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("*.html", "projection.json"))
    shortest = kept.take([int(np.argmin(kept["n_tokens"].to_numpy()))])
    shortest = shortest.set_column(shortest.schema.get_field_index("source"), "source", pa.array(["tiny"]))
    (folder / "segments/99/kept").mkdir(parents=True)
    pq.write_table(shortest, folder / "segments/99/kept/tiny.parquet")
    run = json.loads((folder / "run.json").read_text())
    run["outputs"]["kept"].append("segments/99/kept/tiny.parquet")
    (folder / "run.json").write_text(json.dumps(run))
    return folder, int(shortest["n_tokens"][0].as_py())


def test_weights_that_cannot_be_honoured_are_refused_naming_the_capping_bucket(
    run_dir: Path, kept: pa.Table, tmp_path: Path, capsys
):
    """Weights 0.25 x 4 with max_epochs 2 and a bucket of one short document (the default run's 0.2 x 5 case):
    the tiny bucket caps the total at 8 of its documents, where the others cannot be sampled at their shares.

    Before, this exited 0 with shards that were almost all the tiny bucket and a manifest recording weight 0.25
    for buckets holding no document.
    """
    run, tiny_tokens = one_document_bucket_run(run_dir, kept, tmp_path / "run")
    weights = tmp_path / "equal.yaml"
    weights.write_text("max_epochs: 2\nbuckets:\n" + "".join(f"  {b}: {{weight: 0.25}}\n" for b in (*BUCKETS, "tiny")))
    out = tmp_path / "refused"
    assert cli(["shards", str(run), "--weights", str(weights), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bucket 'tiny'" in err and f"{tiny_tokens:,} tokens available" in err
    assert f"largest total is {8 * tiny_tokens:,} tokens" in err  # its 2 epochs are a quarter of the total
    assert "bucket 'copyright': declared share 0.2500, realised 0.0000" in err
    assert not (out / "manifest.json").exists()
    # what the mix optimizer does with such a candidate: write it, and record what it really is
    recorded = load_manifest(write_mix(run, weights, tmp_path / "recorded", unmet_weights="record"))
    shares = {b: recorded["buckets"][b]["realised_share"] for b in (*BUCKETS, "tiny")}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert all(entry["declared_share"] == pytest.approx(0.25) for entry in recorded["buckets"].values())
    assert shares["tiny"] > 0.25 + 0.01, "the tiny bucket is over-represented: that is why it was refused"


@contextlib.contextmanager
def counting_reads():
    """Bytes read per local file (through fsspec) while the block runs in this process."""
    from fsspec.implementations.local import LocalFileOpener

    reads: dict[str, int] = {}
    original = LocalFileOpener.read

    def counting(self, *args, **kwargs):
        data = original(self, *args, **kwargs)
        reads[str(self.path)] = reads.get(str(self.path), 0) + len(data)
        return data

    LocalFileOpener.read = counting
    try:
        yield reads
    finally:
        LocalFileOpener.read = original


def test_every_input_byte_is_read_at_most_twice_whatever_the_shard_count(run_dir: Path, tmp_path: Path):
    """Count the bytes each file read in this process (``in_process``: every step here): the input's bytes read
    do not grow with the number of output shards, and neither does anything else read.

    Before, each output-shard task read every routing file and every input row group holding one of its rows.
    """
    inputs = {str(p) for p in (run_dir / "segments").rglob("kept/*.parquet")}
    input_bytes = sum(Path(p).stat().st_size for p in inputs)
    weights = {"buckets": {"*": {"weight": 1}}, "heldout_fraction": 0.1}
    read = {}
    for rows_per_shard in (10_000, 5, 1):
        with counting_reads() as reads:
            path = write_mix(
                run_dir, weights | {"shard_rows": rows_per_shard}, tmp_path / str(rows_per_shard), in_process=True
            )
        shards = len(load_manifest(path)["shards"])
        from_inputs = sum(n for p, n in reads.items() if p in inputs)
        read[shards] = (from_inputs, sum(reads.values()))
        assert from_inputs <= 2 * input_bytes, (shards, from_inputs / input_bytes)
    counts = sorted(read)
    assert counts[0] == 1 and counts[-1] >= 100, counts
    few, many = read[counts[0]], read[counts[-1]]
    assert many[0] <= few[0] * 1.05, f"input bytes read grew with the shard count: {read}"
    assert many[1] <= few[1] * 1.5, f"bytes read grew with the shard count: {read}"


def test_digests_are_taken_from_markers_not_recomputed(run_dir: Path, tmp_path: Path):
    """The run's recorded kept_sha256 is the input's digest, and a finished mix rerun reads no input and hashes no
    shard (only the shards' footers are read: the marker's sha256 is trusted; ``verify`` is the full check)."""
    inputs = sorted((run_dir / "segments").rglob("kept/*.parquet"))
    weights = {"shard_rows": 300, "buckets": {"*": {"weight": 1}}}  # shards of a few hundred KB
    manifest = load_manifest(write_mix(run_dir, weights, tmp_path / "once", in_process=True))
    recorded = hashlib.sha256(
        "".join(
            f"{p.relative_to(run_dir)}\x00"
            + json.loads((p.parent.parent / "done" / (p.stem + ".json")).read_text())["kept_sha256"]
            + "\n"
            for p in inputs
        ).encode()
    ).hexdigest()
    assert manifest["run"]["fingerprint"] == recorded
    with counting_reads() as reads:
        again = load_manifest(write_mix(run_dir, weights, tmp_path / "once", in_process=True))
    assert again == manifest
    assert not any(str(p) in reads for p in inputs), "a finished mix read its input again"
    for entry in manifest["shards"]:
        assert reads.get(str(tmp_path / "once" / entry["path"]), 0) < entry["bytes"] / 2, "a shard was re-hashed"


def test_a_lost_scatter_file_is_scattered_again(mix: Path, run_dir: Path, tmp_path: Path, monkeypatch):
    """A partition file missing when its partition is assembled (a killed run, a cleaned disk): the scatter runs
    again and the mix is the same, byte for byte."""
    from refinery.mixes import writer

    real, calls = writer.assemble_partition, []

    def losing_a_file(job: dict) -> dict:
        if not calls and job["files"]:
            Path(job["files"][0][0]).unlink()
        calls.append(job)
        return real(job)

    monkeypatch.setattr(writer, "assemble_partition", losing_a_file)
    again = write_mix(run_dir, MIX, tmp_path / "lost", seed=7, selection={"method": "test"}, in_process=True)
    assert len(calls) > 1, "the first assembly failed and was redone"
    expected = {k: v for k, v in tree_digests(mix.parent).items() if not k.startswith("_work")}
    assert {k: v for k, v in tree_digests(again.parent).items() if not k.startswith("_work")} == expected
    assert not (tmp_path / "lost/_work/partitions").exists()


@contextlib.contextmanager
def counting_file_operations():
    """Calls of each file-system operation (through fsspec's local file system) while the block runs here.

    ``write``: files opened for writing, split into ``marker`` (JSON under ``_work/done``) and the rest;
    ``read``: files opened for reading; ``mv``, ``info`` (exists, size), ``makedirs``, ``ls`` (glob), ``rm``.
    """
    from fsspec.implementations.local import LocalFileSystem

    counts: dict[str, int] = {}
    originals = {name: getattr(LocalFileSystem, name) for name in ("_open", "mv", "info", "makedirs", "ls", "rm")}
    depth = [0]  # a call made by another counted call (a listing's details, a move's folder) is part of it

    def counted(name):
        original = originals[name]

        def call(self, path, *args, **kwargs):
            if depth[0]:
                return original(self, path, *args, **kwargs)
            key = name
            if name == "_open":
                mode = args[0] if args else kwargs.get("mode", "rb")
                writing = any(flag in mode for flag in "wa")
                marker = writing and "/_work/done/" in str(path) and str(path).endswith(".json")
                key = "marker" if marker else "write" if writing else "read"
            counts[key] = counts.get(key, 0) + 1
            depth[0] += 1
            try:
                return original(self, path, *args, **kwargs)
            finally:
                depth[0] -= 1

        return call

    for name in originals:
        setattr(LocalFileSystem, name, counted(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(LocalFileSystem, name, original)


def test_file_operations_per_output_shard_are_one_write_and_one_rename(run_dir: Path, tmp_path: Path):
    """Count every file-system call of a whole mix write (``in_process``: every step in this process) at 1 and at
    >= 100 output shards: each extra output file costs exactly one file written and one rename; the markers,
    existence and size checks, folder creations, listings and reads do not grow with the shard count. A rerun of
    a finished mix reads each shard's footer once (its size and row count) and writes no shard and no marker.

    Before, every output shard also had its own completion marker (a second file and rename), two folder
    creations, a size check, and an existence check on the driver and again in its task.
    """
    weights = {"buckets": {"*": {"weight": 1}}, "heldout_fraction": 0.1}
    fresh, rerun, units = {}, {}, {}
    for rows_per_shard in (10_000, 1):
        output = tmp_path / str(rows_per_shard)
        with counting_file_operations() as counts:
            manifest = load_manifest(
                write_mix(run_dir, weights | {"shard_rows": rows_per_shard}, output, in_process=True)
            )
        units[rows_per_shard] = len(manifest["shards"]) + len(manifest["heldout"])
        fresh[rows_per_shard] = counts
        with counting_file_operations() as counts:
            assert (
                load_manifest(write_mix(run_dir, weights | {"shard_rows": rows_per_shard}, output, in_process=True))
                == manifest
            )
        rerun[rows_per_shard] = counts
    few, many = units[10_000], units[1]
    assert few <= 4 and many >= 100, (few, many)
    per_unit = {"write": 1, "mv": 1}  # the shard itself, under a temporary name, then renamed
    for operation in set(fresh[10_000]) | set(fresh[1]):
        allowance = per_unit.get(operation, 0)
        extra = fresh[1].get(operation, 0) - fresh[10_000].get(operation, 0)
        assert extra <= allowance * (many - few), (operation, fresh, units)
    assert fresh[1]["marker"] == fresh[10_000]["marker"] <= 4, fresh  # one per partition, not per shard
    per_unit_rerun = {"read": 1, "info": 1}  # the footer and the size of every recorded shard, in its check task
    for operation in set(rerun[10_000]) | set(rerun[1]):
        allowance = per_unit_rerun.get(operation, 0)
        extra = rerun[1].get(operation, 0) - rerun[10_000].get(operation, 0)
        assert extra <= allowance * (many - few), (operation, rerun, units)
    assert "marker" not in rerun[1], rerun


def test_a_killed_assembly_resumes_from_its_partition_marker(run_dir: Path, tmp_path: Path, monkeypatch):
    """Killed after a few shards of one partition (the marker checkpointed after every shard here): the rerun
    writes only the shards not recorded, removes what a killed write left, and the mix is byte-identical to one
    written without interruption."""
    from refinery.mixes import shard_writer, unit_file

    weights = {"buckets": {"*": {"weight": 1}}, "heldout_fraction": 0.1, "shard_rows": 20}
    expected = write_mix(run_dir, weights, tmp_path / "whole", in_process=True)
    expected_files = {k: v for k, v in tree_digests(expected.parent).items() if not k.startswith("_work")}
    real_publish, written = unit_file.publish, []

    def killed_after_three(fs, temporary, path):
        if len(written) == 3:
            raise KeyboardInterrupt("killed")
        real_publish(fs, temporary, path)
        written.append(path)

    monkeypatch.setattr(shard_writer, "CHECKPOINT_BYTES", 1)
    monkeypatch.setattr(unit_file, "publish", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        write_mix(run_dir, weights, tmp_path / "killed", in_process=True)
    first = {p: Path(p).stat().st_mtime_ns for p in written}
    (tmp_path / "killed/shards/.tmp-0123456789ab-part-00009.parquet").write_bytes(b"half a file")  # a SIGKILL's
    rewritten = []

    def counting_publish(fs, temporary, path):
        rewritten.append(path)
        real_publish(fs, temporary, path)

    monkeypatch.setattr(unit_file, "publish", counting_publish)
    again = write_mix(run_dir, weights, tmp_path / "killed", in_process=True)
    assert {k: v for k, v in tree_digests(again.parent).items() if not k.startswith("_work")} == expected_files
    units = len(load_manifest(again)["shards"]) + len(load_manifest(again)["heldout"])
    assert len(rewritten) == units - 3 and not set(rewritten) & set(first), (len(rewritten), units)
    assert {p: Path(p).stat().st_mtime_ns for p in first} == first
