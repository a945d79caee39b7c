"""The spine's executor on a small local Ray: order, retries, IntermediateError, keep_going, resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from refinery.pipelines.executor import Resources, TaskOutcome, map_tasks
from refinery.pipelines.partitions import IntermediateError

# the workers cannot import this test module: ship its functions by value
pytest.importorskip("ray").cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slow_square(value: int) -> int:
    import time

    time.sleep(0.05 * (5 - value % 5))  # later items finish first
    return value * value


def die_once(marker: str) -> int:
    """Kill the worker process the first time (a crash Ray retries); answer on the retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(1)
    return os.getpid()


def fail_on_odd(value: int) -> int:
    if value % 2:
        raise ValueError(f"odd item {value}")
    return value


def corrupt_on_three(value: int) -> int:
    if value == 3:
        raise IntermediateError("/run/work/phase/part-3.parquet", "wrong checksum")
    return value


def granted_cpus(_: int) -> float:
    import ray

    return ray.get_runtime_context().get_assigned_resources().get("CPU", 0)


def test_results_come_back_in_item_order(ray_local) -> None:
    assert map_tasks(slow_square, list(range(10)), in_flight=3) == [v * v for v in range(10)]
    assert map_tasks(slow_square, []) == []


def test_a_dead_worker_is_retried(ray_local, tmp_path: Path) -> None:
    markers = [str(tmp_path / f"m{i}") for i in range(2)]
    assert len(map_tasks(die_once, markers, retries=1)) == 2
    assert all(Path(m).read_text() == "died" for m in markers)


def test_a_dead_worker_without_retries_fails(ray_local, tmp_path: Path) -> None:
    outcomes = map_tasks(die_once, [str(tmp_path / "m")], retries=0, keep_going=True)
    assert not outcomes[0].ok and outcomes[0].value is None


def test_first_failure_raises_the_task_error(ray_local) -> None:
    with pytest.raises(ValueError, match="odd item 1"):
        map_tasks(fail_on_odd, [0, 1, 2], in_flight=1)


def test_intermediate_error_is_raised_as_itself(ray_local) -> None:
    with pytest.raises(IntermediateError) as raised:
        map_tasks(corrupt_on_three, list(range(8)), in_flight=2)
    assert type(raised.value) is IntermediateError
    assert raised.value.path == "/run/work/phase/part-3.parquet" and raised.value.problem == "wrong checksum"


def test_keep_going_reports_each_item(ray_local) -> None:
    outcomes = map_tasks(fail_on_odd, list(range(5)), keep_going=True, in_flight=2)
    assert [type(o) for o in outcomes] == [TaskOutcome] * 5
    assert [o.item for o in outcomes] == list(range(5))
    assert [o.value for o in outcomes if o.ok] == [0, 2, 4]
    assert [("odd item" in str(o.error)) for o in outcomes] == [False, True, False, True, False]


def test_resources_are_what_the_task_holds(ray_local) -> None:
    assert map_tasks(granted_cpus, [0], resources=Resources(cpus=2)) == [2.0]
    assert map_tasks(granted_cpus, [0], resources=Resources(cpus=0.5)) == [0.5]
    with pytest.raises(ValueError):
        Resources(cpus=-1)
    assert Resources(1, 0, None).combine(Resources(0.5, 1, 2**30)) == Resources(1, 1, 2**30)


def test_workers_leave_a_fault_log(ray_local, tmp_path: Path) -> None:
    map_tasks(slow_square, [1, 2], fault_dir=str(tmp_path / "faults"))
    assert list((tmp_path / "faults").glob("worker-*.log"))


def mark_then_sleep(marker: str) -> str:
    import time

    Path(marker).write_text("started")
    time.sleep(3)
    return marker


def test_ctrl_c_cancels_pending_tasks(ray_local, tmp_path: Path) -> None:
    import _thread
    import signal
    import threading
    import time

    markers = [str(tmp_path / f"m{i}") for i in range(8)]

    def interrupt_once_two_run() -> None:
        """Ctrl-C while the map waits on its two tasks in flight (a fixed delay raced the first tasks' start on a
        loaded machine)."""
        deadline = time.time() + 60
        while len(list(tmp_path.glob("m*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        _thread.interrupt_main()

    # interrupt_main does nothing while SIGINT is ignored or at its C default, which a library in the same
    # test process may leave behind: Python's own handler for the test's length, as a driver run from a shell has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_once_two_run, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            map_tasks(mark_then_sleep, markers, in_flight=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    time.sleep(4)  # anything still queued would have started by now
    assert len(list(tmp_path.glob("m*"))) <= 2, "only the tasks in flight ever started"


def busy_title(seconds: float) -> str:
    """Spin for ``seconds`` of CPU, then report this worker's process title."""
    import time

    import psutil

    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass
    return " ".join(psutil.Process().cmdline())


def test_tasks_are_named_and_their_cpu_is_counted(ray_local) -> None:
    from refinery.pipelines.executor import task_cpu_seconds

    before = task_cpu_seconds()
    titles = map_tasks(busy_title, [0.2, 0.2])
    spent = task_cpu_seconds() - before
    assert all("busy_title" in title for title in titles), titles  # ps shows which kind of task holds the memory
    assert spent >= 0.35, spent  # both tasks' CPU, counted by the driver
