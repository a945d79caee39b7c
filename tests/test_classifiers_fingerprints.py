"""Fingerprints see the files stages load (issue 18 item 4): a student retrained into the same folder recomputes
the classifier's segment and the percentile threshold; an unchanged rerun still reuses everything.

On main the segment fingerprint covered the recipe only: the second run below reused every shard and the old
threshold.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refinery.classifiers.scoring import QualityClassifier
from refinery.pipelines import file_digests
from refinery.pipelines.plan import plan_segments
from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]
EDU = REPO / "classifiers" / "models" / "edu_fasttext"
LABELS = REPO / "classifiers" / "data" / "llama3_sample"


@pytest.fixture(autouse=True)
def private_digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(file_digests.CACHE_ENV, str(tmp_path / "digests.json"))
    monkeypatch.setattr(file_digests, "_memory", {})
    monkeypatch.setattr(file_digests, "_disk_loaded", False)


def recipe(tmp_path: Path, student: Path):
    shutil.copytree(REPO / "sample_corpus" / "parquet", tmp_path / "in", dirs_exist_ok=True)
    data = {
        "name": "fingerprints",
        "output_dir": str(tmp_path / "out"),
        "batch_size": 64,
        "inputs": [{"name": "changelog", "format": "parquet", "paths": [str(tmp_path / "in" / "*.parquet")]}],
        "stages": [
            {"stage": "length", "min_chars": 50},
            {"stage": "quality_classifier", "model_path": str(student)},
            {"stage": "quality_percentile", "model_path": str(student), "column": "edu", "min_percentile": 0.2},
            {"stage": "length", "min_chars": 60},
        ],
    }
    return parse_recipe(data, tmp_path)


def retrain(student: Path, epoch: int) -> None:
    """``refinery train-classifier`` into the same folder (a real retrain, different epochs: a different model)."""
    command = [sys.executable, "-m", "refinery.pipelines.cli", "train-classifier", str(LABELS), "--prompt", "edu"]
    command += ["--kind", "fasttext", "--output", str(student), "--epoch", str(epoch), "--dim", "8"]
    subprocess.run(command, check=True, capture_output=True)


def test_segment_fingerprints_fold_in_loaded_files(tmp_path):
    student = tmp_path / "student"
    shutil.copytree(EDU, student)
    before = [s.fingerprint for s in plan_segments(recipe(tmp_path, student).stages, "r")]
    (student / "eval").mkdir(exist_ok=True)
    (student / "eval" / "eval.json").write_text("{}")  # evaluation output is not something a stage loads
    assert [s.fingerprint for s in plan_segments(recipe(tmp_path, student).stages, "r")] == before
    data = bytearray((student / "model.bin").read_bytes())
    data[-1] ^= 1
    (student / "model.bin").write_bytes(bytes(data))
    after = [s.fingerprint for s in plan_segments(recipe(tmp_path, student).stages, "r")]
    assert after[0] != before[0], "segment 0 loads the student (quality_classifier)"
    assert after[1] != before[1] and after[2] != before[2], "the percentile segment and the one after it follow"
    assert QualityClassifier(model_path=str(student)).loaded_files()[:2] == [
        str(student / "student.json"),
        str(student / "model.bin"),
    ]


def test_digests_are_cached_by_path_mtime_and_size(tmp_path, monkeypatch):
    model = tmp_path / "m.bin"
    model.write_bytes(b"x" * 1000)
    hashed: list[str] = []
    original = file_digests._hash_file
    monkeypatch.setattr(file_digests, "_hash_file", lambda p: hashed.append(str(p)) or original(p))
    first = file_digests.path_digest(model)
    assert file_digests.path_digest(model) == first and len(hashed) == 1, "second call from the cache"
    monkeypatch.setattr(file_digests, "_memory", {})  # a new process: the disk cache answers
    monkeypatch.setattr(file_digests, "_disk_loaded", False)
    assert file_digests.path_digest(model) == first and len(hashed) == 1
    model.write_bytes(b"y" * 1001)
    assert file_digests.path_digest(model) != first and len(hashed) == 2


def test_a_retrained_student_recomputes_its_segments_and_the_threshold(ray_local, tmp_path):
    student = tmp_path / "student"
    shutil.copytree(EDU, student)
    first = run_recipe(recipe(tmp_path, student), show_progress=False)
    assert first.ok
    threshold_file = tmp_path / "out/segments/01/work/threshold.json"
    old_threshold = json.loads(threshold_file.read_text())
    assert run_recipe(recipe(tmp_path, student), show_progress=False).summary["shards"]["processed"] == 0

    retrain(student, epoch=3)
    second = run_recipe(recipe(tmp_path, student), show_progress=False)
    assert second.ok and second.summary["shards"]["processed"] == first.summary["shards"]["processed"]
    new_threshold = json.loads(threshold_file.read_text())
    assert new_threshold != old_threshold, "the percentile threshold was recomputed with the new student"
    kept = pq.read_table(tmp_path / "out/segments/00/kept")
    rescored = QualityClassifier(model_path=str(student)).scores([t or "" for t in kept["text"].to_pylist()])
    assert kept["quality_score"].to_pylist() == rescored.tolist(), "segment 0 holds the new student's scores"
