"""Starting or joining Ray: embedded local by default, a cluster by address.

The embedded default starts its own head node (it never attaches by accident to another Ray instance on the
same machine) with only what a run needs, the way ``ray start --head --no-monitor --include-dashboard=false``
would: no autoscaler monitor (nothing to scale on one machine), no dashboard, no metrics collection or usage
stats, a short temp dir (Ray's socket paths fail beyond 107 bytes), and token authentication off (local,
single-user). No log monitor either (``--include-log-monitor=false``, ~85 MB): nothing a run needs travels
through it. A task's exception comes back through ``ray.get``; native crashes are written by each worker's
faulthandler to ``RUN/logs/faults/``; what workers print stays in their Ray log files, and ``ray_session``
copies those where a worker printed something to ``worker_logs`` (``RUN/logs/workers/`` for a run) when the
session ends. Set
``REFINERY_RAY_LOG_MONITOR=1`` to have workers' output forwarded to the console live instead. Ray's API
server (the dashboard's head process) is left out too (``REFINERY_RAY_API_SERVER=1`` starts it): a run uses
none of what it serves. Of the two agents the raylet insists on starting, the runtime-env agent stays, and the
dashboard agent, which without ``ray[default]`` is started ``--minimal`` and then runs nothing, is replaced by
``ray_agent_standin.py``, which does what that minimal agent does in ~9 MB instead of ~100
(``REFINERY_RAY_DASHBOARD_AGENT=1`` starts Ray's own); see ``docs/filters.md`` ("A run's fixed cost") for what
the start costs. With an address (``auto``, ``HOST:PORT``,
``ray://HOST:PORT``) the same code runs on a cluster; there every node must have Refinery installed and reach the
run directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def embedded_temp_dir() -> str:
    return os.path.join(tempfile.gettempdir() if len(tempfile.gettempdir()) < 20 else "/tmp", f"rfy-{os.getuid()}")


#: Ray system settings of the embedded head: metrics are neither collected nor exported (nothing reads them).
EMBEDDED_SYSTEM_CONFIG = {"enable_metrics_collection": False}


def log_monitor_wanted() -> bool:
    """Whether workers' output is forwarded to the console live (``REFINERY_RAY_LOG_MONITOR=1``; off by default)."""
    return os.environ.get("REFINERY_RAY_LOG_MONITOR", "0") == "1"


def start_embedded_head(num_cpus: int | None, log_monitor: bool | None = None):  # -> ray._private.node.Node
    """Start a local head node with the processes a run needs and none of the optional ones."""
    from ray._private.node import Node
    from ray._private.parameter import RayParams

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    params = RayParams(
        num_cpus=num_cpus,
        include_dashboard=False,
        temp_dir=embedded_temp_dir(),
        no_monitor=True,
        include_log_monitor=log_monitor_wanted() if log_monitor is None else log_monitor,
        _system_config=EMBEDDED_SYSTEM_CONFIG,
    )
    head_class = embedded_head_class(Node, api_server=api_server_wanted(), dashboard_agent=dashboard_agent_wanted())
    return head_class(params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True)


def api_server_wanted() -> bool:
    """Whether the embedded head starts Ray's API server (``REFINERY_RAY_API_SERVER=1``; off by default)."""
    return os.environ.get("REFINERY_RAY_API_SERVER", "0") == "1"


def dashboard_agent_wanted() -> bool:
    """Whether the raylet starts Ray's own dashboard agent (``REFINERY_RAY_DASHBOARD_AGENT=1``) instead of
    ``ray_agent_standin.py`` where Ray would start it ``--minimal``."""
    return os.environ.get("REFINERY_RAY_DASHBOARD_AGENT", "0") == "1"


def embedded_head_class(node_class: type, *, api_server: bool, dashboard_agent: bool) -> type:
    """Ray's head ``Node``, less the API server unless ``api_server``, and with the stand-in for a minimal
    dashboard agent unless ``dashboard_agent``.

    Why no API server: ``Node.start_head_processes`` starts it (the dashboard's head process) whatever
    ``include_dashboard`` says, and the head start then waits for it to publish its address: ~105 MB and 1-4 s of
    every run's fixed cost. A run uses none of what it serves (the dashboard, the job-submission and state APIs);
    tasks, objects and the cluster's resources go through the GCS and the raylet. ``REFINERY_RAY_API_SERVER=1``
    brings it back, e.g. for ``ray list tasks`` against a long embedded run.

    Why the stand-in: see ``ray_agent_standin.py``; a ~100 MB process that runs nothing.
    """

    class EmbeddedHead(node_class):
        if not api_server:

            def start_api_server(self, *, include_dashboard: bool | None, raise_on_failure: bool) -> None:
                self._webui_url = None  # what a head without a dashboard records; the raylet is told no URL

        if not dashboard_agent:

            def start_raylet(self, *args, **kwargs):
                with minimal_dashboard_agent_stood_in():
                    return super().start_raylet(*args, **kwargs)

    return EmbeddedHead


#: the stand-in for Ray's minimal dashboard agent (stdlib only: run by path with ``python -S -I``)
AGENT_STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_agent_standin.py")
DASHBOARD_AGENT_FLAG = "--dashboard_agent_command="


def standin_command(agent_command: str) -> str | None:
    """The stand-in's command for Ray's dashboard agent command, or None where the agent is not ``--minimal``
    (with ``ray[default]`` installed it serves metrics and logs, and stays)."""
    from ray._raylet import DASHBOARD_AGENT_LISTEN_PORT_NAME, METRICS_AGENT_PORT_NAME, METRICS_EXPORT_PORT_NAME

    arguments = shlex.split(agent_command)
    if "--minimal" not in arguments:
        return None
    where = [arg for arg in arguments if arg.startswith(("--session-dir=", "--node-id="))]
    ports = ",".join((METRICS_AGENT_PORT_NAME, METRICS_EXPORT_PORT_NAME, DASHBOARD_AGENT_LISTEN_PORT_NAME))
    return subprocess.list2cmdline([sys.executable, "-S", "-I", AGENT_STANDIN, *where, f"--port-names={ports}"])


def with_agent_stood_in(raylet_command: list[str]) -> list[str]:
    """The raylet's command line with a minimal dashboard agent's command replaced by the stand-in's."""
    replaced = []
    for argument in raylet_command:
        if argument.startswith(DASHBOARD_AGENT_FLAG):
            standin = standin_command(argument[len(DASHBOARD_AGENT_FLAG) :])
            argument = argument if standin is None else DASHBOARD_AGENT_FLAG + standin
        replaced.append(argument)
    return replaced


@contextmanager
def minimal_dashboard_agent_stood_in() -> Iterator[None]:
    """While the head starts its raylet, hand the raylet the stand-in's command for a minimal dashboard agent.

    Ray builds the raylet's command line (agent commands included) inside ``services.start_raylet`` and gives it
    to ``services.start_ray_process``; this wraps that one call, for this one start, in this process.
    """
    from ray._private import services

    start_ray_process = services.start_ray_process

    def start_with_standin(command: list[str], *args, **kwargs):
        if command and command[0] == services.RAYLET_EXECUTABLE:
            command = with_agent_stood_in(command)
        return start_ray_process(command, *args, **kwargs)

    services.start_ray_process = start_with_standin
    try:
        yield
    finally:
        services.start_ray_process = start_ray_process


#: lines Ray writes into every worker log itself (which job and task the lines after them belong to)
RAY_LOG_MARKERS = (":job_id:", ":task_name:", ":actor_name:", ":task_attempt_start:", ":task_attempt_end:")


def printed_something(path: Path) -> bool:
    """Whether a worker's log holds any line besides Ray's own job/task markers."""
    with open(path, errors="replace") as lines:
        return any(line.strip() and not line.startswith(RAY_LOG_MARKERS) for line in lines)


def copy_worker_logs(head, destination: str) -> list[Path]:  # head: ray._private.node.Node
    """Copy the head's worker stdout/stderr files (``worker-*.out``/``.err``) where a worker printed something
    into ``destination``."""
    found = [
        path
        for pattern in ("worker-*.out", "worker-*.err")
        for path in sorted(Path(head.get_logs_dir_path()).glob(pattern))
        if path.stat().st_size > 0 and printed_something(path)
    ]
    if found:
        os.makedirs(destination, exist_ok=True)
    return [Path(shutil.copy(path, destination)) for path in found]


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, worker_logs: str | None = None) -> Iterator[dict]:
    """Yield Ray's cluster resources; start Ray if needed and shut it down only if this call started it.

    ``worker_logs``: a local folder that receives what the embedded head's workers printed, when it ends.
    """
    import ray

    started_here = False
    head = None
    if not ray.is_initialized():
        if address is None:
            head = start_embedded_head(num_cpus)
            try:
                ray.init(
                    address=head.address,
                    log_to_driver=log_monitor_wanted(),
                    logging_level="WARNING",
                    configure_logging=True,
                )
            except BaseException:
                head.kill_all_processes(check_alive=False, allow_graceful=False)
                raise
        else:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        started_here = True
    try:
        yield ray.cluster_resources()
    finally:
        if started_here:
            ray.shutdown()
        if head is not None:
            head.kill_all_processes(check_alive=False, allow_graceful=True)
            if worker_logs is not None and "://" not in worker_logs:
                copy_worker_logs(head, worker_logs)
