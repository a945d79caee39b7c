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
from pathlib import Path

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
