"""Where a run's time went, reconciled: task seconds against wall time per segment, global phases included,
and CPU use per node over time, from what the workers record in their completion markers.

* A shard task's marker holds its stage seconds, its wall seconds, when it started (``started_at``, epoch
  seconds) and the CPU seconds its worker process used (``cpu_seconds``; Arrow's threads included).
* A global stage's phases are timed by the driver (``run.json``: ``segments[].phase_seconds``, wall seconds).
* A segment's wall time is the span from its first task's start to its last task's end; the run's wall time
  less the segments' spans and the phases is the driver's own time (Ray start-up, planning, the report).

Markers written before ``started_at`` existed have no timestamps: their segments show task seconds only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from refinery.pipelines import storage

#: Points on the CPU-use-over-time plot.
TIME_BINS = 80
#: Markers read per segment at most: beyond it an evenly spaced subset is read and its sums are scaled up (a run of
#: millions of shards draws its timing from a few thousand small reads).
MAX_MARKERS = 5_000


def read_markers(fs: Any, root: str, segment: dict[str, Any]) -> list[dict[str, Any]]:
    """The completion markers of one segment (an evenly spaced subset of at most ``MAX_MARKERS``, each carrying
    ``_weight``: how many markers it stands for)."""
    paths = sorted(p for p in fs.glob(storage.join(root, segment["directory"], "done", "*.json")))
    step = max(1, -(-len(paths) // MAX_MARKERS))
    chosen = paths[::step]
    weight = len(paths) / len(chosen) if chosen else 1.0
    markers = []
    for path in chosen:
        try:
            markers.append(storage.read_json(fs, path) | {"_weight": weight})
        except ValueError:
            continue
    return markers


def segment_timing(segment: dict[str, Any], markers: list[dict[str, Any]]) -> dict[str, Any]:
    """Task seconds (sum of shard tasks' wall time), stage seconds, CPU seconds, wall span and phase seconds."""
    stage_seconds = sum(stage.get("seconds", 0.0) for stage in segment["stages"])
    task_seconds = sum(float(m.get("wall_seconds", 0.0)) * m.get("_weight", 1.0) for m in markers)
    cpu = [float(m["cpu_seconds"]) * m.get("_weight", 1.0) for m in markers if "cpu_seconds" in m]
    timed = [m for m in markers if "started_at" in m]
    span = None
    if timed:
        span = max(m["started_at"] + m.get("wall_seconds", 0.0) for m in timed) - min(m["started_at"] for m in timed)
    phases = segment.get("phase_seconds") or {}
    return {
        "segment": segment["index"],
        "kind": segment["kind"],
        "stages": "+".join(stage["stage"] for stage in segment["stages"]),
        "shards": round(sum(m.get("_weight", 1.0) for m in markers)),
        "stage_seconds": round(stage_seconds, 3),
        "task_seconds": round(task_seconds, 3),
        "task_overhead_seconds": round(max(0.0, task_seconds - stage_seconds), 3),
        "cpu_seconds": round(sum(cpu), 3) if cpu else None,
        "wall_span_seconds": round(span, 3) if span is not None else None,
        "parallelism": round(task_seconds / span, 2) if span else None,
        "phase_seconds": {k: round(float(v), 3) for k, v in phases.items()},
        "phase_wall_seconds": round(sum(float(v) for v in phases.values()), 3),
    }


def cpu_timeline(markers: list[dict[str, Any]], bins: int = TIME_BINS) -> dict[str, Any]:
    """Cores busy per node over the run: each task's CPU seconds spread evenly over its wall interval, binned.

    Returns ``{"start": epoch, "seconds": [bin centres], "nodes": {node: [cores busy per bin]}}``; empty when no
    marker has timestamps.
    """
    timed = [m for m in markers if "started_at" in m and "cpu_seconds" in m]
    if not timed:
        return {"start": None, "seconds": [], "nodes": {}}
    start = min(m["started_at"] for m in timed)
    end = max(m["started_at"] + max(m.get("wall_seconds", 0.0), 1e-6) for m in timed)
    width = max(end - start, 1e-6) / bins
    nodes: dict[str, list[float]] = defaultdict(lambda: [0.0] * bins)
    for m in timed:
        node = str(m.get("worker", {}).get("node_id") or m.get("worker", {}).get("host") or "unknown")
        first, duration = m["started_at"] - start, max(m.get("wall_seconds", 0.0), 1e-6)
        rate = m["cpu_seconds"] * m.get("_weight", 1.0) / duration
        last = first + duration
        for b in range(int(first // width), min(bins, int(last // width) + 1)):
            overlap = min(last, (b + 1) * width) - max(first, b * width)
            if overlap > 0:
                nodes[node][b] += rate * overlap / width
    return {
        "start": start,
        "seconds": [round((b + 0.5) * width, 3) for b in range(bins)],
        "nodes": {node: [round(v, 3) for v in values] for node, values in sorted(nodes.items())},
    }


def run_timing(fs: Any, root: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Per-segment timing and the whole run's CPU timeline (see the module docstring)."""
    segments, everything = [], []
    for segment in summary["segments"]:
        markers = read_markers(fs, root, segment)
        everything.extend(markers)
        segments.append(segment_timing(segment, markers))
    accounted = sum((s["wall_span_seconds"] or 0.0) + s["phase_wall_seconds"] for s in segments)
    return {
        "segments": segments,
        "wall_seconds": summary["wall_seconds"],
        "segments_and_phases_seconds": round(accounted, 3),
        "driver_seconds": round(max(0.0, summary["wall_seconds"] - accounted), 3),
        "cpu_timeline": cpu_timeline(everything),
    }
