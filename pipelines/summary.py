"""The run summary (``run.json``): the funnel per segment and stage, rules, errors, timings, outputs.

Counts come from the per-shard stats (deterministic); timings and worker placement come from the completion
markers. The summary is what ``refinery run`` prints and what the HTML report draws.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from refinery.pipelines import __version__
from refinery.pipelines.plan import Segment
from refinery.pipelines.recipe import Recipe

COUNT_KEYS = ("in", "kept", "rejected", "errored", "chars_in", "chars_kept")


def _stage_totals(shard_stats: list[dict[str, Any]], position: int) -> dict[str, Any]:
    totals: dict[str, Any] = dict.fromkeys(COUNT_KEYS, 0)
    reasons: Counter = Counter()
    counters: Counter = Counter()
    for stats in shard_stats:
        stage = stats["stages"][position]
        totals["stage"] = stage["stage"]
        for key in COUNT_KEYS:
            totals[key] += stage[key]
        reasons.update(stage["reasons"])
        counters.update(stage["counters"])
    totals["reasons"] = dict(reasons.most_common())
    totals["counters"] = dict(sorted(counters.items()))
    return totals


def summarise(
    recipe: Recipe,
    segments: list[Segment],
    stats_by_segment: list[dict[str, dict[str, Any]]],
    markers: dict[str, dict[str, Any]],
    failures: list[dict[str, str]],
    counts: dict[str, int],
    accounting: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    segment_summaries = []
    file_errors = []
    for segment, shard_stats in zip(segments, stats_by_segment, strict=False):
        stats_list = [shard_stats[name] for name in sorted(shard_stats)]
        stages = [_stage_totals(stats_list, i) for i in range(len(segment.stage_names))] if stats_list else []
        seconds = [0.0] * len(segment.stage_names)
        cpu_seconds = [0.0] * len(segment.stage_names)
        nodes: Counter = Counter()
        for name in shard_stats:
            marker = markers.get(f"{segment.index}/{name}", {})
            for i, entry in enumerate(marker.get("seconds", [])):
                seconds[i] += entry["seconds"]
                cpu_seconds[i] += entry.get("cpu_seconds", 0.0)
            nodes[marker.get("worker", {}).get("node_id", "unknown")] += 1
        for stage, spent, cpu in zip(stages, seconds, cpu_seconds, strict=False):
            stage["seconds"] = round(spent, 3)
            stage["cpu_seconds"] = round(cpu, 3)
        for stats in stats_list:
            file_errors.extend(
                {"shard": stats["shard"], "file": stats["file"], "error": e} for e in stats["file_errors"]
            )
        segment_summaries.append(
            {
                "index": segment.index,
                "kind": segment.kind,
                "directory": segment.directory,
                "stages": stages,
                "shards": len(shard_stats),
                "shards_per_node": dict(sorted(nodes.items())),
            }
        )
    last = segments[len(stats_by_segment) - 1] if stats_by_segment else segments[0]
    kept_files = [last.path("kept", name) for name in sorted(stats_by_segment[-1])] if stats_by_segment else []
    complete = not failures and len(stats_by_segment) == len(segments)
    return {
        "recipe": recipe.name,
        "fingerprint": recipe.fingerprint(),
        "refinery_version": __version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": round(time.time() - started, 3),
        "shards": counts,
        "segments": segment_summaries,
        "accounting": accounting,
        "failures": failures,
        "file_errors": file_errors,
        "outputs": {"kept": kept_files, "complete": complete},
    }
