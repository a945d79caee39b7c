"""The embedded head runs without Ray's log monitor and API server, with a stand-in for its minimal dashboard
agent: what a run needs from its workers still reaches the user.

A task's exception comes back through ``ray.get``, and what workers print lands in the session's
``worker_logs`` folder when the session ends (faulthandler files: ``tests/test_executor.py``). Runs in a fresh
interpreter so that the session starts its own head (the test session's shared Ray would be reused otherwise).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from refinery.pipelines.ray_session import printed_something

SCRIPT = """
import sys
import psutil
import ray
from refinery.pipelines.ray_session import ray_session

@ray.remote
def talk():
    print("printed by a worker", flush=True)
    print("warned by a worker", file=sys.stderr, flush=True)
    return 1

@ray.remote
def fail():
    raise ValueError("a shard's own error")

@ray.remote
def variable():
    import os
    return os.environ.get("REFINERY_TEST_VARIABLE")

with ray_session(None, 1, worker_logs=sys.argv[1]):
    helpers = " ".join(" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True))
    assert "log_monitor" not in helpers and "gcs_server" in helpers, helpers
    assert "dashboard/dashboard.py" not in helpers, helpers  # no API server
    assert "ray_agent_standin.py" in helpers and "dashboard/agent.py" not in helpers, helpers
    standin = [p for p in psutil.Process().children(recursive=True) if "ray_agent_standin.py" in " ".join(p.cmdline())]
    assert ray.get(talk.remote()) == 1
    # the runtime-env agent stays: a task's runtime_env still works
    assert ray.get(variable.options(runtime_env={"env_vars": {"REFINERY_TEST_VARIABLE": "set"}}).remote()) == "set"
    try:
        ray.get(fail.remote())
    except ValueError as error:
        assert "a shard's own error" in str(error)
    else:
        raise AssertionError("the task's error did not come back")
_, alive = psutil.wait_procs(standin, timeout=10)
assert not alive, "the dashboard agent's stand-in outlived the head"
"""


def test_worker_output_and_errors_reach_the_user_without_the_log_monitor(tmp_path: Path):
    logs = tmp_path / "workers"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(logs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "printed by a worker" not in done.stdout, "no live forwarding: the log monitor is off"
    out = "".join(path.read_text() for path in logs.glob("worker-*.out"))
    err = "".join(path.read_text() for path in logs.glob("worker-*.err"))
    assert "printed by a worker" in out
    assert "warned by a worker" in err


API_SERVER_SCRIPT = """
import psutil
import ray
from refinery.pipelines.ray_session import ray_session

with ray_session(None, 1):
    helpers = " ".join(" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True))
    assert "dashboard/dashboard.py" in helpers, helpers
    assert "dashboard/agent.py" in helpers and "ray_agent_standin.py" not in helpers, helpers
    assert ray.get(ray.remote(lambda: 2).remote()) == 2
"""


def test_the_api_server_and_rays_dashboard_agent_start_only_when_asked_for():
    """``REFINERY_RAY_API_SERVER=1`` and ``REFINERY_RAY_DASHBOARD_AGENT=1`` bring back what the default start
    leaves out or stands in for (the check above)."""
    env = {**os.environ, "REFINERY_RAY_API_SERVER": "1", "REFINERY_RAY_DASHBOARD_AGENT": "1"}
    done = subprocess.run(
        [sys.executable, "-c", API_SERVER_SCRIPT], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_worker_log_with_only_rays_task_markers_is_not_copied(tmp_path: Path):
    markers = ":job_id:01000000\n:task_name:_run_item\n:task_name:_run_item\n"
    (tmp_path / "quiet.out").write_text(markers)
    (tmp_path / "talked.err").write_text(markers + "Traceback (most recent call last):\n")
    assert not printed_something(tmp_path / "quiet.out")
    assert printed_something(tmp_path / "talked.err")
