"""The driver: plan shards and segments, run them as Ray tasks, skip what is done, check the books.

Per segment, one Ray task per shard (``num_cpus=1``), at most ``max_in_flight`` submitted at once so the
driver's memory and the object store stay bounded whatever the corpus size. A shard whose completion marker
exists with the segment's fingerprint is skipped: a killed run, started again, redoes only unfinished shards.
A task whose worker dies is retried by Ray (``task_retries``); a shard that still fails is reported and the run
exits non-zero after finishing every other shard, so one bad machine never costs the whole run.
"""

from __future__ import annotations

import faulthandler
import os
import time
from dataclasses import dataclass, field
from typing import Any

from refinery import pipelines
from refinery.pipelines import storage
from refinery.pipelines.accounting import AccountingError, check_run
from refinery.pipelines.executor import Resources, map_tasks
from refinery.pipelines.global_runner import RayGlobalContext, decision_segment
from refinery.pipelines.plan import Segment, plan_segments
from refinery.pipelines.ray_session import ray_session
from refinery.pipelines.recipe import InputSpec, Recipe
from refinery.pipelines.report import tail_at_line, write_report
from refinery.pipelines.shard_task import ShardJob, process_shard
from refinery.pipelines.shards import Shard, discover_shards
from refinery.pipelines.stages import ShardInfo
from refinery.pipelines.summary import summarise
from refinery.pipelines.unique_ids import check_unique_ids


class RunDirectoryConflict(RuntimeError):
    """The output directory holds a run of a different recipe; resuming into it would mix two corpora."""


@dataclass
class RunResult:
    run_dir: str
    summary: dict[str, Any]
    failures: list[dict[str, str]] = field(default_factory=list)
    #: Set when a global stage was not started because shards of an earlier segment failed.
    blocked: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and not self.blocked and self.summary.get("accounting", {}).get("ok", False)


def _claim_run_directory(fs: Any, root: str, recipe: Recipe, fresh: bool = False) -> None:
    """Write recipe.json, or check that the directory's run is of this recipe (resume).

    ``fresh`` removes a previous Refinery run found there first (only a folder holding a ``recipe.json``).
    """
    path = storage.join(root, "recipe.json")
    fingerprint = recipe.fingerprint()
    if fresh and fs.exists(path):
        fs.rm(root, recursive=True)
    if fs.exists(path):
        existing = storage.read_json(fs, path)
        if existing.get("fingerprint") != fingerprint:
            raise RunDirectoryConflict(
                f"{recipe.output_dir} holds a run of another recipe (fingerprint {existing.get('fingerprint')}, "
                f"this recipe {fingerprint}). To start afresh there, add --fresh (it deletes that run); "
                "to keep it, give another --output"
            )
    fs.makedirs(root, exist_ok=True)
    storage.write_json_atomic(
        fs, path, {"fingerprint": fingerprint, "refinery_version": pipelines.__version__, "recipe": recipe.to_data()}
    )


def _remove_temporaries(fs: Any, root: str, segment: Segment) -> None:
    """Delete half-written files a killed run left behind (their final names were never created)."""
    for leftover in fs.glob(storage.join(root, segment.directory, "*", f"{storage.TEMPORARY_PREFIX}*")):
        fs.rm(leftover)


def _is_done(fs: Any, root: str, segment: Segment, shard: Shard) -> bool:
    marker = storage.join(root, segment.path("done", shard.name))
    if not fs.exists(marker):
        return False
    try:
        return storage.read_json(fs, marker).get("fingerprint") == segment.fingerprint
    except ValueError:
        return False


def _enable_driver_faulthandler(run_dir: str) -> None:
    """A native abort in the driver (Arrow, Ray's core worker) leaves every thread's traceback on stderr and,
    for a local run directory, in ``RUN/logs/faults/driver.log``."""
    folder = fault_directory(run_dir)
    if folder is None:
        faulthandler.enable(all_threads=True)
        return
    os.makedirs(folder, exist_ok=True)
    # kept open while the process lives: faulthandler writes to the descriptor when the process dies
    faulthandler.enable(file=open(os.path.join(folder, "driver.log"), "a"), all_threads=True)  # noqa: SIM115


def run_recipe(
    recipe: Recipe,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    max_in_flight: int | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> RunResult:
    """Run a validated recipe to completion (or resume it) and return its summary."""
    started = time.time()
    fs, root = storage.filesystem(recipe.output_dir)
    # Everything that can fail deterministically is checked before the directory is claimed, so a failed
    # start (a missing input, say) never leaves a recipe.json behind that would refuse the corrected rerun.
    shards: list[tuple[Shard, InputSpec]] = [(s, spec) for spec in recipe.inputs for s in discover_shards(spec)]
    positions = {name: index for index, name in enumerate(sorted(s.name for s, _ in shards))}
    _claim_run_directory(fs, root, recipe, fresh)
    _enable_driver_faulthandler(recipe.output_dir)
    segments = plan_segments(recipe.stages, recipe.fingerprint())
    address = address or recipe.ray.address
    num_cpus = num_cpus or recipe.ray.num_cpus
    stats_by_segment: list[dict[str, dict[str, Any]]] = []
    markers: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, str]] = []
    counts = {"shards": len(shards), "processed": 0, "resumed": 0}
    planned = list(segments)
    blocked: dict[str, Any] | None = None
    phase_seconds: dict[int, dict[str, float]] = {}
    phase_cpu_seconds: dict[int, dict[str, float]] = {}
    local_run = "://" not in recipe.output_dir
    worker_logs = os.path.join(recipe.output_dir, "logs", "workers") if local_run else None
    with ray_session(address, num_cpus, worker_logs=worker_logs) as resources:
        cpus = int(resources.get("CPU", 1))
        in_flight = max_in_flight or recipe.ray.max_in_flight or 2 * cpus
        for segment in segments:
            failed = {f["shard"] for f in failures}
            live = [(s, spec) for s, spec in shards if s.name not in failed]
            if segment.kind == "global":
                if failures:
                    # A global stage decides from the whole corpus: never from part of it.
                    blocked = {
                        "segment": segment.index,
                        "stage": segment.stages[0].stage_name,
                        "unfinished_shards": sorted(failed),
                    }
                    break
                previous = segment.index - 1
                context = RayGlobalContext(
                    segment,
                    [s.name for s, _ in live],
                    recipe.output_dir,
                    recipe.seed,
                    recipe.batch_size,
                    in_flight,
                    recipe.ray.task_retries,
                    {s.name: markers[f"{previous}/{s.name}"].get("kept_sha256") or "" for s, _ in live},
                )
                segment = decision_segment(segment, context)
                phase_seconds[segment.index] = context.phase_seconds()
                phase_cpu_seconds[segment.index] = context.phase_seconds("cpu_seconds")
            previous_kept = {
                s.name: markers[f"{segment.index - 1}/{s.name}"].get("kept_sha256")
                for s, _ in live
                if f"{segment.index - 1}/{s.name}" in markers
            }
            results = _run_map_segment(
                recipe, segment, live, fs, root, in_flight, show_progress, failures, counts, positions, previous_kept
            )
            planned[segment.index] = segment
            if segment.index == 0 and not failures:
                _check_unique_ids(recipe, segment, live, results, in_flight)
            stats_by_segment.append({name: r["stats"] for name, r in results.items()})
            markers.update({f"{segment.index}/{name}": r["marker"] for name, r in results.items()})
    accounting = {"ok": True, "error": None}
    try:
        check_run(stats_by_segment)
    except AccountingError as error:
        accounting = {"ok": False, "error": str(error)}
    summary = summarise(recipe, planned, stats_by_segment, markers, failures, counts, accounting, started)
    summary["blocked"] = blocked
    for segment_summary in summary["segments"]:
        if segment_summary["index"] in phase_seconds:
            segment_summary["phase_seconds"] = phase_seconds[segment_summary["index"]]
            segment_summary["phase_cpu_seconds"] = phase_cpu_seconds[segment_summary["index"]]
    storage.write_json_atomic(fs, storage.join(root, "run.json"), summary)
    write_report(recipe.output_dir)
    result = RunResult(run_dir=recipe.output_dir, summary=summary, failures=failures, blocked=blocked)
    if not accounting["ok"]:
        raise AccountingError(accounting["error"])
    return result


def _run_map_segment(
    recipe: Recipe,
    segment: Segment,
    shards: list[tuple[Shard, InputSpec]],
    fs: Any,
    root: str,
    in_flight: int,
    show_progress: bool,
    failures: list[dict[str, str]],
    counts: dict[str, int],
    positions: dict[str, int],
    input_sha256: dict[str, str],
) -> dict[str, dict[str, Any]]:
    _remove_temporaries(fs, root, segment)
    results: dict[str, dict[str, Any]] = {}
    todo: list[ShardJob] = []
    for shard, spec in shards:
        if _is_done(fs, root, segment, shard):
            results[shard.name] = {
                "stats": storage.read_json(fs, storage.join(root, segment.path("stats", shard.name))),
                "marker": storage.read_json(fs, storage.join(root, segment.path("done", shard.name))),
            }
        else:
            info = ShardInfo(shard.name, shard.source, positions[shard.name], input_sha256.get(shard.name))
            todo.append(ShardJob(shard, spec, segment, recipe.output_dir, recipe.batch_size, info))
    counts["resumed"] += len(results)
    counts["processed"] += len(todo)
    resources = Resources(cpus=1)
    for stage in segment.stages:
        resources = resources.combine(stage.resources())
    outcomes = map_tasks(
        process_shard,
        todo,
        resources=resources,
        retries=recipe.ray.task_retries,
        in_flight=in_flight,
        description=f"segment {segment.index} ({'+'.join(segment.stage_names)})",
        keep_going=True,
        show_progress=show_progress,
        already_done=len(results),
        documents=lambda outcome: outcome["stats"]["stages"][0]["in"] if outcome["stats"]["stages"] else 0,
        fault_dir=fault_directory(recipe.output_dir),
    )
    for outcome in outcomes:
        job = outcome.item
        if outcome.ok:
            results[job.shard.name] = outcome.value
        else:  # a shard that failed after its retries: report it; the others finished
            failures.append(
                {"shard": job.shard.name, "file": job.shard.path, "error": tail_at_line(f"{outcome.error}", 4000)}
            )
    _remove_temporaries(fs, root, segment)  # left by attempts whose worker died and was retried
    return {name: results[name] for name in sorted(results)}


def _check_unique_ids(
    recipe: Recipe,
    segment: Segment,
    shards: list[tuple[Shard, InputSpec]],
    results: dict[str, dict[str, Any]],
    in_flight: int,
) -> None:
    """Ids taken from an input's ``id_field`` must not repeat (see :mod:`refinery.pipelines.unique_ids`)."""
    run_dir = recipe.output_dir.rstrip("/")
    checked = [
        {
            "name": shard.name,
            "file": shard.path,
            "files": [f"{run_dir}/{segment.path(kind, shard.name)}" for kind in ("kept", "rejected")],
        }
        for shard, spec in shards
        if spec.id_field is not None
    ]
    kept = {name: result["marker"].get("kept_sha256") or "" for name, result in results.items()}
    check_unique_ids(run_dir, checked, kept, recipe.ray.task_retries, in_flight)


def fault_directory(run_dir: str) -> str | None:
    """Where workers' faulthandler tracebacks go (``RUN/logs/faults/``); None for a remote run directory."""
    return None if "://" in run_dir else os.path.join(run_dir, "logs", "faults")
