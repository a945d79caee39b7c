"""The one way Refinery runs work in parallel: a bounded in-flight map of a plain function over Ray tasks.

Every distributed loop (the runner's shard segments, a global stage's phases, the shards writer, the mix
proxies, embedding on a cluster) calls :func:`map_tasks`, so they share one set of rules:

- **Results in item order**, whatever finished first (outputs never depend on scheduling).
- **Bounded in flight**: at most ``in_flight`` tasks are submitted at once (default: twice the session's CPUs),
  so the driver's memory and the object store stay bounded whatever the number of items.
- **Typed resources** (:class:`Resources`): every task asks Ray for its CPUs, GPUs and memory.
- **Retries**: ``retries`` is how many times Ray re-runs a task whose *worker died* (a crash, an OOM kill, a lost
  node). An exception the function raises is its answer, not a transient fault, and is not retried. Runs use
  the recipe's ``ray.task_retries``; everything else uses :data:`DEFAULT_RETRIES`.
- **Failures**: by default the first failed task cancels the pending ones and its exception is raised (Ray's
  error, which is also an instance of the task's exception class). An :class:`IntermediateError` is re-raised
  as itself, so a global stage can invalidate the phase that wrote the corrupted file. With
  ``keep_going=True`` every item runs and a :class:`TaskOutcome` per item says what happened (the runner
  reports a shard that failed after its retries and finishes the others).
- **Ctrl-C** cancels every pending task before the ``KeyboardInterrupt`` propagates.
- **Accounting**: each task is named after its function (``ray::process_shard`` in ``ps`` and the dashboard,
  so memory can be attributed per task kind), and the CPU seconds every task spent in its worker (Arrow's
  threads included) add up in :func:`task_cpu_seconds`: a phase's CPU cost that machine load does not inflate.
- **Native crashes**: each worker enables :mod:`faulthandler` before running a task, writing to
  ``fault_dir/worker-PID.log`` when a ``fault_dir`` is given, so an abort in native code (Arrow, torch) leaves a
  full Python traceback behind.

Only ``refinery.pipelines`` imports Ray: the functions mapped here are plain top-level functions that the
families test without it.
"""

from __future__ import annotations

import faulthandler
import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from refinery.pipelines.partitions import IntermediateError
from refinery.pipelines.progress import Progress

Item = TypeVar("Item")
Value = TypeVar("Value")

#: How many times a task whose worker died is re-run, outside a run (a run uses its recipe's ``task_retries``).
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class Resources:
    """What one task holds while it runs: CPUs, GPUs (fractions allowed) and memory (bytes; None: no claim)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0 or (self.memory_bytes is not None and self.memory_bytes <= 0):
            raise ValueError(f"resources must be non-negative (memory positive): {self}")

    def combine(self, other: Resources) -> Resources:
        """What a task running both needs (a fused segment): the larger of each."""
        memory = [m for m in (self.memory_bytes, other.memory_bytes) if m is not None]
        return Resources(max(self.cpus, other.cpus), max(self.gpus, other.gpus), max(memory) if memory else None)

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        if self.memory_bytes is not None:
            options["memory"] = self.memory_bytes
        return options


@dataclass
class TaskOutcome(Generic[Item, Value]):
    """One item's result under ``keep_going=True``: its value, or the error it failed with after its retries."""

    item: Item
    value: Value | None = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def session_resources() -> dict[str, float]:
    """The resources of the Ray session this driver is connected to ({} when none is)."""
    import ray

    return dict(ray.cluster_resources()) if ray.is_initialized() else {}


def session_has_gpu() -> bool:
    """Whether the Ray session (started or joined) reports a GPU: what ``device: auto`` resolves from."""
    return session_resources().get("GPU", 0) >= 1


def task_cpus() -> float | None:
    """The CPUs the Ray task this code runs in holds (what a library should size its thread pool to), or None
    outside a task."""
    import sys

    if "ray" not in sys.modules:
        return None
    import ray

    if not ray.is_initialized() or ray.get_runtime_context().get_task_id() is None:
        return None
    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))


def _enable_faulthandler(fault_dir: str | None) -> None:
    """Once per worker process: dump every thread's Python traceback on a native crash (SIGSEGV, SIGABRT)."""
    if getattr(_enable_faulthandler, "target", None) == fault_dir:
        return
    if fault_dir is not None and "://" not in fault_dir:
        os.makedirs(fault_dir, exist_ok=True)
        # kept open for the life of the worker: faulthandler writes to the descriptor when the process dies
        stream = open(os.path.join(fault_dir, f"worker-{os.getpid()}.log"), "a")  # noqa: SIM115
        faulthandler.enable(file=stream, all_threads=True)
    else:
        faulthandler.enable(all_threads=True)
    _enable_faulthandler.target = fault_dir  # type: ignore[attr-defined]


_CPU_LOCK = threading.Lock()
_CPU_SECONDS = [0.0]


def task_cpu_seconds() -> float:
    """CPU seconds spent by every task :func:`map_tasks` has run from this process so far (monotonic).

    Why: wall seconds of a phase stretch with whatever else the machine runs; the difference of this counter
    around a phase is its CPU cost, comparable between runs on a shared machine.
    """
    with _CPU_LOCK:
        return _CPU_SECONDS[0]


def _add_cpu_seconds(seconds: float) -> None:
    with _CPU_LOCK:
        _CPU_SECONDS[0] += seconds


def task_name(function: Callable[..., Any]) -> str:
    """The name a task runs under (Ray makes it the worker's process title ``ray::NAME``)."""
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__name__", type(function).__name__)


def _run_item(function: Callable[[Any], Any], fault_dir: str | None, item: Any) -> tuple[float, Any]:
    """Run one item; return (CPU seconds this worker spent on it, the function's value)."""
    _enable_faulthandler(fault_dir)
    cpu_started = time.process_time()
    value = function(item)
    return time.process_time() - cpu_started, value


def _raise_as_itself(error: BaseException) -> None:
    """Raise a task's error: an IntermediateError as itself (the phase logic catches it), others as Ray gave them."""
    cause = error.as_instanceof_cause() if hasattr(error, "as_instanceof_cause") else error
    if isinstance(cause, IntermediateError):
        raise IntermediateError(cause.path, cause.problem) from None
    raise error


def map_tasks(
    function: Callable[[Item], Value],
    items: Sequence[Item],
    *,
    resources: Resources = Resources(),
    retries: int = DEFAULT_RETRIES,
    in_flight: int | None = None,
    description: str | None = None,
    keep_going: bool = False,
    show_progress: bool = True,
    already_done: int = 0,
    documents: Callable[[Value], int] | None = None,
    fault_dir: str | None = None,
) -> list[Any]:
    """``function(item)`` for every item, each a Ray task; results (or outcomes) in item order.

    ``description`` labels the progress line (none without it); ``already_done`` items are shown as resumed and
    ``documents(value)`` counts documents per finished task for the docs/s figure. Without a Ray session, an
    embedded one is started for the call (callers that map many times start one around them instead).
    """
    import ray

    from refinery.pipelines.ray_session import ray_session

    items = list(items)
    if not items:
        return []
    session = nullcontext() if ray.is_initialized() else ray_session(None, None)
    with session:
        in_flight = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(max_retries=retries, retry_exceptions=False, **resources.ray_options())(_run_item)
        task = task.options(name=task_name(function))
        function_ref = ray.put(function)
        progress = Progress(
            description or "",
            len(items) + already_done,
            bool(description) and show_progress,
            unit="shards" if documents else "tasks",
            counts=documents is not None,
        )
        progress.skip(already_done)
        values: dict[int, Any] = {}
        errors: dict[int, BaseException] = {}
        pending: dict[Any, int] = {}
        position = 0
        try:
            while position < len(items) or pending:
                while position < len(items) and len(pending) < in_flight:
                    pending[task.remote(function_ref, fault_dir, items[position])] = position
                    position += 1
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    index = pending.pop(ref)
                    try:
                        cpu_seconds, values[index] = ray.get(ref)
                        _add_cpu_seconds(cpu_seconds)
                    except Exception as error:  # the task failed after its retries
                        if not keep_going:
                            _raise_as_itself(error)
                        errors[index] = error
                        progress.advance(0)
                        continue
                    progress.advance(documents(values[index]) if documents else 0)
        except BaseException:  # the first failure, or Ctrl-C: nothing keeps running behind the caller's back
            for ref in pending:
                ray.cancel(ref)
            raise
        finally:
            progress.close()
    if keep_going:
        return [TaskOutcome(items[i], values.get(i), errors.get(i)) for i in range(len(items))]
    return [values[i] for i in range(len(items))]
