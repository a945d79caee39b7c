"""Interrupted runs: a worker killed mid-shard, and the driver killed mid-run, both end identical to a clean run."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import psutil
import pytest
from run_helpers import copy_inputs, output_digests, recipe_file, recipe_for

from refinery.pipelines.runner import run_recipe

REFINERY = [sys.executable, "-m", "refinery.pipelines.cli"]


@pytest.fixture(scope="module")
def reference(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    copy_inputs(base / "in")
    run_recipe(recipe_for(base / "in", base / "clean"), show_progress=False)
    return base, output_digests(base / "clean")


def kill_tree(process: psutil.Process) -> None:
    """Kill a process and every descendant (Ray workers of a killed driver can outlive it)."""
    family = [process, *process.children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    psutil.wait_procs(family, timeout=20)


def test_worker_killed_mid_shard_is_retried_and_output_matches(reference, tmp_path):
    base, clean = reference
    recipe = recipe_file(tmp_path / "recipe.json", recipe_for(base / "in", tmp_path / "out"))
    flags = tmp_path / "crashed"
    flags.mkdir()
    env = {**os.environ, "REFINERY_CRASH_ONCE_DIR": str(flags), "REFINERY_CRASH_MATCH": "web--"}
    done = subprocess.run(
        [*REFINERY, "run", str(recipe), "--num-cpus", "2", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    crashed = sorted(p.name for p in flags.iterdir())
    assert len(crashed) == 3, "each WARC shard's first attempt killed its worker"
    assert output_digests(tmp_path / "out") == clean


def test_driver_killed_mid_run_resumes_only_unfinished_shards(reference, tmp_path):
    base, clean = reference
    recipe = recipe_file(tmp_path / "recipe.json", recipe_for(base / "in", tmp_path / "out"))
    command = [*REFINERY, "run", str(recipe), "--num-cpus", "1", "--max-in-flight", "1", "--quiet"]
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    done_dir = tmp_path / "out/segments/00/done"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(done_dir.glob("*.json"))) < 2:
        time.sleep(0.05)
    kill_tree(psutil.Process(driver.pid))
    finished_before = {p.name: p.stat().st_mtime_ns for p in done_dir.glob("*.json")}
    total = len(clean) // 4
    assert 2 <= len(finished_before) < total, "the driver was killed mid-run"
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "out/run.json").read_text())
    assert summary["shards"]["resumed"] == len(finished_before)
    assert summary["shards"]["processed"] == total - len(finished_before)
    after = {p.name: p.stat().st_mtime_ns for p in done_dir.glob("*.json")}
    assert all(after[name] == stamp for name, stamp in finished_before.items()), "finished shards were not redone"
    assert not list((tmp_path / "out").rglob(".tmp-*")), "half-written files of the killed run are cleaned up"
    assert output_digests(tmp_path / "out") == clean
