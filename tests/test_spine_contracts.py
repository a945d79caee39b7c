"""Spine contracts of issue 16 on real runs: unique document ids, a run directory that can be moved and resumed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from refinery.pipelines.cli import main
from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe
from refinery.pipelines.unique_ids import DuplicateIdError

TEXT = "Refinery keeps every document accounted for, kept or rejected with a reason. "


def _jsonl(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"doc": i, "text": f"{TEXT}{i}"}) + "\n" for i in ids))


def _recipe(tmp_path: Path, inputs: dict[str, str], out: str) -> dict:
    return {
        "name": "ids",
        "output_dir": str(tmp_path / out),
        "inputs": [
            {"name": name, "format": "jsonl", "paths": [pattern], "id_field": "doc"} for name, pattern in inputs.items()
        ],
        "stages": [{"stage": "length", "min_chars": 10}],
    }


def test_two_inputs_repeating_an_id_are_told_apart_by_input_name(ray_local, tmp_path: Path) -> None:
    _jsonl(tmp_path / "one/a.jsonl", ["x1", "x2"])
    _jsonl(tmp_path / "two/a.jsonl", ["x1", "x3"])
    data = _recipe(tmp_path, {"one": str(tmp_path / "one/*.jsonl"), "two": str(tmp_path / "two/*.jsonl")}, "out")
    result = run_recipe(parse_recipe(data, tmp_path), show_progress=False)
    ids = sorted(
        i for p in (tmp_path / "out/segments/00/kept").glob("*.parquet") for i in pq.read_table(p)["id"].to_pylist()
    )
    assert result.ok and ids == ["one/x1", "one/x2", "two/x1", "two/x3"]


def test_an_input_repeating_an_id_refuses_the_run_naming_id_and_files(ray_local, tmp_path: Path) -> None:
    _jsonl(tmp_path / "web/a.jsonl", ["x1", "x2"])
    _jsonl(tmp_path / "web/b.jsonl", ["x3", "x1"])
    data = _recipe(tmp_path, {"web": str(tmp_path / "web/*.jsonl")}, "out")
    with pytest.raises(DuplicateIdError) as raised:
        run_recipe(parse_recipe(data, tmp_path), show_progress=False)
    message = str(raised.value)
    assert "'web/x1'" in message and "web/a.jsonl" in message and "web/b.jsonl" in message
    assert "x2" not in message and "x3" not in message
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(data))
    assert main(["run", str(recipe), "--quiet"]) == 2  # the same from the CLI, again on a rerun


def _outputs(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted((run_dir / "segments").rglob("*"))
        if p.is_file() and p.parent.name in ("kept", "rejected", "errors", "stats")
    }


def test_a_moved_run_directory_resumes(ray_local, real_documents, tmp_path: Path) -> None:
    from dedup_corpus import build, recipe

    build(real_documents, tmp_path / "in", shards=3, count=40)
    stages = [{"stage": "exact_dedup", "num_partitions": 2}, {"stage": "length", "min_chars": 100}]
    first = run_recipe(parse_recipe(recipe(tmp_path / "in", tmp_path / "a", stages), tmp_path), show_progress=False)
    before = _outputs(tmp_path / "a")
    work_json = [p.read_text() for p in (tmp_path / "a").rglob("work/**/*.json")]
    assert work_json and not [t for t in work_json if str(tmp_path / "a") in t], "work files hold no absolute path"
    shutil.move(tmp_path / "a", tmp_path / "b")
    # half-finished: the last segment of one shard never completed
    last = sorted((tmp_path / "b/segments").iterdir())[-1]
    sorted((last / "done").glob("*.json"))[0].unlink()
    moved = run_recipe(parse_recipe(recipe(tmp_path / "in", tmp_path / "b", stages), tmp_path), show_progress=False)
    assert moved.ok and _outputs(tmp_path / "b") == before
    phases = {s["index"]: s.get("phase_seconds") for s in moved.summary["segments"]}
    assert phases == {s["index"]: s.get("phase_seconds") for s in first.summary["segments"]}, "no phase recomputed"
    assert moved.summary["shards"]["processed"] == 1, "only the unfinished shard ran again"
