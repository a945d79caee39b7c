"""Spine hardening: global stages only on complete input, no silently skipped files, failures that explain
themselves (issue 6). Each test here failed before its fix."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from run_helpers import copy_inputs, output_digests, recipe_file, recipe_for

from refinery.pipelines.recipe import RecipeError, parse_recipe
from refinery.pipelines.runner import run_recipe

REFINERY = [sys.executable, "-m", "refinery.pipelines.cli"]
GLOBAL_CHAIN = [
    {"stage": "length", "min_chars": 200},
    {"stage": "token_kl", "reject_fraction": 0.05},
    {"stage": "length", "min_chars": 300},
]


def all_digests(run_dir: Path) -> dict[str, str]:
    """Every deterministic output, the global stage's work files included (phase markers hold timings)."""
    digests = output_digests(run_dir)
    for path in sorted((run_dir / "segments").rglob("work/**/*")):
        if path.is_file() and "_phases" not in path.parts:
            digests[str(path.relative_to(run_dir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*REFINERY, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("spine")
    copy_inputs(base / "in")
    return base / "in"


def test_global_stage_waits_for_every_shard_and_rerun_matches_clean(ray_local, inputs, tmp_path):
    run_recipe(recipe_for(inputs, tmp_path / "clean", GLOBAL_CHAIN), show_progress=False)
    clean = all_digests(tmp_path / "clean")
    assert any("/work/" in name for name in clean), "the global stage wrote its phase files"

    recipe = recipe_file(
        tmp_path / "r.json", recipe_for(inputs, tmp_path / "out", GLOBAL_CHAIN, ray={"task_retries": 0})
    )
    flags = tmp_path / "flags"
    flags.mkdir()
    env = {**os.environ, "REFINERY_CRASH_ONCE_DIR": str(flags), "REFINERY_CRASH_MATCH": "copyright--"}
    first = cli("run", str(recipe), "--num-cpus", "2", "--quiet", env=env)
    assert first.returncode == 1, first.stderr[-2000:]
    assert "stopped before segment 1 (token_kl)" in first.stderr
    assert not (tmp_path / "out/segments/01").exists(), "the global stage never started on partial input"
    report = (tmp_path / "out/report.html").read_text()
    assert "PROBLEMS: 1 shard(s) failed" in report and "complete input" in report

    second = cli("run", str(recipe), "--num-cpus", "2", "--quiet", env=env)  # the crash hook fires once per shard
    assert second.returncode == 0, second.stderr[-2000:]
    assert all_digests(tmp_path / "out") == clean


def test_phase_is_recomputed_when_its_input_shards_change(tmp_path):
    from refinery.pipelines.global_runner import RayGlobalContext
    from refinery.pipelines.plan import plan_segments

    recipe = recipe_for(tmp_path, tmp_path / "run", GLOBAL_CHAIN)
    segment = plan_segments(recipe.stages, recipe.fingerprint())[1]

    def context(fingerprints: dict[str, str]) -> RayGlobalContext:
        return RayGlobalContext(segment, sorted(fingerprints), str(tmp_path / "run"), 0, 10, 1, 0, fingerprints)

    before = context({"a": "1", "b": "2"})
    (tmp_path / "run/segments/01/work").mkdir(parents=True)
    (tmp_path / "run/segments/01/work/threshold.json").write_text("{}")
    before.mark_phase_done("threshold", outputs=["threshold.json"])
    assert before.phase_done("threshold")
    assert not context({"a": "1", "b": "3"}).phase_done("threshold"), "a changed input shard"
    assert not context({"a": "1"}).phase_done("threshold"), "a missing input shard"
    (tmp_path / "run/segments/01/work/threshold.json").write_text('{"x": 1}')
    assert not before.phase_done("threshold"), "an altered output file"


def test_same_file_name_in_two_folders_gives_two_shards(ray_local, tmp_path):
    rows = {"a": ["first folder document " * 20], "b": ["second folder document " * 20, "another one " * 30]}
    for folder, texts in rows.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "part-00000.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    for paths in (
        [str(tmp_path / "a/part-00000.jsonl"), str(tmp_path / "b/part-00000.jsonl")],
        [str(tmp_path / "a/*.jsonl"), str(tmp_path / "b/*.jsonl")],
    ):
        out = tmp_path / f"run{len(paths[0])}"
        recipe = parse_recipe(
            {
                "name": "t",
                "output_dir": str(out),
                "inputs": [{"name": "crawl", "format": "jsonl", "paths": paths}],
                "stages": [{"stage": "length", "min_chars": 10}],
            },
            tmp_path,
        )
        result = run_recipe(recipe, show_progress=False)
        assert result.summary["shards"]["shards"] == 2
        assert result.summary["segments"][0]["stages"][0]["in"] == 3, "every document of both files was read"


def test_failed_start_does_not_claim_the_directory(inputs, tmp_path):
    recipe = recipe_for(inputs, tmp_path / "out").to_data()
    recipe["inputs"][0]["paths"] = [str(tmp_path / "missing/*.warc.gz")]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    failed = cli("run", str(path), "--quiet")
    assert failed.returncode == 2 and "matched no file" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "out/recipe.json").exists()


def test_other_recipe_in_directory_says_how_to_start_afresh(ray_local, inputs, tmp_path):
    run_recipe(recipe_for(inputs, tmp_path / "out"), show_progress=False)
    other = recipe_file(tmp_path / "r.json", recipe_for(inputs, tmp_path / "out", [{"stage": "length"}]))
    refused = cli("run", str(other), "--quiet", "--num-cpus", "2")
    assert refused.returncode == 2 and "--fresh" in refused.stderr and "--output" in refused.stderr
    fresh = cli("run", str(other), "--quiet", "--num-cpus", "2", "--fresh")
    assert fresh.returncode == 0, fresh.stderr[-2000:]


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([{"stage": "length", "min_chars": True}], "min_chars: expected an integer (given: True)"),
        ([{"stage": "length", "min_chars": "100"}], "min_chars: expected an integer (given: '100')"),
        ([{"stage": "language_id", "languages": ["english"]}], "unknown language code(s) ['english']"),
        ([{"stage": "gopher_quality", "only_languages": ["klingon"]}], "unknown language code(s) ['klingon']"),
        ([{"stage": "language_id", "model_path": "/nonexistent/lid.bin"}], "no such file or folder"),
        ([{"stage": "token_kl"}, {"stage": "token_kl"}], "adds column 'token_kl', which already exists"),
    ],
)
def test_configuration_errors_are_found_at_validation(tmp_path, stages, expected):
    with pytest.raises(RecipeError) as error:
        recipe_for(tmp_path, tmp_path / "out", stages)
    assert expected in str(error.value)


def test_every_stage_problem_is_reported_at_once(tmp_path):
    stages = [{"stage": "length", "min_chars": "x"}, {"stage": "language_id", "min_scor": 1}, {"stage": "nope"}]
    with pytest.raises(RecipeError) as error:
        recipe_for(tmp_path, tmp_path / "out", stages)
    message = str(error.value)
    assert "stages[0]" in message and "stages[1]" in message and "stages[2]" in message


def test_cli_errors_exit_2_without_traceback(inputs, tmp_path):
    recipe = recipe_for(inputs, tmp_path / "out").to_data()
    recipe["inputs"][1]["paths"] = [str(tmp_path / "nothing.jsonl")]
    (tmp_path / "missing.json").write_text(json.dumps(recipe))
    recipe = recipe_for(inputs, tmp_path / "out").to_data()
    recipe["stages"] = [{"stage": "token_kl"}, {"stage": "token_kl"}]
    (tmp_path / "twice.json").write_text(json.dumps(recipe))
    for args in (
        ["validate", str(tmp_path / "missing.json")],
        ["validate", str(tmp_path / "twice.json")],
        ["report", str(tmp_path / "no-such-run")],
    ):
        done = cli(*args, timeout=120)
        assert done.returncode == 2, (args, done.stderr[-1000:])
        assert "Traceback" not in done.stderr and done.stderr.startswith("refinery: ")


@pytest.mark.parametrize("stage", ["c4_quality", "line_ngram_repetition"])
def test_rejected_rows_of_text_editing_stages_hold_the_original(real_documents, stage):
    import pyarrow as pa

    from refinery.pipelines.recipe import build_stage

    params = {"c4_quality": {"min_num_sentences": 1000}, "line_ngram_repetition": {"min_words": 4}}[stage]
    documents = real_documents.slice(0, 80)
    # a log-like page: every line repeats its own 4-grams, so line_ngram_repetition empties it
    log = "\n".join(f"retry {i} failed retry {i} failed retry {i} failed retry {i} failed" for i in range(30))
    extra = documents.slice(0, 1).set_column(documents.schema.get_field_index("text"), "text", pa.array([log]))
    extra = extra.set_column(documents.schema.get_field_index("id"), "id", pa.array(["log-page"]))
    documents = pa.concat_tables([documents, extra.cast(documents.schema)])
    result = build_stage(0, {"stage": stage, **params}).process(documents)
    assert result.rejected.num_rows > 0
    originals = dict(zip(documents["id"].to_pylist(), documents["text"].to_pylist(), strict=True))
    for row_id, text in zip(result.rejected["id"].to_pylist(), result.rejected["text"].to_pylist(), strict=True):
        assert text == originals[row_id]


def test_ctrl_c_prints_one_line_and_exits_130(inputs, tmp_path):
    recipe = recipe_file(tmp_path / "r.json", recipe_for(inputs, tmp_path / "out"))
    driver = subprocess.Popen(
        [*REFINERY, "run", str(recipe), "--num-cpus", "1", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "out/recipe.json").exists():
        time.sleep(0.05)
    time.sleep(1.0)
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-2000:]
    assert "interrupted; run the same command again" in stderr
    assert "Traceback" not in stderr


def test_report_plots_time_per_stage(ray_local, inputs, tmp_path):
    run_recipe(recipe_for(inputs, tmp_path / "out"), show_progress=False)
    report = (tmp_path / "out/report.html").read_text()
    assert "Time per stage" in report and "MB/s" in report
    assert pq.read_table(tmp_path / "out/segments/00/kept").num_rows > 0


def test_code_points_to_the_repository_architecture_page():
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "docs/architecture.md").is_file()
    offenders = [
        str(p.relative_to(repo))
        for folder in ("pipelines", "filters", "dedup", "classifiers", "mixes", "training")
        for p in (repo / folder).rglob("*.py")
        if "shared/DESIGN" in p.read_text()
    ]
    assert not offenders
