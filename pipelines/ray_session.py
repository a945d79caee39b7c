"""Starting or joining Ray: embedded local by default, a cluster by address.

The embedded default starts its own head node (it never attaches by accident to another Ray instance on the
same machine) with only what a run needs, the way ``ray start --head --no-monitor --include-dashboard=false``
would: no autoscaler monitor (nothing to scale on one machine), no dashboard, no metrics collection or usage
stats, a short temp dir (Ray's socket paths fail beyond 107 bytes), and token authentication off (local,
single-user). The log monitor stays: it forwards the workers' output to the console. Ray's own helpers that
the raylet always starts (dashboard agent, runtime-env agent) remain; see ``docs/filters.md``
(Performance) for what that start costs. With an address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) the
same code runs on a cluster; there every node must have Refinery installed and reach the run directory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def embedded_temp_dir() -> str:
    return os.path.join(tempfile.gettempdir() if len(tempfile.gettempdir()) < 20 else "/tmp", f"rfy-{os.getuid()}")


#: Ray system settings of the embedded head: metrics are neither collected nor exported (nothing reads them).
EMBEDDED_SYSTEM_CONFIG = {"enable_metrics_collection": False}


def start_embedded_head(num_cpus: int | None):  # -> ray._private.node.Node
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
        include_log_monitor=True,
        _system_config=EMBEDDED_SYSTEM_CONFIG,
    )
    return Node(params, head=True, shutdown_at_exit=False, spawn_reaper=True, ray_init_cluster=True)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[dict]:
    """Yield Ray's cluster resources; start Ray if needed and shut it down only if this call started it."""
    import ray

    started_here = False
    head = None
    if not ray.is_initialized():
        if address is None:
            head = start_embedded_head(num_cpus)
            try:
                ray.init(address=head.address, log_to_driver=True, logging_level="WARNING", configure_logging=True)
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
