"""Running one dedup phase: skip it when its marker is valid, else clear its folder, map its tasks, mark it done.

Every phase of every dedup stage writes into its own folder ``work/PHASE/`` (the runner invalidates a phase by
that folder when a file in it fails validation) and records what it wrote: partitioned writes through
:mod:`refinery.pipelines.partitions` (an ``_index`` per writer with every file's rows, size and sha256) and the
tasks' small results in ``_results.json``. The marker lists only those index and result files, so marking a
phase done never reads the bulk data back; the bulk data is checked against the indexes by whoever reads it.

Test hook: with ``REFINERY_DEDUP_PAUSE_DIR`` and ``REFINERY_DEDUP_PAUSE_PHASE`` set, every task of that phase
but the first writes a flag file into the folder and sleeps, so a test can kill the run in the middle of the
phase (some of its files written, others not) and check that a resumed run ends byte-identical.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from refinery.pipelines import storage
from refinery.pipelines.partitions import INDEX_FOLDER
from refinery.pipelines.stages import GlobalContext

RESULTS = "_results.json"
PAUSE_DIR_ENV = "REFINERY_DEDUP_PAUSE_DIR"
PAUSE_PHASE_ENV = "REFINERY_DEDUP_PAUSE_PHASE"


def phase_dir(context: GlobalContext, phase: str, *parts: str) -> str:
    return "/".join([context.work_dir.rstrip("/"), phase, *parts])


class _PhaseTask:
    """One phase job as a task, named after the phase's function (its workers show as ``ray::key_group``...)."""

    def __init__(self, function: Callable[[dict[str, Any]], Any]) -> None:
        self.function = function
        self.__name__ = getattr(function, "__name__", "phase_task")

    def __call__(self, item: tuple[str, int, dict[str, Any]]) -> Any:
        phase, index, job = item
        folder = os.environ.get(PAUSE_DIR_ENV)
        if folder and index > 0 and os.environ.get(PAUSE_PHASE_ENV) == phase:
            open(os.path.join(folder, f"{phase}-{index}"), "w").close()
            time.sleep(600)
        return self.function(job)


def run_phase(
    context: GlobalContext,
    phase: str,
    function: Callable[[dict[str, Any]], Any],
    jobs: list[dict[str, Any]],
    partitioned: list[str] = (),  # type: ignore[assignment]
) -> list[Any]:
    """Run ``function`` over ``jobs`` as phase ``phase`` unless its marker is valid; return the tasks' results.

    ``partitioned`` names the subfolders of ``work/PHASE/`` that hold :func:`write_partitioned` output; their
    indexes are recorded in the marker.
    """
    fs, root = storage.filesystem(phase_dir(context, phase))
    results_path = storage.join(root, RESULTS)
    if context.phase_done(phase):
        return storage.read_json(fs, results_path)["results"]
    if fs.exists(root):
        fs.rm(root, recursive=True)  # files of an earlier, different computation must not mix with these
    fs.makedirs(root, exist_ok=True)
    results = context.map(_PhaseTask(function), [(phase, i, job) for i, job in enumerate(jobs)])
    storage.write_json_atomic(fs, results_path, {"phase": phase, "results": results})
    outputs = [f"{phase}/{RESULTS}"] + [f"{phase}/{sub}/{INDEX_FOLDER}" for sub in partitioned if jobs]
    context.mark_phase_done(phase, outputs=[o for o in outputs if fs.exists(storage.join(context_root(context), o))])
    return results


def context_root(context: GlobalContext) -> str:
    return storage.filesystem(context.work_dir)[1]


def writer_name(index: int) -> str:
    """The writer name of task ``index`` in a partitioned write (sorted order = task order)."""
    return f"w{index:06d}"


def writers(count: int) -> list[str]:
    return [writer_name(i) for i in range(count)]
