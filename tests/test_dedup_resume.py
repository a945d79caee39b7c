"""A run killed (driver and workers) in the middle of MinHash's component rounds resumes and ends byte-identical
to a clean run. (An interrupted partition phase is simulated more cheaply in test_dedup_stages.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
from dedup_corpus import all_stages, build, recipe
from run_helpers import output_digests
from test_resume_kill import kill_tree

from refinery.dedup.phases import PAUSE_DIR_ENV, PAUSE_PHASE_ENV
from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe

REFINERY = [sys.executable, "-m", "refinery.pipelines.cli"]


def killed_in(phase: str, command: list[str], flags, timeout: float = 180) -> None:
    """Start the run, wait until a task of ``phase`` is running (the others finished), kill driver and workers."""
    env = {**os.environ, PAUSE_DIR_ENV: str(flags), PAUSE_PHASE_ENV: phase}
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + timeout
    while time.time() < deadline and not any(p.name.startswith(phase) for p in flags.iterdir()):
        assert driver.poll() is None, "the run ended before reaching the phase"
        time.sleep(0.1)
    time.sleep(1.0)
    kill_tree(psutil.Process(driver.pid))


def test_kill_mid_components_then_resume(ray_local, real_documents, tmp_path):
    build(real_documents, tmp_path / "in")
    run_recipe(parse_recipe(recipe(tmp_path / "in", tmp_path / "clean", all_stages(4)), tmp_path), show_progress=False)
    clean = output_digests(tmp_path / "clean")
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(recipe(tmp_path / "in", tmp_path / "out", all_stages(4))))
    command = [*REFINERY, "run", str(path), "--num-cpus", "2", "--quiet"]
    flags = tmp_path / "flags"
    flags.mkdir()
    work = tmp_path / "out/segments/04/work"

    killed_in("components-r01", command, flags)
    assert (work / "_phases/components-r00.json").exists() and not (work / "_phases/components-r01.json").exists()
    assert list((work / "components-r01/rows/_index").glob("*.json")), "killed after some of the round's files"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert output_digests(tmp_path / "out") == clean
