"""Cluster mode: a real two-node Ray cluster on this machine runs the same recipe to the same bytes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_helpers import copy_inputs, output_digests, recipe_file, recipe_for

from refinery.pipelines.runner import run_recipe

RAY = str(Path(sys.executable).with_name("ray"))


def start_node(arguments: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``ray start --block`` in its own process group, so the test can stop exactly this node."""
    return subprocess.Popen(
        [RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", *arguments],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop_node(node: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if node.poll() is not None:
            break
        os.killpg(node.pid, sig)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)  # whatever the node left in its group


def wait_for_nodes(address: str, count: int, env: dict[str, str], timeout: float = 90) -> None:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); "
        "print(len([n for n in ray.nodes() if n['Alive']]))"
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1)
    raise TimeoutError(f"the cluster at {address} did not reach {count} nodes")


def test_two_node_cluster_matches_the_embedded_run(ray_local, tmp_path):
    copy_inputs(tmp_path / "in")
    run_recipe(recipe_for(tmp_path / "in", tmp_path / "embedded"), show_progress=False)
    temp = Path(f"/tmp/rfc-{os.getpid()}")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    port = 27000 + os.getpid() % 1000
    address = f"127.0.0.1:{port}"
    head = start_node(
        ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false", "--node-ip-address=127.0.0.1"],
        env,
    )
    worker = None
    try:
        wait_for_nodes(address, 1, env)
        worker = start_node([f"--address={address}", "--node-ip-address=127.0.0.1"], env)
        wait_for_nodes(address, 2, env)
        recipe = recipe_file(tmp_path / "recipe.json", recipe_for(tmp_path / "in", tmp_path / "cluster"))
        done = subprocess.run(
            [sys.executable, "-m", "refinery.pipelines.cli", "run", str(recipe), "--address", address, "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        for node in (worker, head):
            if node is not None:
                stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)
    nodes = {json.loads(p.read_text())["worker"]["node_id"] for p in (tmp_path / "cluster").rglob("done/*.json")}
    assert len(nodes) == 2, "tasks ran on both nodes"
    summary = json.loads((tmp_path / "cluster" / "run.json").read_text())
    assert len(summary["segments"][0]["shards_per_node"]) == 2
    assert output_digests(tmp_path / "cluster") == output_digests(tmp_path / "embedded")
