"""What Ray's minimal dashboard agent does, in a process of ~9 MB instead of ~100 MB.

Why this exists: the raylet will not start without a dashboard agent command, and without ``ray[default]``
(Refinery installs plain ``ray``) Ray starts that agent with ``--minimal``, where it loads no module ("Loaded 0
modules" in its log), starts neither its gRPC nor its HTTP server, writes ``-1`` ("not in use") into its three
port files, and then only watches the raylet so as to exit with it. That costs a whole Python process with Ray,
grpc and asyncio imported: ~100 MB of RSS, a sixth of a run's fixed cost. This script does exactly what the
minimal agent does and nothing more: it writes the same port files, then lives until the raylet that started it
is gone (the raylet's end of the agent's stdin pipe closes).

It is run by path with ``python -S -I`` (no site-packages, no environment-driven imports), so it may import only
the standard library. ``pipelines/ray_session.py`` puts it in the raylet's ``--dashboard_agent_command``; see
``docs/filters.md`` ("A run's fixed cost").

Usage (what the raylet runs): ``python -S -I ray_agent_standin.py --session-dir=DIR --node-id=HEX
--port-names=NAME,NAME``; other arguments (the raylet may add its own) are ignored.
"""

from __future__ import annotations

import os
import stat
import sys
import time

#: the port value Ray's agents write for a service they do not run
NOT_IN_USE = -1
#: seconds between two looks at the raylet when there is no stdin pipe to wait on
POLL_SECONDS = 1.0


def parse(argv: list[str]) -> tuple[str, str, list[str]]:
    """Session dir, node id and port names from the command line's ``--key=value`` options."""
    options = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
    names = [name for name in options.get("port-names", "").split(",") if name]
    if not options.get("session-dir") or not options.get("node-id") or not names:
        raise SystemExit("usage: ray_agent_standin.py --session-dir=DIR --node-id=HEX --port-names=NAME,NAME")
    return options["session-dir"], options["node-id"], names


def persist_not_in_use(session_dir: str, node_id: str, port_name: str) -> None:
    """Write ``-1`` into ``SESSION/PORT_NAME_NODEID`` the way Ray's ``persist_port`` does (whole file at once)."""
    path = os.path.join(session_dir, f"{port_name}_{node_id}")
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as handle:
        handle.write(str(NOT_IN_USE))
    os.replace(partial, path)


def stdin_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        return False


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_the_raylet_to_go(raylet_pid: int | None) -> None:
    """Return once the raylet has exited.

    The raylet hands its agents the read end of a pipe as stdin (it double-forks them, so their parent is the
    driver's subreaper, not the raylet); its death closes the write end. Without that pipe, watch
    ``RAY_RAYLET_PID`` (or, when that is not set either, the parent that started us) every ``POLL_SECONDS``.
    """
    if stdin_is_a_pipe():
        while os.read(0, 4096):
            pass
        return
    if raylet_pid is not None:
        while process_exists(raylet_pid):
            time.sleep(POLL_SECONDS)
        return
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    session_dir, node_id, port_names = parse(argv)
    raylet_pid = int(os.environ["RAY_RAYLET_PID"]) if os.environ.get("RAY_RAYLET_PID") else None
    for port_name in port_names:
        persist_not_in_use(session_dir, node_id, port_name)
    wait_for_the_raylet_to_go(raylet_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
