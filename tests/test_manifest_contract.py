"""The manifest as a spine contract: one typed parse, confinement by resolved paths, cheap and full verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION, Manifest, ManifestError, write_manifest
from refinery.pipelines.storage import file_digest


def _shard(folder: Path, relative: str, rows: int) -> dict:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": [f"document {i}" for i in range(rows)], "n_tokens": [2] * rows}), path)
    size, digest = file_digest(path)
    return {"path": relative, "rows": rows, "tokens": 2 * rows, "bytes": size, "sha256": digest}


def _data(folder: Path) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": {"reference": "package:x", "sha256": "0" * 64},
        "shards": [_shard(folder, "shards/part-00000.parquet", 3), _shard(folder, "shards/part-00001.parquet", 2)],
        "heldout": {"web": _shard(folder, "heldout/web.parquet", 1)},
        "selection": {"method": "test"},  # a key the model does not name is kept
    }


def test_written_manifest_reads_back_typed(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "mix", _data(tmp_path / "mix"))
    manifest = Manifest.read(path)
    assert [e.path for e in manifest.entries()] == [
        "shards/part-00000.parquet",
        "shards/part-00001.parquet",
        "heldout/web.parquet",
    ]
    assert [e.bucket for e in manifest.entries()] == [None, None, "web"]
    assert manifest.data()["selection"] == {"method": "test"}
    assert manifest.verify(full=True) == [] and manifest.verify(full=False) == []


def test_a_symlinked_shards_folder_is_refused_when_written_and_when_read(tmp_path: Path) -> None:
    mix, elsewhere = tmp_path / "mix", tmp_path / "elsewhere"
    data = _data(mix)
    shutil.move(mix / "shards", elsewhere)
    (mix / "shards").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ManifestError, match="outside the manifest's folder"):
        write_manifest(mix, data)
    (mix / "manifest.json").write_text(json.dumps(data))  # written by something else: the reader refuses too
    with pytest.raises(ManifestError, match=r"shards/part-00000\.parquet.*outside the manifest's folder"):
        Manifest.read(mix / "manifest.json")


@pytest.mark.parametrize("bad", ["/etc/passwd", "../other/part.parquet", "shards/../../x.parquet", "s3://b/k"])
def test_paths_that_leave_the_folder_are_refused(tmp_path: Path, bad: str) -> None:
    data = _data(tmp_path)
    data["shards"][0]["path"] = bad
    with pytest.raises(ManifestError):
        write_manifest(tmp_path, data)


def test_malformed_manifest_names_the_field(tmp_path: Path) -> None:
    data = _data(tmp_path)
    data["shards"][1]["rows"] = "many"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"shards\.1\.rows"):
        Manifest.read(tmp_path / "manifest.json")


def test_cheap_check_sees_sizes_full_check_sees_bytes(tmp_path: Path) -> None:
    manifest = Manifest.read(write_manifest(tmp_path, _data(tmp_path)))
    shard = tmp_path / "shards/part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert manifest.verify(full=False) == []
    assert [p.split(":")[0] for p in manifest.verify(full=True)] == ["shards/part-00001.parquet"]
    shard.write_bytes(bytes(data[:-1]))
    assert "bytes, manifest says" in manifest.verify(full=False)[0]
