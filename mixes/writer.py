"""``write_mix``: a run directory + a weights file + a seed → shuffled, weighted Parquet shards and their manifest.

This is the function the mix optimizer calls (and what ``refinery shards`` runs)::

    from refinery.mixes.writer import write_mix

    manifest_path = write_mix(
        "runs/llama3",                               # a finished run directory (run.json lists its kept shards)
        {"buckets": {"python_docs": {"weight": 0.7, "max_epochs": 3}, "*": {"weight": 0.3}}},  # or a YAML path
        "mixes/candidate-07",                        # output directory (manifest.json, shards/, heldout/)
        seed=0,
        selection={"method": "regmix", "proxy_runs": 64},   # recorded as is in the manifest
    )

Steps, each a function below and each map a task per item on the spine's executor (see the modules):

1. :func:`index_inputs` (:mod:`refinery.mixes.shard_index`): per input shard, bucket / tokens / seeded keys; the
   input's sha256 is the one the run recorded when it wrote the file (the run's fingerprint is their hash);
2. :func:`plan_buckets`: held-out cutoffs, token targets and sample cutoffs (:mod:`refinery.mixes.sampling`)
   from key histograms; realised shares checked against the declared weights (refused when off);
3. :func:`lay_out_units`: the shard count, the plan's fingerprint, every unit's file and partition;
4. :func:`write_units` (:mod:`refinery.mixes.shard_writer`): a scatter task per input shard reads it once and
   writes its selected rows into partitions; an assembly task per partition writes its shards;
5. :func:`build_manifest` (:mod:`refinery.pipelines.manifest`), written last.

The same run directory, weights and seed give byte-identical shards and manifest; a rerun into the same
output directory redoes only shards that are missing, corrupt or from another plan.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from refinery import pipelines
from refinery.pipelines import storage
from refinery.pipelines.executor import map_tasks
from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION, write_manifest
from refinery.pipelines.models import DEFAULT_TOKENIZER, file_sha256, tokenizer_file
from refinery.pipelines.partitions import IntermediateError

from . import shard_index as bk
from .buckets import bucket_file_name
from .sampling import (
    BucketPlan,
    MixPlanError,
    assign_targets,
    cutoff_in_bin,
    find_boundary,
    merge_histograms,
    unmet_shares,
)
from .scatter_files import scatter_path
from .shard_writer import (
    BLOCK_BYTES,
    assemble_partition,
    check_units,
    output_schema,
    partition_count,
    partition_marker_path,
    read_unit_records,
    relative_shard_path,
    scatter_shard,
    unit_partitions,
)
from .weights import OTHERS, WeightsSpec, load_weights

WRITER_VERSION = 1
#: The scatter files' layout (2: Arrow IPC, a record batch per block, their digests in a trailer); in the
#: scatter markers' fingerprint, so a resumed write never reads another layout's files.
SCATTER_FORMAT = 2
DEFAULT_ROW_GROUP_ROWS = 1000
MANIFEST_NAME = "manifest.json"


def map_items(function: Callable[[Any], Any], items: list[Any], in_process: bool, description: str) -> list[Any]:
    """Every phase's map: the spine's executor (a task per item), or a plain loop in this process.

    ``in_process`` is for callers that are themselves one task among many (each proxy of the mix optimizer
    writes its small mix inside its own task) and for tests that count what one process reads.
    """
    if in_process:
        return [function(item) for item in items]
    return map_tasks(function, items, description=description, show_progress=False)


def git_commit() -> str | None:
    """The commit of the installed Refinery checkout, or None (a wheel install, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(pipelines.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def read_run(run_dir: str) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(run.json, recipe.json, the final kept shards relative to the run) of a finished run directory."""
    fs, root = storage.filesystem(run_dir)
    for name in ("run.json", "recipe.json"):
        if not fs.exists(storage.join(root, name)):
            raise FileNotFoundError(f"{run_dir}: no {name}; is this a finished Refinery run directory?")
    run = storage.read_json(fs, storage.join(root, "run.json"))
    recipe = storage.read_json(fs, storage.join(root, "recipe.json"))
    kept = sorted(run.get("outputs", {}).get("kept", []))
    if not kept:
        raise ValueError(f"{run_dir}: run.json lists no kept shards")
    return run, recipe, kept


def recipe_tokenizer(recipe: dict[str, Any]) -> str | None:
    """The tokenizer of the recipe's ``token_count`` stage, if the run counted tokens itself."""
    for stage in recipe.get("recipe", {}).get("stages", []):
        if stage.get("stage") == "token_count":
            return stage.get("tokenizer", DEFAULT_TOKENIZER)
    return None


def recorded_digests(run_dir: str, kept: list[str]) -> dict[str, str | None]:
    """The sha256 the run recorded for each kept file when it wrote it (its shard's completion marker), or None.

    ``segments/NN/kept/NAME.parquet`` was written by the shard task whose marker is ``segments/NN/done/NAME.json``
    and carries ``kept_sha256``: the writer trusts it instead of hashing the run again on every mix.
    """
    fs, root = storage.filesystem(run_dir)
    digests: dict[str, str | None] = {}
    for relative in kept:
        folder, name = posixpath.split(relative)
        segment, kind = posixpath.split(folder)
        digest = None
        if kind == "kept" and name.endswith(".parquet"):
            marker = storage.join(root, segment, "done", name[: -len(".parquet")] + ".json")
            try:
                digest = storage.read_json(fs, marker).get("kept_sha256") or None
            except (FileNotFoundError, ValueError):
                digest = None
        digests[relative] = digest
    return digests


def _fingerprint(data: Any) -> str:
    return storage.fingerprint(data)


@dataclass
class MixWrite:
    """What every step of one ``write_mix`` shares: where it reads and writes, the weights, the seed, how it maps."""

    run_dir: str
    output_dir: str
    spec: WeightsSpec
    seed: int
    recipe: dict[str, Any]
    kept: list[str]
    tokenizer: str
    tokenizer_sha: str
    row_group_rows: int
    in_process: bool

    @property
    def work(self) -> str:
        return storage.join(self.output_dir, "_work")

    @property
    def inputs(self) -> list[str]:
        return [storage.join(self.run_dir, relative) for relative in self.kept]

    @property
    def index_paths(self) -> list[str]:
        return [storage.join(self.work, "index", f"{i:05d}.parquet") for i in range(len(self.kept))]

    def map(self, function: Callable[[Any], Any], items: list[Any], description: str) -> list[Any]:
        return map_items(function, items, self.in_process, description)


@dataclass
class UnitLayout:
    """Step 3's decisions: how many training shards, the file of every unit, the partitions they are built in."""

    num_shards: int
    num_partitions: int
    plan_fingerprint: str
    heldout_units: dict[str, int]
    units: list[tuple[int, str]]  # (unit, relative path) of every file this mix writes, shards first
    partition_of: list[int]  # per unit id (training shards, then one per bucket)
    unit_bytes: list[float]  # per unit id: estimated output bytes (the assembly's blocks are cut from these)


def write_mix(
    run_dir: str | Path,
    weights: str | Path | dict[str, Any] | WeightsSpec,
    output_dir: str | Path,
    seed: int = 0,
    selection: dict[str, Any] | None = None,
    *,
    tokenizer: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    megatron_blend: str | Path | None = None,
    in_process: bool = False,
    unmet_weights: str = "refuse",
) -> Path:
    """Write the weighted, shuffled shards of ``run_dir`` to ``output_dir``; return the manifest's path.

    ``weights``: a weights YAML path, a dict of the same shape, or a :class:`WeightsSpec` (see
    :mod:`refinery.mixes.weights`). ``seed`` drives sampling, shard assignment and order (held-out sets use the
    weights' ``heldout_seed`` only). ``selection`` is stored verbatim in the manifest (how the weights were
    chosen). ``tokenizer`` counts tokens when the run has no ``n_tokens`` column (default: the recipe's
    ``token_count`` tokenizer, else the bundled Llama 3). ``address`` / ``num_cpus``: Ray as in ``refinery
    run`` (an already initialised Ray is used as is). ``megatron_blend``: also write a Megatron ``--data-path``
    blend file. ``in_process``: every phase in this process, no Ray (a caller that is itself a task).
    ``unmet_weights``: ``"refuse"`` raises :class:`MixPlanError` when a realised share is off its declared weight
    by more than max(0.01, one document's share); ``"record"`` writes the mix anyway (the manifest records both
    shares; the mix optimizer trains and fits on the realised ones). Raises :class:`MixPlanError` (a
    ``ValueError``) naming the bucket when weights cannot be met.
    """
    if unmet_weights not in ("refuse", "record"):
        raise ValueError(f"unmet_weights is 'refuse' or 'record', not {unmet_weights!r}")
    mix = _prepare(run_dir, weights, output_dir, seed, tokenizer, row_group_rows, in_process)
    with _session(address, num_cpus, in_process):
        # 1. index every input shard (bucket, tokens, seeded keys; digests from the run's markers)
        summaries = index_inputs(mix)
        # 2. plan: held-out cutoffs, token targets, sample cutoffs; shares honoured or refused
        plans, total_tokens = plan_buckets(mix, summaries, unmet_weights == "refuse")
        # 3. lay out the units (shards, held-out sets) and the partitions that build them
        run_fingerprint = _run_fingerprint(mix.kept, summaries)
        layout = lay_out_units(mix, plans, summaries, total_tokens, run_fingerprint)
        # 4. scatter every input shard into its partitions once, then assemble each partition's units
        markers = write_units(mix, plans, layout)
    _remove_stale(mix.output_dir, {relative for _, relative in layout.units})
    # 5. the manifest, last
    manifest = build_manifest(mix, selection, plans, summaries, layout, markers, run_fingerprint)
    manifest_path = write_manifest(mix.output_dir, manifest, MANIFEST_NAME)
    if megatron_blend is not None:
        from .blend import megatron_blend as blend

        Path(megatron_blend).write_text(blend(manifest_path) + "\n")
    return manifest_path


def _prepare(
    run_dir: str | Path,
    weights: str | Path | dict[str, Any] | WeightsSpec,
    output_dir: str | Path,
    seed: int,
    tokenizer: str | None,
    row_group_rows: int,
    in_process: bool,
) -> MixWrite:
    run_dir, output_dir = str(run_dir).rstrip("/"), str(output_dir).rstrip("/")
    spec = load_weights(weights)
    _run, recipe, kept = read_run(run_dir)
    tokenizer = recipe_tokenizer(recipe) or tokenizer or DEFAULT_TOKENIZER
    return MixWrite(
        run_dir=run_dir,
        output_dir=output_dir,
        spec=spec,
        seed=seed,
        recipe=recipe,
        kept=kept,
        tokenizer=tokenizer,
        tokenizer_sha=file_sha256(tokenizer_file(tokenizer)),
        row_group_rows=row_group_rows,
        in_process=in_process,
    )


def _session(address: str | None, num_cpus: int | None, in_process: bool) -> AbstractContextManager[Any]:
    if in_process:
        return nullcontext()
    from refinery.pipelines.ray_session import ray_session

    return ray_session(address, num_cpus)


def index_inputs(mix: MixWrite) -> list[dict[str, Any]]:
    """Step 1: one index per input shard (see :mod:`refinery.mixes.shard_index`); their summaries in input order."""
    index_fingerprint = _fingerprint(
        {
            "v": WRITER_VERSION,
            "columns": mix.spec.columns,
            "seed": mix.seed,
            "heldout_seed": mix.spec.heldout_seed,
            "tokenizer": mix.tokenizer_sha,
        }
    )
    digests = recorded_digests(mix.run_dir, mix.kept)
    jobs = [
        {
            "path": path,
            "sha256": digests[relative],
            "index_path": mix.index_paths[i],
            "marker_path": storage.join(mix.work, "index", f"{i:05d}.json"),
            "columns": mix.spec.columns,
            "tokenizer": mix.tokenizer,
            "seed": mix.seed,
            "heldout_seed": mix.spec.heldout_seed,
            "fingerprint": index_fingerprint,
        }
        for i, (relative, path) in enumerate(zip(mix.kept, mix.inputs, strict=True))
    ]
    return mix.map(bk.index_shard, jobs, "shards: index")


def _run_fingerprint(kept: list[str], summaries: list[dict[str, Any]]) -> str:
    return hashlib.sha256(
        "".join(f"{rel}\x00{s['sha256']}\n" for rel, s in zip(kept, summaries, strict=True)).encode()
    ).hexdigest()


def plan_buckets(
    mix: MixWrite, summaries: list[dict[str, Any]], refuse_unmet: bool
) -> tuple[dict[str, BucketPlan], int]:
    """Step 2: every bucket's held-out cutoff, token target and sample cutoff; the shares checked (see sampling)."""
    plans = _bucket_plans(mix.spec, summaries)
    _heldout_cutoffs(mix, plans)
    total_tokens = assign_targets(mix.spec, plans)
    _sample_cutoffs(mix, plans)
    problems = unmet_shares(mix.spec, plans)
    if problems and refuse_unmet:
        raise MixPlanError(problems)
    return plans, total_tokens


def lay_out_units(
    mix: MixWrite, plans: dict[str, BucketPlan], summaries: list[dict], total_tokens: int, run_fingerprint: str
) -> UnitLayout:
    """Step 3: the shard count, the plan's fingerprint, every unit's file and partition."""
    num_shards, estimated_bytes = _shard_count(mix.spec, plans, summaries, total_tokens)
    plan_fingerprint = _fingerprint(
        {
            "v": WRITER_VERSION,
            "run": run_fingerprint,
            "weights": mix.spec.model_dump(mode="json"),
            "seed": mix.seed,
            "tokenizer": mix.tokenizer_sha,
            "row_group_rows": mix.row_group_rows,
            "num_shards": num_shards,
        }
    )
    names = sorted(plans)
    heldout_units = {n: num_shards + i for i, n in enumerate(names)}
    units = [(u, relative_shard_path(u)) for u in range(num_shards)]
    units += [(heldout_units[n], f"heldout/{bucket_file_name(n)}.parquet") for n in names if plans[n].heldout_documents]
    parallelism = 1 if mix.in_process else _session_cpus()
    num_partitions = partition_count(num_shards, estimated_bytes, parallelism)
    bytes_per_token = estimated_bytes / total_tokens if total_tokens else _bytes_per_token(summaries)
    return UnitLayout(
        num_shards=num_shards,
        num_partitions=num_partitions,
        plan_fingerprint=plan_fingerprint,
        heldout_units=heldout_units,
        units=units,
        partition_of=unit_partitions(num_shards, num_partitions, len(names)).tolist(),
        unit_bytes=[estimated_bytes / num_shards] * num_shards
        + [bytes_per_token * plans[n].heldout_tokens for n in names],
    )


def _bytes_per_token(summaries: list[dict]) -> float:
    tokens = sum(c["tokens"] for s in summaries for c in s["buckets"].values())
    return sum(s["bytes"] for s in summaries) / max(1, tokens)


def _session_cpus() -> int:
    from refinery.pipelines.executor import session_resources

    return max(1, int(session_resources().get("CPU", 1)))


def write_units(
    mix: MixWrite, plans: dict[str, BucketPlan], layout: UnitLayout, retried: bool = False
) -> list[dict[str, Any]]:
    """Step 4: scatter (a task per input shard) then assemble (a task per partition); every unit's marker.

    A unit already written by this plan is kept; when every unit is, nothing is read at all. The scatter files
    are removed once every unit is written (a later repair scatters again). A scatter file that fails its
    writer's record (an :class:`IntermediateError`) makes the scatter run again, once.
    """
    unit_files = {unit: {"unit": unit, "path": relative} for unit, relative in layout.units}
    done = units_already_written(mix, layout, unit_files)
    if len(done) == len(unit_files):
        return [done[unit] for unit, _ in layout.units]
    schema = output_schema(_input_schema(mix.inputs[0])).serialize().to_pybytes()
    directory = storage.join(mix.work, "partitions")
    scatter_fingerprint = _fingerprint(
        {
            "plan": layout.plan_fingerprint,
            "partitions": layout.num_partitions,
            "scatter_format": SCATTER_FORMAT,
            "block_bytes": BLOCK_BYTES,
        }
    )
    names = sorted(plans)
    buckets = {
        n: {
            "unit": layout.heldout_units[n],
            "whole_epochs": plans[n].whole_epochs,
            "sample_cutoff": plans[n].sample_cutoff,
            "heldout_cutoff": plans[n].heldout_cutoff,
        }
        for n in names
        if plans[n].target_tokens > 0 or plans[n].heldout_cutoff > 0
    }
    writers = [f"{i:05d}" for i in range(len(mix.inputs))]
    scatter_jobs = [
        {
            "input_path": path,
            "index_path": mix.index_paths[i],
            "writer": writers[i],
            "directory": directory,
            "marker_path": storage.join(mix.work, "scattered", f"{writers[i]}.json"),
            "fingerprint": scatter_fingerprint,
            "num_shards": layout.num_shards,
            "buckets": buckets,
            "unit_partitions": layout.partition_of,
            "unit_bytes": layout.unit_bytes,
            "block_bytes": BLOCK_BYTES,
            "schema": schema,
        }
        for i, path in enumerate(mix.inputs)
    ]
    scattered = mix.map(scatter_shard, scatter_jobs, "shards: scatter")
    by_partition: dict[int, list[int]] = {}
    for unit, _ in layout.units:
        by_partition.setdefault(layout.partition_of[unit], []).append(unit)
    assemble_jobs = [
        {
            "partition": partition,
            "output_dir": mix.output_dir,
            "units": [unit_files[u] for u in units if u not in done],
            "done": {unit_files[u]["path"]: done[u] for u in units if u in done},
            "marker_path": partition_marker_path(mix.output_dir, partition),
            "files": [
                [scatter_path(directory, partition, writer), summary["files"][str(partition)]]
                for writer, summary in zip(writers, scattered, strict=True)
                if str(partition) in summary["files"]
            ],
            "fingerprint": layout.plan_fingerprint,
            "schema": schema,
            "row_group_rows": mix.row_group_rows,
        }
        for partition, units in sorted(by_partition.items())
        if any(u not in done for u in units)
    ]
    try:
        assembled = mix.map(assemble_partition, assemble_jobs, "shards: assemble")
    except IntermediateError:  # a scatter file lost or altered since its writer recorded it: scatter again, once
        _remove_scatter(mix)
        if retried:
            raise
        return write_units(mix, plans, layout, retried=True)
    unit_of_path = {relative: unit for unit, relative in layout.units}
    for result in assembled:
        for record in result["records"]:
            done[unit_of_path[record["path"]]] = record
    _record_reads(mix, scattered, assembled)
    _remove_scatter(mix)
    return [done[unit] for unit, _ in layout.units]


def units_already_written(
    mix: MixWrite, layout: UnitLayout, unit_files: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    """The units this plan already wrote, with their records: recorded in a partition marker, and the file still
    has the recorded size and footer row count (checked by a task per partition, only for recorded units).

    The driver reads the partition markers (one listing, one read per partition), never a file per unit.
    """
    records = read_unit_records(mix.output_dir, layout.plan_fingerprint)
    recorded: dict[int, list[int]] = {}
    for unit, relative in layout.units:
        if relative in records:
            recorded.setdefault(layout.partition_of[unit], []).append(unit)
    jobs = [
        {"output_dir": mix.output_dir, "units": [records[unit_files[u]["path"]] for u in units]}
        for _, units in sorted(recorded.items())
    ]
    checked = mix.map(check_units, jobs, "shards: check") if jobs else []
    done = {}
    for (_, units), results in zip(sorted(recorded.items()), checked, strict=True):
        for unit, ok in zip(units, results, strict=True):
            if ok:
                done[unit] = records[unit_files[unit]["path"]]
    return done


def _remove_scatter(mix: MixWrite) -> None:
    """Drop the scatter markers, then the partition files (markers first: a kill in between leaves files only)."""
    fs, root = storage.filesystem(mix.work)
    for folder in ("scattered", "partitions"):
        if fs.exists(storage.join(root, folder)):
            fs.rm(storage.join(root, folder), recursive=True)


def _record_reads(mix: MixWrite, scattered: list[dict], assembled: list[dict]) -> None:
    """``_work/reads.json``: bytes the scatter read from the inputs and the assembly from the partitions."""
    fs, root = storage.filesystem(mix.work)
    storage.write_json_atomic(
        fs,
        storage.join(root, "reads.json"),
        {
            "scatter_input_bytes": [s["input_bytes_read"] for s in scattered],
            "assemble_partition_bytes": [a["bytes_read"] for a in assembled],
        },
    )


def build_manifest(
    mix: MixWrite,
    selection: dict[str, Any] | None,
    plans: dict[str, BucketPlan],
    summaries: list[dict[str, Any]],
    layout: UnitLayout,
    markers: list[dict[str, Any]],
    run_fingerprint: str,
) -> dict[str, Any]:
    """Step 5: the manifest (``refinery-manifest``; the fields are documented in docs/shards.md)."""
    names = sorted(plans)
    shards = markers[: layout.num_shards]
    total_tokens = sum(m["tokens"] for m in shards)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": {
            "refinery_version": pipelines.__version__,
            "git_commit": git_commit(),
            "writer_version": WRITER_VERSION,
        },
        "recipe": {"fingerprint": mix.recipe.get("fingerprint"), "recipe": mix.recipe.get("recipe")},
        "run": {
            "fingerprint": run_fingerprint,
            "shards": len(mix.kept),
            "documents": sum(s["rows"] for s in summaries),
        },
        "tokenizer": _tokenizer_entry(mix.tokenizer, mix.tokenizer_sha),
        "seed": mix.seed,
        "bucket_column": mix.spec.bucket_column,
        "selection": selection or {},
        "weights": mix.spec.model_dump(mode="json"),
        "plan_fingerprint": layout.plan_fingerprint,
        "total_tokens": total_tokens,
        "total_documents": sum(m["rows"] for m in shards),
        "buckets": {n: _bucket_entry(plans[n], total_tokens) for n in names},
        "shards": [_shard_entry(m) for m in shards],
        "heldout": {
            n: _shard_entry(m)
            for n, m in zip([n for n in names if plans[n].heldout_documents], markers[layout.num_shards :], strict=True)
        },
    }


def _cutoffs(
    mix: MixWrite,
    key: str,
    ranges: dict[str, tuple[int, int]],
    targets: dict[str, int],
    by: str,
    exclude_heldout: dict[str, int] | None,
) -> dict[str, tuple[int, int, int]]:
    """Per bucket (cutoff, documents, tokens) below the cutoff: the whole range, or closest to its target."""
    if not ranges:
        return {}
    index_paths = mix.index_paths
    parts = mix.map(_histogram_job, [(p, key, ranges, exclude_heldout) for p in index_paths], "shards: histograms")
    merged = merge_histograms(parts)
    result: dict[str, tuple[int, int, int]] = {}
    boundaries = {}
    for bucket, (_low, high) in ranges.items():
        counts, tokens = merged.get(bucket, (None, None))
        if counts is None:
            result[bucket] = (high, 0, 0)
            continue
        target = targets.get(bucket)
        boundary = None if target is None else find_boundary(counts, tokens, target, by)
        if boundary is None:
            result[bucket] = (high, int(counts.sum()), int(tokens.sum()))
        else:
            boundaries[bucket] = boundary
    if boundaries:
        bins = {b: x.bin for b, x in boundaries.items()}
        rows = mix.map(_bin_rows_job, [(p, key, bins, exclude_heldout) for p in index_paths], "shards: cutoffs")
        for bucket, boundary in boundaries.items():
            keys = [k for part in rows for k in part.get(bucket, [[], []])[0]]
            tokens = [t for part in rows for t in part.get(bucket, [[], []])[1]]
            result[bucket] = cutoff_in_bin(boundary, keys, tokens, targets[bucket], by)
    return result


def _histogram_job(args: tuple) -> dict:
    return bk.key_histograms(*args)


def _bin_rows_job(args: tuple) -> dict:
    return bk.bin_rows(*args)


def _input_schema(path: str) -> pa.Schema:
    fs, inner = storage.filesystem(path)
    with fs.open(inner, "rb") as handle:
        return pq.read_schema(handle)


def _tokenizer_entry(reference: str, sha: str) -> dict[str, Any]:
    from .token_count import cached_tokenizer

    loaded = cached_tokenizer(reference)
    entry: dict[str, Any] = {"reference": reference, "sha256": sha, "vocab_size": loaded.get_vocab_size()}
    for key, token in (("bos_id", "<|begin_of_text|>"), ("eos_id", "<|end_of_text|>")):
        entry[key] = loaded.token_to_id(token)
    entry["special_tokens_counted"] = False
    return entry


def _bucket_plans(spec: WeightsSpec, summaries: list[dict[str, Any]]) -> dict[str, BucketPlan]:
    totals: dict[str, list[int]] = {}
    for summary in summaries:
        for name, counts in summary["buckets"].items():
            entry = totals.setdefault(name, [0, 0])
            entry[0] += counts["documents"]
            entry[1] += counts["tokens"]
    unknown = sorted(n for n in spec.buckets if n != OTHERS and n not in totals)
    if unknown:
        raise MixPlanError(f"bucket(s) {unknown} named in the weights are not in the run (buckets: {sorted(totals)})")
    plans = {}
    for name in sorted(totals):
        settings = spec.bucket(name)
        if settings is None:
            continue
        plans[name] = BucketPlan(
            name=name,
            max_epochs=settings.max_epochs,
            heldout_fraction=settings.heldout_fraction,
            heldout_max_documents=settings.heldout_max_documents,
            documents=totals[name][0],
            tokens=totals[name][1],
        )
    return plans


def _heldout_cutoffs(mix: MixWrite, plans: dict[str, BucketPlan]) -> None:
    ranges = {n: (0, bk.fraction_cutoff(p.heldout_fraction)) for n, p in plans.items() if p.heldout_fraction > 0}
    caps = {n: plans[n].heldout_max_documents for n in ranges if plans[n].heldout_max_documents is not None}
    for name, (cutoff, documents, tokens) in _cutoffs(mix, "heldout_key", ranges, caps, "count", None).items():
        plans[name].heldout_cutoff, plans[name].heldout_documents, plans[name].heldout_tokens = (
            cutoff,
            documents,
            tokens,
        )


def _sample_cutoffs(mix: MixWrite, plans: dict[str, BucketPlan]) -> None:
    partial = {n: (0, bk.KEY_SPACE) for n, p in plans.items() if p.remainder_tokens > 0}
    targets = {n: plans[n].remainder_tokens for n in partial}
    heldout = {n: p.heldout_cutoff for n, p in plans.items()}
    for name, (cutoff, documents, tokens) in _cutoffs(mix, "sample_key", partial, targets, "tokens", heldout).items():
        plans[name].sample_cutoff, plans[name].remainder_documents = cutoff, documents
        plans[name].remainder_selected_tokens = tokens


def _shard_count(
    spec: WeightsSpec, plans: dict[str, BucketPlan], summaries: list[dict], total_tokens: int
) -> tuple[int, float]:
    """(output shards, estimated output bytes): rows / shard_rows, or estimated bytes / shard_bytes.

    Output bytes are estimated as the input's bytes per token times the mix's tokens.
    """
    input_bytes = sum(s["bytes"] for s in summaries)
    input_tokens = max(1, sum(c["tokens"] for s in summaries for c in s["buckets"].values()))
    estimated = input_bytes / input_tokens * total_tokens
    if spec.shard_rows is not None:
        return max(1, math.ceil(sum(p.output_documents for p in plans.values()) / spec.shard_rows)), estimated
    target = spec.shard_bytes or 128_000_000
    return max(1, math.ceil(estimated / target)), estimated


def _bucket_entry(plan: BucketPlan, total_tokens: int) -> dict[str, Any]:
    return {
        "weight": plan.weight,
        "declared_share": plan.weight,
        "realised_share": plan.output_tokens / total_tokens if total_tokens else 0.0,
        "documents": plan.output_documents,
        "tokens": plan.output_tokens,
        "target_tokens": plan.target_tokens,
        "epochs": plan.output_tokens / plan.available_tokens if plan.available_tokens else 0.0,
        "whole_epochs": plan.whole_epochs,
        "available_documents": plan.available_documents,
        "available_tokens": plan.available_tokens,
        "max_epochs": plan.max_epochs,
        "heldout_documents": plan.heldout_documents,
        "heldout_tokens": plan.heldout_tokens,
    }


def _shard_entry(marker: dict[str, Any]) -> dict[str, Any]:
    return {k: marker[k] for k in ("path", "rows", "tokens", "bytes", "sha256")}


def _remove_stale(output_dir: str, wanted: set[str]) -> None:
    """Shards of an earlier plan in the same output directory (another shard count), and temporaries a killed
    writer left: not part of this mix. Every task has finished when this runs.

    One listing of names per folder (no file's details: a listing's cost, not a call per shard).
    """
    fs, root = storage.filesystem(output_dir)
    for folder in ("shards", "heldout"):
        try:
            paths = fs.ls(storage.join(root, folder), detail=False)
        except FileNotFoundError:
            continue
        for path in paths:
            relative = posixpath.join(folder, posixpath.basename(path))
            if relative.endswith(".parquet") and relative not in wanted:  # a killed writer's temporaries too
                fs.rm(path)
