"""The stand-in for Ray's minimal dashboard agent: the port files it writes, how it follows the raylet out, and
where the embedded head puts it in the raylet's command line.

The stand-in is run the way the raylet runs it (``python -S -I PATH``). That a real raylet accepts it, and that it
goes when the head does, is checked in ``tests/test_ray_session.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from refinery.pipelines.ray_session import AGENT_STANDIN, DASHBOARD_AGENT_FLAG, standin_command, with_agent_stood_in

NODE = "ab" * 28
PORTS = ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port")


def start_standin(session: Path, stdin: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    arguments = [f"--session-dir={session}", f"--node-id={NODE}", f"--port-names={','.join(PORTS)}", "--head"]
    return subprocess.Popen([sys.executable, "-S", "-I", AGENT_STANDIN, *arguments], stdin=stdin, env=env)


def wait_for_ports(session: Path) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        files = {name: session / f"{name}_{NODE}" for name in PORTS}
        if all(path.exists() for path in files.values()):
            return {name: path.read_text() for name, path in files.items()}
        time.sleep(0.05)
    raise AssertionError(f"port files not written: {sorted(os.listdir(session))}")


def test_writes_not_in_use_ports_and_exits_when_the_raylets_pipe_closes(tmp_path: Path):
    standin = start_standin(tmp_path, subprocess.PIPE)
    try:
        assert wait_for_ports(tmp_path) == dict.fromkeys(PORTS, "-1")
        assert sorted(os.listdir(tmp_path)) == sorted(f"{name}_{NODE}" for name in PORTS), "no partial file left"
        time.sleep(0.5)
        assert standin.poll() is None, "the stand-in must live as long as the raylet"
        standin.stdin.close()  # what the raylet's exit does to the pipe
        assert standin.wait(timeout=10) == 0
    finally:
        standin.kill()


def test_without_a_pipe_it_follows_the_raylet_pid(tmp_path: Path):
    raylet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    standin = start_standin(tmp_path, subprocess.DEVNULL, env={**os.environ, "RAY_RAYLET_PID": str(raylet.pid)})
    try:
        wait_for_ports(tmp_path)
        time.sleep(1.5)
        assert standin.poll() is None
        raylet.kill()
        raylet.wait()
        assert standin.wait(timeout=10) == 0
    finally:
        raylet.kill()
        standin.kill()


def test_refuses_a_command_line_without_where_to_write(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-S", "-I", AGENT_STANDIN, f"--session-dir={tmp_path}"], capture_output=True, text=True
    )
    assert done.returncode != 0 and "usage" in done.stderr
    assert not os.listdir(tmp_path)


def agent_command(*extra: str) -> str:
    return subprocess.list2cmdline(
        [sys.executable, "-u", "/ray/dashboard/agent.py", f"--node-id={NODE}", "--session-dir=/tmp/s 1", *extra]
    )


def test_only_a_minimal_dashboard_agent_is_stood_in():
    raylet = ["/ray/raylet", "--node_id=x", DASHBOARD_AGENT_FLAG + agent_command("--minimal", "--head")]
    raylet.append("--runtime_env_agent_command=python main.py --minimal")
    replaced = with_agent_stood_in(raylet)
    assert replaced[:2] == raylet[:2] and replaced[3] == raylet[3], "the other arguments and agent: as they were"
    assert replaced[2] == DASHBOARD_AGENT_FLAG + standin_command(agent_command("--minimal"))
    assert AGENT_STANDIN in replaced[2] and "agent.py" not in replaced[2]
    assert f"--node-id={NODE}" in replaced[2] and '"--session-dir=/tmp/s 1"' in replaced[2]
    full = ["/ray/raylet", DASHBOARD_AGENT_FLAG + agent_command("--head")]  # ray[default]: serves metrics and logs
    assert with_agent_stood_in(full) == full
