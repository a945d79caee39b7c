"""Starting or joining Ray: embedded local by default, a cluster by address.

The embedded default uses ``address="local"`` so a run never attaches by accident to another Ray instance on
the same machine, a short temp dir (Ray's socket paths fail beyond 107 bytes), no dashboard, and token
authentication off (local, single-user). With an address (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) the
same code runs on a cluster; there every node must have Refinery installed and reach the run directory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def embedded_temp_dir() -> str:
    return os.path.join(tempfile.gettempdir() if len(tempfile.gettempdir()) < 20 else "/tmp", f"rfy-{os.getuid()}")


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[dict]:
    """Yield Ray's cluster resources; start Ray if needed and shut it down only if this call started it."""
    import ray

    started_here = False
    if not ray.is_initialized():
        if address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _temp_dir=embedded_temp_dir(),
                log_to_driver=True,
                logging_level="WARNING",
                configure_logging=True,
            )
        else:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        started_here = True
    try:
        yield ray.cluster_resources()
    finally:
        if started_here:
            ray.shutdown()
