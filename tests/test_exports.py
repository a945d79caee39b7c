"""Trainer formats from a real mix, read back by the trainers' own libraries (megatron-core, datatrove).

A small real run (length, language ID, token_count) → a weighted mix with held-out sets → Megatron and datatrove
exports. Each test asserts what the trainer would see: the same token ids as the Parquet shards tokenized
directly, the manifest's bucket weights in the blend, byte-identical reruns, resume of only the missing shards,
and ``refinery verify`` failing on a corrupted ``.bin``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from run_helpers import STAGES, copy_inputs, recipe_for

from refinery.exports.exporter import export_manifest
from refinery.exports.lineage import load_export, verify_export
from refinery.exports.shard_task import ExportError
from refinery.mixes.writer import write_mix
from refinery.pipelines.cli import main as cli
from refinery.pipelines.manifest import load_manifest, shard_entries
from refinery.pipelines.models import load_tokenizer, tokenizer_file
from refinery.pipelines.runner import run_recipe
from refinery.pipelines.storage import TEMPORARY_PREFIX

MIX = {
    "shard_rows": 40,
    "heldout_fraction": 0.1,
    "heldout_max_documents": 3,
    "buckets": {"web": {"weight": 0.5}, "copyright": {"weight": 0.3}, "changelog": {"weight": 0.2, "max_epochs": 4}},
}
BOS, EOS = 128000, 128001


@pytest.fixture(scope="module")
def mix(ray_local, tmp_path_factory) -> Path:
    """A real run over three sample shards, then a weighted mix of it (several shards, held-out sets)."""
    base = tmp_path_factory.mktemp("export_run")
    copied = copy_inputs(base / "in")
    copied["warc"][1].unlink()
    stages = [{**STAGES[0], "max_chars": 20_000}, *STAGES[1:], {"stage": "token_count"}]
    assert run_recipe(recipe_for(base / "in", base / "run", stages=stages), show_progress=False).ok
    return write_mix(base / "run", MIX, base / "mix", seed=3)


@pytest.fixture(scope="module")
def megatron(mix: Path, tmp_path_factory) -> Path:
    return export_manifest(mix, "megatron", tmp_path_factory.mktemp("meg") / "out")


@pytest.fixture(scope="module")
def datatrove_export(mix: Path, tmp_path_factory) -> Path:
    """The datatrove export, through the CLI verb."""
    output = tmp_path_factory.mktemp("dt") / "out"
    name = str(tokenizer_file().parent)  # a Hugging Face tokenizer folder: what nanotron loads from .ds.metadata
    assert cli(["export", str(mix), "--format", "datatrove", "--output", str(output), "--tokenizer-name", name]) == 0
    return output / "export.json"


def documents_by_bucket(mix: Path, heldout: bool = False) -> dict[str, list[str]]:
    """Each bucket's texts in the order of the manifest's shards (the export's document order)."""
    out: dict[str, list[str]] = {}
    for entry in shard_entries(load_manifest(mix)):
        if (entry.bucket is not None) != heldout:
            continue
        table = pq.read_table(mix.parent / entry.path, columns=["text", "bucket"])
        for text, bucket in zip(table["text"].to_pylist(), table["bucket"].to_pylist(), strict=True):
            out.setdefault(bucket, []).append(text)
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def tree_digests(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not str(p.relative_to(folder)).startswith(skip)
    }


def test_megatron_indexed_dataset_returns_the_shards_tokens(megatron: Path, mix: Path, tokenizer):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    record = load_export(megatron)
    for heldout, split in ((False, "train"), (True, "heldout")):
        for bucket, texts in documents_by_bucket(mix, heldout).items():
            dataset = IndexedDataset(str(megatron.parent / split / bucket), mmap=True)
            assert len(dataset) == len(texts)
            assert dataset.index.dtype == np.int32  # Llama 3: 128,257 ids need more than uint16
            for i, text in enumerate(texts):
                # the tokenizer's own template adds <|begin_of_text|>; Megatron's --append-eod adds the EOD
                expected = [*tokenizer.encode(text).ids, EOS]
                assert expected[0] == BOS
                assert dataset[i].tolist() == expected, (split, bucket, i)
    names = {d["name"] for d in record["datasets"]}
    assert names == {"train/changelog", "train/copyright", "train/web"} | {
        f"heldout/{b}" for b in load_manifest(mix)["heldout"]
    }


def test_megatron_blend_carries_the_manifest_weights(megatron: Path, mix: Path):
    manifest = load_manifest(mix)
    record = load_export(megatron)
    fields = (megatron.parent / "blend.txt").read_text().split()
    weights = {prefix: float(w) for w, prefix in zip(fields[::2], fields[1::2], strict=True)}
    assert sorted(weights) == ["train/changelog", "train/copyright", "train/web"]
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    train = [d for d in record["datasets"] if d["split"] == "train"]
    total = sum(d["tokens"] for d in train)
    for dataset in train:
        bucket = manifest["buckets"][dataset["bucket"]]
        assert (megatron.parent / (dataset["name"] + ".bin")).is_file()  # prefixes are relative to the export
        assert weights[dataset["name"]] == pytest.approx(dataset["tokens"] / total, abs=1e-8)
        # the dataset holds exactly the bucket's documents and tokens of the mix (+ BOS/EOS per document)
        assert (dataset["documents"], dataset["content_tokens"]) == (bucket["documents"], bucket["tokens"])
        assert dataset["tokens"] == bucket["tokens"] + 2 * bucket["documents"]
        assert dataset["manifest_weight"] == bucket["weight"]
    heldout = (megatron.parent / "heldout_blend.txt").read_text().split()
    assert sorted(heldout[1::2]) == sorted(f"heldout/{b}" for b in manifest["heldout"])


def test_datatrove_reader_returns_the_same_tokens(datatrove_export: Path, mix: Path, tokenizer):
    from datatrove.utils.dataset import DatatroveFolderDataset

    root, seq_len = datatrove_export.parent, 31
    for heldout, split in ((False, "train"), (True, "heldout")):
        for bucket, texts in documents_by_bucket(mix, heldout).items():
            folder = root / split / bucket
            files = sorted(folder.glob("*.ds"))
            documents = [[*tokenizer.encode(t, add_special_tokens=False).ids, EOS] for t in texts]
            stored = [np.fromfile(f, dtype="<u4") for f in files]
            assert np.array_equal(np.concatenate(stored), np.concatenate(documents)), (split, bucket)
            ends, offset = [], 0
            for file, tokens in zip(files, stored, strict=True):
                ends.extend((np.fromfile(str(file) + ".index", dtype="<u8") + offset).tolist())
                offset += len(tokens)
            assert ends == np.cumsum([len(d) for d in documents]).tolist()  # document boundaries
            # the reader nanotron's Nanoset builds per folder: whole windows of seq_len + 1 tokens, file by file
            dataset = DatatroveFolderDataset(str(folder), seq_len=seq_len, token_size=4, recursive=False)
            assert sorted(Path(f.file_path).name for f in dataset.files) == [f.name for f in files]
            by_name = dict(zip([f.name for f in files], stored, strict=True))
            expected = [
                window
                for f in dataset.files
                for tokens in [by_name[Path(f.file_path).name]]
                for window in tokens[: len(tokens) // (seq_len + 1) * (seq_len + 1)].reshape(-1, seq_len + 1)
            ]
            read = [dataset[i]["input_ids"].numpy() for i in range(len(dataset))]
            assert len(read) == len(expected)
            assert all(np.array_equal(a, b) for a, b in zip(read, expected, strict=True))
    metadata = (root / "train" / "web" / "part-00000.ds.metadata").read_text().splitlines()
    assert metadata[0] == f"{tokenizer_file().parent}|4"
    assert int(metadata[1]) == (root / "train" / "web" / "part-00000.ds").stat().st_size // 4


def test_datatrove_files_match_datatrove_document_tokenizer(datatrove_export: Path, mix: Path, tmp_path: Path):
    """The same documents through datatrove's own DocumentTokenizer give byte-identical .ds and .ds.index."""
    from datatrove.data import Document
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    record = load_export(datatrove_export)
    first = next(s for s in record["sources"] if s["path"].startswith("shards/"))
    table = pq.read_table(mix.parent / first["path"], columns=["text", "bucket"])
    bucket = table["bucket"][0].as_py()
    texts = [t for t, b in zip(table["text"].to_pylist(), table["bucket"].to_pylist(), strict=True) if b == bucket]
    step = DocumentTokenizer(
        str(tmp_path),
        tokenizer_name_or_path=str(tokenizer_file()),
        eos_token="<|end_of_text|>",
        shuffle_documents=False,
        save_filename="peer",
    )
    step.run(iter(Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
    peer = next(tmp_path.glob("peer*.ds"))
    ours = datatrove_export.parent / "train" / bucket / "part-00000.ds"
    assert ours.read_bytes() == peer.read_bytes()
    assert Path(str(ours) + ".index").read_bytes() == Path(str(peer) + ".index").read_bytes()


def test_verify_checks_an_export_and_fails_on_a_corrupted_bin(megatron: Path, mix: Path, tmp_path: Path, capsys):
    assert cli(["verify", str(megatron)]) == 0
    assert verify_export(megatron) == []
    copy = tmp_path / "copy"
    shutil.copytree(megatron.parent, copy)
    data = bytearray((copy / "train/web.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "train/web.bin").write_bytes(bytes(data))
    capsys.readouterr()
    assert cli(["verify", str(copy / "export.json")]) == 1
    assert "BAD train/web.bin: sha256" in capsys.readouterr().err
    # exporting again into that folder rebuilds the web dataset (its parts were removed after the merge)
    export_manifest(mix, "megatron", copy)
    assert cli(["verify", str(copy / "export.json")]) == 0
    assert tree_digests(copy, skip=("_work",)) == tree_digests(megatron.parent, skip=("_work",))


def test_rerun_is_byte_identical_and_skips_everything(megatron: Path, mix: Path, tmp_path: Path):
    before = tree_digests(megatron.parent)
    markers = {p: p.stat().st_mtime_ns for p in (megatron.parent / "_work/markers").glob("*.json")}
    assert export_manifest(mix, "megatron", megatron.parent) == megatron
    assert tree_digests(megatron.parent) == before
    assert {p: p.stat().st_mtime_ns for p in markers} == markers  # nothing was re-tokenized or re-merged
    fresh = export_manifest(mix, "megatron", tmp_path / "again")
    assert tree_digests(fresh.parent) == before


def test_killed_export_resumes_only_the_missing_shards(megatron: Path, mix: Path, tmp_path: Path):
    """The state a kill leaves (some shards done, one half-written, nothing merged) ends identical."""
    output = tmp_path / "killed"
    export_manifest(mix, "megatron", output, keep_parts=True)
    markers = sorted((output / "_work/markers").glob("train-*.json"))
    assert len(markers) >= 3
    lost = markers[1:]
    for marker in lost:  # these shards had not finished: no marker, no parts (or a partial .tmp)
        for output_record in json.loads(marker.read_text())["outputs"].values():
            for relative in output_record["files"]:
                (output / relative).unlink()
        marker.unlink()
    for path in [
        output / "export.json",
        *output.glob("*blend*"),
        *(output / "train").glob("*"),
        *(output / "_work/markers").glob("dataset-*"),
    ]:
        path.unlink()
    # half-written files a killed writer leaves (the spine's temporary names): a part, and a merged dataset
    (output / f"_work/parts/train/web/{TEMPORARY_PREFIX}0a1b-part-00001.bin").write_bytes(b"\x00" * 12)
    (output / f"train/{TEMPORARY_PREFIX}2c3d-web.bin").write_bytes(b"\x00" * 12)
    kept = {markers[0]: markers[0].stat().st_mtime_ns}
    export_manifest(mix, "megatron", output)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished shard was not redone
    assert all(m.is_file() for m in lost)
    assert not (output / "_work/parts").exists()
    assert tree_digests(output, skip=("_work",)) == tree_digests(megatron.parent, skip=("_work",))


def test_a_changed_shard_is_refused(mix: Path, tmp_path: Path):
    copy = tmp_path / "mix"
    shutil.copytree(mix.parent, copy)
    shard = copy / "shards/part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"shards/part-00000\.parquet"):
        export_manifest(copy / "manifest.json", "datatrove", tmp_path / "out")


def test_fast_bpe_gives_exactly_the_reference_ids(tokenizer):
    """tiktoken's whole-piece rule differs on some words; those documents are re-encoded by the reference."""
    from refinery.exports.fast_bpe import DocumentEncoder

    texts = [
        " В обоих случаях благодаря",  # pieces in the vocabulary that the reference's merges do not reach
        "see <|end_of_text|> and <|begin_of_text|>x",  # special tokens in text split out as the reference does
        "",
        "naïve 😀 日本語のテキスト\n\n\t x  ",
        "Debian's copyright: GPL-2+ and 1,234,567 lines",
    ]
    expected = [tokenizer.encode(t, add_special_tokens=False).ids for t in texts]
    encoder = DocumentEncoder(tokenizer, tokenizer_file())
    assert encoder.fast is not None  # the bundled Llama 3 file is mirrored
    assert encoder.encode(texts, np.array([len(e) for e in expected])) == expected
    assert encoder.reencoded == 1  # only the first document needed the reference
    assert DocumentEncoder(tokenizer, tokenizer_file()).encode(texts, None) == expected  # no counts: reference


# -- exports to fsspec URLs ------------------------------------------------------------------------------------
# memory:// lives in this process only, so the exports to it run in_process (every task here, no Ray); the Ray
# path (tasks in worker processes) writes to a file:// URL, which every worker of this machine reaches.


@pytest.fixture
def memory_root():
    """A fresh folder of fsspec's in-process memory filesystem, removed afterwards."""
    import fsspec

    fs = fsspec.filesystem("memory")
    name = f"/export-test-{uuid.uuid4().hex[:12]}"
    yield f"memory://{name}"
    if fs.exists(name):
        fs.rm(name, recursive=True)


def copy_to_url(folder: Path, url: str) -> str:
    """Every file of a local folder written under ``url`` (same relative paths); returns ``url``."""
    fs, root = fsspec.core.url_to_fs(url)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(folder)}", path.read_bytes())
    return url


def url_tree_digests(url: str) -> dict[str, str]:
    """``tree_digests`` of a folder on any fsspec filesystem."""
    fs, root = fsspec.core.url_to_fs(url)
    return {p[len(root) + 1 :]: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in sorted(fs.find(root))}


@pytest.mark.parametrize("export_format", ["megatron", "datatrove"])
def test_export_from_and_to_memory_urls_is_the_local_export(
    export_format: str, mix: Path, memory_root: str, request, capsys
):
    """Manifest, shards and export all on memory://: every file (markers included) equals the local export's."""
    local = request.getfixturevalue("megatron" if export_format == "megatron" else "datatrove_export")
    manifest = copy_to_url(mix.parent, f"{memory_root}/mix") + "/manifest.json"
    output = f"{memory_root}/out"
    name = str(tokenizer_file().parent) if export_format == "datatrove" else None  # as the local fixture's
    export_json = export_manifest(manifest, export_format, output, in_process=True, tokenizer_name=name)
    assert export_json == f"{output}/export.json"
    assert url_tree_digests(output) == tree_digests(local.parent)
    assert load_export(export_json)["files"] == load_export(local)["files"]
    assert verify_export(export_json) == []
    assert cli(["verify", export_json]) == 0
    if export_format == "datatrove":  # nanotron's reader takes the URL of a bucket's folder as it is
        from datatrove.utils.dataset import DatatroveFolderDataset

        remote, near = (
            DatatroveFolderDataset(folder, seq_len=31, token_size=4, recursive=False)
            for folder in (f"{output}/train/web", str(local.parent / "train" / "web"))
        )
        assert len(remote) == len(near) > 0
        assert all(np.array_equal(remote[i]["input_ids"], near[i]["input_ids"]) for i in range(len(near)))
    fs, root = fsspec.core.url_to_fs(output)
    token_file = next(f["path"] for f in load_export(export_json)["files"] if f["path"].startswith("train/web"))
    data = bytearray(fs.cat_file(f"{root}/{token_file}"))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(f"{root}/{token_file}", bytes(data))
    capsys.readouterr()
    assert cli(["verify", export_json]) == 1
    assert f"BAD {token_file}: sha256" in capsys.readouterr().err


def test_memory_url_export_on_ray_is_refused(mix: Path, memory_root: str, tmp_path: Path, monkeypatch):
    """Ray workers cannot see this process's memory: a clear error, not an export.json over files nobody has."""
    monkeypatch.chdir(tmp_path)  # where a path-only exporter would have made a folder named "memory:"
    with pytest.raises(ExportError, match="memory://"):
        export_manifest(mix, "datatrove", f"{memory_root}/out")
    assert not list(tmp_path.iterdir())


def test_cli_export_to_a_file_url_through_ray(datatrove_export: Path, mix: Path, tmp_path: Path, monkeypatch):
    """The CLI with file:// URLs for the manifest and the output: Ray tasks write there, identical files."""
    monkeypatch.chdir(tmp_path)  # where a path-only exporter would have made a folder named "file:"
    output = f"file://{tmp_path}/out"
    name = str(tokenizer_file().parent)
    args = ["export", f"file://{mix}", "--format", "datatrove", "--output", output, "--tokenizer-name", name]
    assert cli(args) == 0
    assert tree_digests(tmp_path / "out") == tree_digests(datatrove_export.parent)
    assert cli(["verify", f"{output}/export.json"]) == 0


class Killed(Exception):
    """What the test raises in place of a kill."""


def test_interrupted_export_to_memory_resumes_only_the_unfinished_shards(
    megatron: Path, mix: Path, memory_root: str, monkeypatch
):
    """An export to memory:// stopped inside its third shard task (two shards finished; the third has one part
    in place, others open, no marker), plus a temporary where a kill between an object's write and its copy to
    the final name leaves one: the rerun tokenizes only the unfinished shards, keeps the finished markers, and
    ends identical, file by file, to the local export."""
    from refinery.exports import exporter, shard_task

    manifest = copy_to_url(mix.parent, f"{memory_root}/mix") + "/manifest.json"
    output = f"{memory_root}/out"
    fs, root = fsspec.core.url_to_fs(output)
    sources = len(shard_entries(load_manifest(mix)))
    tasks, encoders = [], []
    export_source, finish = shard_task.export_source, shard_task._PartWriter.finish

    def counted_task(job):
        tasks.append(job["source"])
        return export_source(job)

    def finish_then_stop(writer, side_files):
        record = finish(writer, side_files)
        if len(tasks) == 3:
            raise Killed
        return record

    class CountingEncoder(shard_task.DocumentEncoder):
        def __init__(self, *args, **kwargs):
            encoders.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(shard_task, "DocumentEncoder", CountingEncoder)
    with monkeypatch.context() as patch:
        patch.setattr(exporter, "export_source", counted_task)
        patch.setattr(shard_task._PartWriter, "finish", finish_then_stop)
        with pytest.raises(Killed):
            export_manifest(manifest, "megatron", output, in_process=True)
    markers = {p: fs.info(p)["created"] for p in fs.find(f"{root}/_work/markers")}
    assert len(markers) == 2 and not fs.exists(f"{root}/export.json")
    assert fs.find(f"{root}/_work/parts")  # the finished shards' parts, waiting for the merge
    fs.pipe_file(f"{root}/train/{TEMPORARY_PREFIX}2c3d-web.bin", b"\x00" * 12)
    encoders.clear()
    export_json = export_manifest(manifest, "megatron", output, in_process=True)
    assert len(encoders) == sources - 2  # only the unfinished shards were tokenized again
    assert {p: fs.info(p)["created"] for p in markers} == markers  # the finished shards' markers untouched
    assert url_tree_digests(output) == tree_digests(megatron.parent)  # no parts, no temporaries, same bytes
    assert verify_export(export_json) == []
