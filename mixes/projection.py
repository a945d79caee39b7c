"""What a target output token count would cost: core-hours per stage and the input it needs, from a real run.

``refinery project RUN_DIR --tokens 15e12`` reads what the run measured (``run.json``: documents, characters
and seconds per stage; the completion markers: wall seconds per shard task), measures tokens per character on
a deterministic sample of the run's kept documents with the run's tokenizer, and scales linearly:

* output characters needed = target tokens / (tokens per character of the kept output);
* scale = output characters needed / output characters of the run (the measured keep rate is in this factor);
* each stage's core-hours = its measured seconds x scale / 3600 (each shard task uses one core, so the sum of
  task seconds is core-seconds); GPU-hours the same, for stages whose ``resources()`` ask for GPUs (seconds x
  GPUs per task) or that record ``gpu_seconds``;
* input needed = the run's input documents, extracted characters and raw input bytes x scale.

Global stages' corpus-wide phases (dedup shuffles, reference distributions) are added from ``run.json``'s
``segments[].phase_seconds``: each phase's wall seconds x ``cores`` (the CPUs the run had, which the phase's
tasks shared) x scale. What is still left out: the driver and Ray start-up, and mixing up-sampled buckets.
:func:`compare_runs` checks the method itself: it predicts a larger run's seconds per stage and phase from a
smaller run (scaled by input characters) and reports the error against what the larger run measured
(``refinery project SMALL_RUN --compare LARGE_RUN``). The result is written to ``RUN_DIR/projection.json``;
:func:`projection_html` renders it as an HTML fragment for the report.
"""

from __future__ import annotations

import html
import math
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT
from refinery.pipelines.models import DEFAULT_TOKENIZER

from .token_count import cached_tokenizer, count_tokens
from .writer import read_run, recipe_tokenizer

ASSUMPTIONS = [
    "Per-stage cost scales linearly with the characters a stage sees (shard tasks are independent).",
    "The target corpus has the sample's keep rate per stage and the sample's tokens per character.",
    "Stage seconds are single-core task seconds (core-hours); Ray start-up and driver time are excluded.",
    "Global stages' corpus-wide phases are projected linearly from their wall seconds x the run's cores; MinHash "
    "and semantic dedup may grow faster than linearly (compare a smaller run against a larger one: --compare).",
    "Mixing (refinery shards) and up-sampling are not included.",
]


def sample_tokens_per_char(run_dir: str, kept: list[str], tokenizer: str, documents: int) -> dict[str, Any]:
    """Tokens per character over up to ``documents`` kept documents, taken evenly from the first rows of each shard."""
    per_shard = max(1, math.ceil(documents / len(kept)))
    chars = tokens = count = 0
    loaded = cached_tokenizer(tokenizer)
    for relative in kept:
        fs, inner = storage.filesystem(storage.join(run_dir, relative))
        with fs.open(inner, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for batch in parquet.iter_batches(batch_size=per_shard, columns=[TEXT]):
                texts = pc.fill_null(batch.column(TEXT), "")
                chars += int(pc.sum(pc.utf8_length(texts)).as_py() or 0)
                tokens += int(count_tokens(loaded, texts).sum())
                count += len(texts)
                break
    if chars == 0:
        raise ValueError(f"{run_dir}: the kept output has no text to measure tokens per character on")
    return {"documents": count, "chars": chars, "tokens": tokens, "tokens_per_char": tokens / chars}


def _input_bytes(recipe: dict[str, Any]) -> int | None:
    """Raw bytes of the recipe's input files if they can still be listed, else None."""
    total = 0
    try:
        for spec in recipe.get("recipe", {}).get("inputs", []):
            for pattern in spec.get("paths", []):
                fs, inner = storage.filesystem(pattern)
                for path in fs.glob(inner) if any(c in inner for c in "*?[") else [inner]:
                    total += fs.size(path)
    except (OSError, ValueError):
        return None
    return total or None


#: Below this many input documents a run's keep rate and per-stage cost say little about a corpus: warn.
MIN_DOCUMENTS = 100_000
#: The keep rate's 95% interval relative to the rate above which the projection warns (too few documents kept).
MAX_RELATIVE_INTERVAL = 0.10
Z95 = 1.959964


def wilson_interval(kept: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a binomial proportion (95% by default); None without trials."""
    if total <= 0:
        return None
    p = kept / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def sample_warnings(input_documents: int, output_documents: int, interval: tuple[float, float] | None) -> list[str]:
    """Why the run may be too small to extrapolate from (empty when it is not)."""
    warnings = []
    if input_documents < MIN_DOCUMENTS:
        warnings.append(
            f"The run read {input_documents:,} input documents (fewer than {MIN_DOCUMENTS:,}): its keep rate and "
            "per-stage costs depend on which pages it happened to read and on fixed costs (model loading, task "
            "start-up); treat the projection as an order of magnitude."
        )
    if interval is not None and output_documents:
        rate = output_documents / input_documents
        if rate > 0 and (interval[1] - interval[0]) / rate > MAX_RELATIVE_INTERVAL:
            warnings.append(
                f"The keep rate's 95% interval ({interval[0]:.2%} to {interval[1]:.2%}) spans more than "
                f"{MAX_RELATIVE_INTERVAL:.0%} of the rate: the input needed is uncertain by as much."
            )
    if not output_documents:
        warnings.append("The run kept no documents: nothing to extrapolate from.")
    return warnings


def stage_gpus(recipe: dict[str, Any]) -> dict[str, float]:
    """GPUs each recipe stage's tasks hold (``Stage.resources()``); stages that cannot be rebuilt count 0."""
    from refinery.pipelines.stages import stage_registry

    registry = stage_registry()
    gpus: dict[str, float] = {}
    for entry in recipe.get("recipe", {}).get("stages", []):
        params = {k: v for k, v in entry.items() if k != "stage"}
        try:
            stage = registry[entry["stage"]](**params)
            gpus[entry["stage"]] = float(stage.resources().gpus)
        except (KeyError, ValueError, TypeError, OSError):
            gpus[entry["stage"]] = 0.0
    return gpus


def _task_wall_seconds(run_dir: str) -> float:
    fs, root = storage.filesystem(run_dir)
    total = 0.0
    for marker in fs.glob(storage.join(root, "segments", "*", "done", "*.json")):
        try:
            total += float(storage.read_json(fs, marker).get("wall_seconds", 0.0))
        except ValueError:
            continue
    return total


def phase_entries(run: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per corpus-wide phase of each global segment: ``STAGE:PHASE`` and its wall seconds."""
    entries = []
    for segment in run["segments"]:
        stage = segment["stages"][0] if segment["stages"] else {"stage": "?", "chars_in": 0, "in": 0}
        cpu = segment.get("phase_cpu_seconds", {})
        for phase, seconds in sorted(segment.get("phase_seconds", {}).items()):
            entries.append(
                {
                    "segment": segment["index"],
                    "kind": "phase",
                    "stage": f"{stage['stage']}:{phase}",
                    "seconds": float(seconds),
                    "cpu_seconds": None if phase not in cpu else float(cpu[phase]),
                    "chars_in": stage["chars_in"],
                    "documents_in": stage["in"],
                }
            )
    return entries


def project_run(
    run_dir: str, target_tokens: float, sample_documents: int = 2000, tokenizer: str | None = None, cores: int = 1
) -> dict[str, Any]:
    """The projection dict (what ``projection.json`` holds) for ``target_tokens`` output tokens."""
    run_dir = str(run_dir).rstrip("/")
    run, recipe, kept = read_run(run_dir)
    tokenizer = tokenizer or recipe_tokenizer(recipe) or DEFAULT_TOKENIZER
    sample = sample_tokens_per_char(run_dir, kept, tokenizer, sample_documents)
    segments = run["segments"]
    first = segments[0]["stages"][0]
    last = segments[-1]["stages"][-1]
    output_chars = last["chars_kept"]
    if output_chars <= 0:
        raise ValueError(f"{run_dir}: the run kept no characters; nothing to project from")
    needed_chars = target_tokens / sample["tokens_per_char"]
    scale = needed_chars / output_chars
    input_bytes = _input_bytes(recipe)
    interval = wilson_interval(last["kept"], first["in"])
    gpus = stage_gpus(recipe)
    stages = []
    for segment in segments:
        for stage in segment["stages"]:
            gpu_seconds = stage.get("gpu_seconds")
            if gpu_seconds is None and gpus.get(stage["stage"], 0.0) > 0:
                gpu_seconds = stage["seconds"] * gpus[stage["stage"]]  # its tasks hold the GPU(s) while it runs
            stages.append(
                {
                    "segment": segment["index"],
                    "kind": segment["kind"],
                    "stage": stage["stage"],
                    "documents_in": stage["in"],
                    "chars_in": stage["chars_in"],
                    "seconds": stage["seconds"],
                    "seconds_per_mchar": stage["seconds"] / stage["chars_in"] * 1e6 if stage["chars_in"] else None,
                    "keep_rate_documents": stage["kept"] / stage["in"] if stage["in"] else None,
                    "projected_chars_in": stage["chars_in"] * scale,
                    "core_hours": stage["seconds"] * scale / 3600,
                    "gpu_hours": gpu_seconds * scale / 3600 if gpu_seconds is not None else None,
                }
            )
    stage_seconds = sum(s["seconds"] for s in stages)
    overhead = max(0.0, _task_wall_seconds(run_dir) - stage_seconds)
    phases = []
    for phase in phase_entries(run):
        core_seconds = phase["seconds"] * cores
        phase.update(
            seconds_per_mchar=core_seconds / phase["chars_in"] * 1e6 if phase["chars_in"] else None,
            keep_rate_documents=None,
            projected_chars_in=phase["chars_in"] * scale,
            core_hours=core_seconds * scale / 3600,
            gpu_hours=None,
        )
        phases.append(phase)
    phase_core_seconds = sum(p["seconds"] for p in phases) * cores
    gpu = [s["gpu_hours"] for s in stages if s["gpu_hours"] is not None]
    return {
        "run_dir": run_dir,
        "recipe": run.get("recipe"),
        "recipe_fingerprint": run.get("fingerprint"),
        "target_tokens": target_tokens,
        "tokenizer": tokenizer,
        "sample": sample,
        "measured": {
            "input_documents": first["in"],
            "input_chars": first["chars_in"],
            "input_bytes": input_bytes,
            "output_documents": last["kept"],
            "output_chars": output_chars,
            "output_tokens_estimate": output_chars * sample["tokens_per_char"],
            "keep_rate_documents": last["kept"] / first["in"] if first["in"] else None,
            "keep_rate_chars": output_chars / first["chars_in"] if first["chars_in"] else None,
            "keep_rate_documents_95": list(interval) if interval else None,
            "stage_seconds": stage_seconds,
            "task_overhead_seconds": overhead,
            "phase_wall_seconds": sum(p["seconds"] for p in phases),
            "cores": cores,
        },
        "scale": scale,
        "needed": {
            "input_documents": first["in"] * scale,
            "input_chars": first["chars_in"] * scale,
            "input_bytes": input_bytes * scale if input_bytes else None,
            "input_documents_95": (
                [last["kept"] * scale / interval[1], last["kept"] * scale / interval[0]]
                if interval and interval[0] > 0
                else None
            ),
            "output_documents": last["kept"] * scale,
            "output_chars": needed_chars,
        },
        "stages": stages + phases,
        "total_core_hours": (stage_seconds + overhead + phase_core_seconds) * scale / 3600,
        "stage_core_hours": stage_seconds * scale / 3600,
        "phase_core_hours": phase_core_seconds * scale / 3600,
        "io_overhead_core_hours": overhead * scale / 3600,
        "total_gpu_hours": sum(gpu) if gpu else None,
        "assumptions": ASSUMPTIONS,
        "warnings": sample_warnings(first["in"], last["kept"], interval),
    }


def write_projection(run_dir: str, projection: dict[str, Any]) -> str:
    """Write ``projection.json`` and ``projection.section.html``; the run report includes the latter."""
    fs, root = storage.filesystem(str(run_dir))
    path = storage.join(root, "projection.json")
    storage.write_json_atomic(fs, path, projection)
    storage.write_bytes_atomic(fs, storage.join(root, "projection.section.html"), projection_html(projection).encode())
    return path


def _human(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {suffix}{unit}"
    return f"{value:.2f} {unit}".rstrip()


def _rows(projection: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for s in projection["stages"]:
        rows.append(
            (
                f"{s['segment']}·{s['stage']}",
                f"{s['seconds']:.2f}",
                "-" if s["seconds_per_mchar"] is None else f"{s['seconds_per_mchar']:.3f}",
                _human(s["projected_chars_in"]),
                f"{s['core_hours']:,.0f}",
                "-" if s["gpu_hours"] is None else f"{s['gpu_hours']:,.0f}",
            )
        )
    return rows


HEADER = ("stage", "seconds", "s / M chars", "chars in (projected)", "core-hours", "GPU-hours")


def projection_table(projection: dict[str, Any]) -> str:
    """The projection as a terminal table plus the input it needs."""
    widths = (28, 9, 13, 22, 14, 11)
    lines = ["".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(HEADER, widths, strict=True)))]
    for row in _rows(projection):
        lines.append(
            "".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    m, n, sample = projection["measured"], projection["needed"], projection["sample"]
    lines += [
        f"stages {projection['stage_core_hours']:,.0f} core-hours + task I/O and overhead "
        f"{projection['io_overhead_core_hours']:,.0f} + global phases {projection.get('phase_core_hours', 0):,.0f}"
        f" = {projection['total_core_hours']:,.0f} core-hours "
        f"for {_human(projection['target_tokens'], 'tokens')} out",
        f"tokens per character {sample['tokens_per_char']:.4f} ({sample['documents']} kept documents); "
        f"keep rate {m['keep_rate_documents']:.2%} of documents, {m['keep_rate_chars']:.2%} of characters",
        f"input needed: {_human(n['input_documents'], ' documents')}, {_human(n['input_chars'], ' chars')} extracted, "
        f"{_human(n['input_bytes'], 'B')} of input files as stored (scale x{projection['scale']:,.0f} of this run)",
        *[f"WARNING: {w}" for w in projection.get("warnings", [])],
    ]
    return "\n".join(lines)


#: Said on the page beside the assumptions: what "input bytes" are.
BYTES_NOTE = (
    "Input bytes are the input files as stored (compressed .warc.gz / .jsonl.zst / Parquet), not extracted text."
)


def projection_html(projection: dict[str, Any]) -> str:
    """An HTML fragment for report.html: warnings first, the figures, what they rest on (sample size, keep rate with
    its 95% interval, compressed input bytes), the stage table and the assumptions."""
    from refinery.pipelines.report_page import table

    e = html.escape
    m, n, sample = projection["measured"], projection["needed"], projection["sample"]
    warnings = "".join(f'<p class="warning"><b>Warning:</b> {e(w)}</p>' for w in projection.get("warnings", []))
    interval = m.get("keep_rate_documents_95")
    needed_95 = n.get("input_documents_95")
    keep = f"{m['keep_rate_documents']:.2%}" + (
        f" (95% interval {interval[0]:.2%} to {interval[1]:.2%}, Wilson)" if interval else ""
    )
    needed_docs = e(_human(n["input_documents"], " documents")) + (
        f" (95%: {e(_human(needed_95[0]))} to {e(_human(needed_95[1]))})" if needed_95 else ""
    )
    phases = (
        f", {projection['phase_core_hours']:,.0f} in global phases"
        if projection.get("phase_core_hours") is not None
        else ""
    )
    summary = (
        f"<p>{e(_human(projection['target_tokens'], ' tokens'))} of output need "
        f"<b>{projection['total_core_hours']:,.0f} core-hours</b> ({projection['stage_core_hours']:,.0f} in stages, "
        f"{projection['io_overhead_core_hours']:,.0f} task I/O and overhead{phases}) and {needed_docs} of input, "
        f"{e(_human(n['input_chars'], ' characters'))} of extracted text, "
        f"{e(_human(n['input_bytes'], 'B'))} of input files as stored (compressed).</p>"
    )
    basis_rows = [
        ["input documents read by this run", f"{m['input_documents']:,}"],
        ["documents kept", f"{m['output_documents']:,}"],
        ["document keep rate", keep],
        ["character keep rate", f"{m['keep_rate_chars']:.2%}"],
        ["tokens per character", f"{sample['tokens_per_char']:.4f} ({sample['documents']:,} kept documents)"],
        ["input bytes (files as stored, compressed)", _human(m.get("input_bytes"), "B")],
        ["scale (projected / this run)", f"x{projection['scale']:,.0f}"],
    ]
    if m.get("cores") is not None:
        basis_rows.append(["cores (global phases: wall seconds x cores)", f"{m['cores']:,}"])
    basis = table(["what the projection rests on", "value"], basis_rows, numeric=(1,))
    stages = table(list(HEADER), [list(row) for row in _rows(projection)], numeric=range(1, 6))
    assumptions = "".join(f"<li>{e(a)}</li>" for a in [*projection["assumptions"], BYTES_NOTE])
    return (
        '<section class="projection" id="projection"><h2>Cost projection</h2>'
        f"{warnings}{summary}{basis}{stages}<ul>{assumptions}</ul></section>"
    )


def compare_runs(small_dir: str, large_dir: str) -> dict[str, Any]:
    """How well ``small_dir`` predicts ``large_dir``: each stage's and phase's seconds scaled by input characters.

    The prediction is what ``project_run`` does (linear in characters); the error is (predicted - measured) /
    measured per stage, per phase and in total, so a user can see which parts do not scale linearly.
    """
    small, _, _ = read_run(str(small_dir).rstrip("/"))
    large, _, _ = read_run(str(large_dir).rstrip("/"))
    small_chars = small["segments"][0]["stages"][0]["chars_in"]
    large_chars = large["segments"][0]["stages"][0]["chars_in"]
    if small_chars <= 0:
        raise ValueError(f"{small_dir}: the run read no characters")
    scale = large_chars / small_chars

    def seconds_by_name(run: dict[str, Any], field: str) -> dict[str, float]:
        found = {
            f"{seg['index']}·{st['stage']}": float(st[field])
            for seg in run["segments"]
            for st in seg["stages"]
            if st.get(field) is not None
        }
        found.update({f"{p['segment']}·{p['stage']}": p[field] for p in phase_entries(run) if p.get(field) is not None})
        return found

    def relative(predicted: float, measured: float) -> float | None:
        return (predicted - measured) / measured if measured > 0 else None

    predicted_by, measured_by = seconds_by_name(small, "seconds"), seconds_by_name(large, "seconds")
    # CPU seconds (recorded since the runner counts them) do not stretch with the machine's load as wall does
    predicted_cpu, measured_cpu = seconds_by_name(small, "cpu_seconds"), seconds_by_name(large, "cpu_seconds")
    rows = []
    for name in [n for n in measured_by if n in predicted_by]:
        predicted, measured = predicted_by[name] * scale, measured_by[name]
        row = {"name": name, "predicted_seconds": predicted, "measured_seconds": measured}
        row["error"] = relative(predicted, measured)
        if name in predicted_cpu and name in measured_cpu:
            row["predicted_cpu_seconds"] = predicted_cpu[name] * scale
            row["measured_cpu_seconds"] = measured_cpu[name]
            row["cpu_error"] = relative(row["predicted_cpu_seconds"], row["measured_cpu_seconds"])
        rows.append(row)
    total_predicted = sum(r["predicted_seconds"] for r in rows)
    total_measured = sum(r["measured_seconds"] for r in rows)
    cpu_rows = [r for r in rows if "cpu_error" in r]
    cpu_predicted = sum(r["predicted_cpu_seconds"] for r in cpu_rows)
    cpu_measured = sum(r["measured_cpu_seconds"] for r in cpu_rows)
    wall_predicted = small["wall_seconds"] * scale
    return {
        "small_run": str(small_dir),
        "large_run": str(large_dir),
        "scale": scale,
        "rows": rows,
        "total": {
            "predicted_seconds": total_predicted,
            "measured_seconds": total_measured,
            "error": (total_predicted - total_measured) / total_measured if total_measured else None,
        },
        "cpu_total": {
            "predicted_seconds": cpu_predicted,
            "measured_seconds": cpu_measured,
            "error": relative(cpu_predicted, cpu_measured),
        },
        "wall": {
            "predicted_seconds": wall_predicted,
            "measured_seconds": large["wall_seconds"],
            "error": (wall_predicted - large["wall_seconds"]) / large["wall_seconds"]
            if large["wall_seconds"]
            else None,
        },
    }


def comparison_table(comparison: dict[str, Any]) -> str:
    """The comparison as a terminal table, worst errors visible at a glance."""

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value:+.0%}"

    lines = [
        f"{'stage / phase':<40}{'predicted s':>13}{'measured s':>12}{'error':>9}"
        f"{'pred. CPU s':>13}{'meas. CPU s':>13}{'CPU error':>11}"
    ]
    for row in comparison["rows"]:
        line = f"{row['name']:<40}{row['predicted_seconds']:>13.1f}{row['measured_seconds']:>12.1f}"
        line += f"{percent(row['error']):>9}"
        if "cpu_error" in row:
            line += f"{row['predicted_cpu_seconds']:>13.1f}{row['measured_cpu_seconds']:>13.1f}"
            line += f"{percent(row['cpu_error']):>11}"
        lines.append(line)
    for label in ("total", "wall"):
        part = comparison[label]
        line = f"{label:<40}{part['predicted_seconds']:>13.1f}{part['measured_seconds']:>12.1f}"
        line += f"{percent(part['error']):>9}"
        cpu = comparison.get("cpu_total") if label == "total" else None
        if cpu and cpu["measured_seconds"]:
            line += f"{cpu['predicted_seconds']:>13.1f}{cpu['measured_seconds']:>13.1f}{percent(cpu['error']):>11}"
        lines.append(line)
    lines.append(
        f"(scale x{comparison['scale']:.2f} by input characters: {comparison['small_run']} -> "
        f"{comparison['large_run']})"
    )
    return "\n".join(lines)
