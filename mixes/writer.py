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

Phases, each a bounded Ray map (see the modules for the details):

1. index (:mod:`refinery.mixes.buckets`): per input shard, bucket / tokens / seeded keys, and the sha256 of
   the input file (the run's fingerprint is the hash of those);
2. held-out cutoffs, token targets and sample cutoffs (:mod:`refinery.mixes.sampling`) from key histograms;
3. routing and assembly (:mod:`refinery.mixes.shard_writer`): every selected (document, epoch) is routed to
   an output shard by a seeded hash; one task per output shard writes it;
4. the manifest (:mod:`refinery.pipelines.manifest`), written last.

The same run directory, weights and seed give byte-identical shards and manifest; a rerun into the same
output directory redoes only shards that are missing, corrupt or from another plan.
"""

from __future__ import annotations

import hashlib
import math
import posixpath
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from refinery import pipelines
from refinery.pipelines import storage
from refinery.pipelines.executor import map_tasks
from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION, write_manifest
from refinery.pipelines.models import DEFAULT_TOKENIZER, file_sha256, tokenizer_file

from . import buckets as bk
from .sampling import BucketPlan, MixPlanError, assign_targets, cutoff_in_bin, find_boundary, merge_histograms
from .shard_writer import assemble_unit, output_schema, relative_shard_path, route_shard, unit_paths
from .weights import OTHERS, WeightsSpec, load_weights

WRITER_VERSION = 1
DEFAULT_ROW_GROUP_ROWS = 1000
MANIFEST_NAME = "manifest.json"


def ray_map(function: Callable[[Any], Any], items: list[Any], in_flight: int | None = None) -> list[Any]:
    """``function(item)`` for every item through the spine's executor (1 CPU each, bounded, results in order)."""
    return map_tasks(function, items, in_flight=in_flight)


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


def _fingerprint(data: Any) -> str:
    return storage.fingerprint(data)


def _cutoffs(
    index_paths: list[str],
    key: str,
    ranges: dict[str, tuple[int, int]],
    targets: dict[str, int],
    by: str,
    exclude_heldout: dict[str, int] | None,
) -> dict[str, tuple[int, int, int]]:
    """Per bucket (cutoff, documents, tokens) below the cutoff: the whole range, or closest to its target."""
    if not ranges:
        return {}
    parts = ray_map(_histogram_job, [(p, key, ranges, exclude_heldout) for p in index_paths])
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
        rows = ray_map(
            _bin_rows_job, [(p, key, {b: x.bin for b, x in boundaries.items()}, exclude_heldout) for p in index_paths]
        )
        for bucket, boundary in boundaries.items():
            keys = [k for part in rows for k in part.get(bucket, [[], []])[0]]
            tokens = [t for part in rows for t in part.get(bucket, [[], []])[1]]
            result[bucket] = cutoff_in_bin(boundary, keys, tokens, targets[bucket], by)
    return result


def _histogram_job(args: tuple) -> dict:
    return bk.key_histograms(*args)


def _bin_rows_job(args: tuple) -> dict:
    return bk.bin_rows(*args)


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
) -> Path:
    """Write the weighted, shuffled shards of ``run_dir`` to ``output_dir``; return the manifest's path.

    ``weights``: a weights YAML path, a dict of the same shape, or a :class:`WeightsSpec` (see
    :mod:`refinery.mixes.weights`). ``seed`` drives sampling, shard assignment and order (held-out sets use the
    weights' ``heldout_seed`` only). ``selection`` is stored verbatim in the manifest (how the weights were
    chosen). ``tokenizer`` counts tokens when the run has no ``n_tokens`` column (default: the recipe's
    ``token_count`` tokenizer, else the bundled Llama 3). ``address`` / ``num_cpus``: Ray as in ``refinery
    run`` (an already initialised Ray is used as is). ``megatron_blend``: also write a Megatron ``--data-path``
    blend file. Raises :class:`MixPlanError` (a ``ValueError``) naming the bucket when weights cannot be met.
    """
    from refinery.pipelines.ray_session import ray_session

    run_dir, output_dir = str(run_dir).rstrip("/"), str(output_dir).rstrip("/")
    spec = load_weights(weights)
    _run, recipe, kept = read_run(run_dir)
    tokenizer = recipe_tokenizer(recipe) or tokenizer or DEFAULT_TOKENIZER
    tokenizer_sha = file_sha256(tokenizer_file(tokenizer))
    work = storage.join(output_dir, "_work")
    inputs = [storage.join(run_dir, relative) for relative in kept]
    index_fingerprint = _fingerprint(
        {
            "v": WRITER_VERSION,
            "columns": spec.columns,
            "seed": seed,
            "heldout_seed": spec.heldout_seed,
            "tokenizer": tokenizer_sha,
        }
    )
    index_paths = [storage.join(work, "index", f"{i:05d}.parquet") for i in range(len(inputs))]
    with ray_session(address, num_cpus):
        index_jobs = [
            {
                "path": path,
                "index_path": index_paths[i],
                "marker_path": storage.join(work, "index", f"{i:05d}.json"),
                "columns": spec.columns,
                "tokenizer": tokenizer,
                "seed": seed,
                "heldout_seed": spec.heldout_seed,
                "fingerprint": index_fingerprint,
            }
            for i, path in enumerate(inputs)
        ]
        summaries = ray_map(bk.index_shard, index_jobs)
        run_fingerprint = hashlib.sha256(
            "".join(f"{rel}\x00{s['sha256']}\n" for rel, s in zip(kept, summaries, strict=True)).encode()
        ).hexdigest()
        plans = _plan_buckets(spec, summaries)
        _heldout_cutoffs(spec, plans, index_paths)
        total_tokens = assign_targets(spec, plans)
        _sample_cutoffs(plans, index_paths)
        num_shards = _shard_count(spec, plans, summaries, total_tokens)
        plan_fingerprint = _fingerprint(
            {
                "v": WRITER_VERSION,
                "run": run_fingerprint,
                "weights": spec.model_dump(mode="json"),
                "seed": seed,
                "tokenizer": tokenizer_sha,
                "row_group_rows": row_group_rows,
                "num_shards": num_shards,
            }
        )
        names = sorted(plans)
        heldout_units = {n: num_shards + i for i, n in enumerate(names)}
        routing_paths = [storage.join(work, "routing", f"{i:05d}.parquet") for i in range(len(inputs))]
        route_jobs = [
            {
                "index_path": index_paths[i],
                "routing_path": routing_paths[i],
                "marker_path": storage.join(work, "routing", f"{i:05d}.json"),
                "fingerprint": plan_fingerprint,
                "num_shards": num_shards,
                "buckets": {
                    n: {
                        "unit": heldout_units[n],
                        "whole_epochs": plans[n].whole_epochs,
                        "sample_cutoff": plans[n].sample_cutoff,
                        "heldout_cutoff": plans[n].heldout_cutoff,
                    }
                    for n in names
                    if plans[n].target_tokens > 0 or plans[n].heldout_cutoff > 0
                },
            }
            for i in range(len(inputs))
        ]
        ray_map(route_shard, route_jobs)
        schema = output_schema(_input_schema(inputs[0]))
        units = [(u, relative_shard_path(u)) for u in range(num_shards)]
        units += [
            (heldout_units[n], f"heldout/{bk.bucket_file_name(n)}.parquet") for n in names if plans[n].heldout_documents
        ]
        assemble_jobs = []
        for unit, relative in units:
            output_path, marker_path = unit_paths(output_dir, relative)
            assemble_jobs.append(
                {
                    "unit": unit,
                    "inputs": [list(pair) for pair in zip(inputs, routing_paths, strict=True)],
                    "output_path": output_path,
                    "marker_path": marker_path,
                    "path": relative,
                    "fingerprint": plan_fingerprint,
                    "schema": schema.serialize().to_pybytes(),
                    "row_group_rows": row_group_rows,
                }
            )
        markers = ray_map(assemble_unit, assemble_jobs)
    _remove_stale(output_dir, {relative for _, relative in units})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "producer": {
            "refinery_version": pipelines.__version__,
            "git_commit": git_commit(),
            "writer_version": WRITER_VERSION,
        },
        "recipe": {"fingerprint": recipe.get("fingerprint"), "recipe": recipe.get("recipe")},
        "run": {"fingerprint": run_fingerprint, "shards": len(kept), "documents": sum(s["rows"] for s in summaries)},
        "tokenizer": _tokenizer_entry(tokenizer, tokenizer_sha),
        "seed": seed,
        "bucket_column": spec.bucket_column,
        "selection": selection or {},
        "weights": spec.model_dump(mode="json"),
        "plan_fingerprint": plan_fingerprint,
        "total_tokens": sum(m["tokens"] for m in markers[:num_shards]),
        "total_documents": sum(m["rows"] for m in markers[:num_shards]),
        "buckets": {n: _bucket_entry(plans[n]) for n in names},
        "shards": [_shard_entry(m) for m in markers[:num_shards]],
        "heldout": {
            n: _shard_entry(m)
            for n, m in zip([n for n in names if plans[n].heldout_documents], markers[num_shards:], strict=True)
        },
    }
    manifest_path = write_manifest(output_dir, manifest, MANIFEST_NAME)
    if megatron_blend is not None:
        from .blend import megatron_blend as blend

        Path(megatron_blend).write_text(blend(manifest_path) + "\n")
    return manifest_path


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


def _plan_buckets(spec: WeightsSpec, summaries: list[dict[str, Any]]) -> dict[str, BucketPlan]:
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


def _heldout_cutoffs(spec: WeightsSpec, plans: dict[str, BucketPlan], index_paths: list[str]) -> None:
    ranges = {n: (0, bk.fraction_cutoff(p.heldout_fraction)) for n, p in plans.items() if p.heldout_fraction > 0}
    caps = {n: plans[n].heldout_max_documents for n in ranges if plans[n].heldout_max_documents is not None}
    for name, (cutoff, documents, tokens) in _cutoffs(index_paths, "heldout_key", ranges, caps, "count", None).items():
        plans[name].heldout_cutoff, plans[name].heldout_documents, plans[name].heldout_tokens = (
            cutoff,
            documents,
            tokens,
        )


def _sample_cutoffs(plans: dict[str, BucketPlan], index_paths: list[str]) -> None:
    partial = {n: (0, bk.KEY_SPACE) for n, p in plans.items() if p.remainder_tokens > 0}
    targets = {n: plans[n].remainder_tokens for n in partial}
    heldout = {n: p.heldout_cutoff for n, p in plans.items()}
    for name, (cutoff, documents, tokens) in _cutoffs(
        index_paths, "sample_key", partial, targets, "tokens", heldout
    ).items():
        plans[name].sample_cutoff, plans[name].remainder_documents = cutoff, documents
        plans[name].remainder_selected_tokens = tokens


def _shard_count(spec: WeightsSpec, plans: dict[str, BucketPlan], summaries: list[dict], total_tokens: int) -> int:
    """Output shards: rows / shard_rows, or estimated bytes / shard_bytes (input bytes per token x tokens)."""
    if spec.shard_rows is not None:
        return max(1, math.ceil(sum(p.output_documents for p in plans.values()) / spec.shard_rows))
    input_bytes = sum(s["bytes"] for s in summaries)
    input_tokens = max(1, sum(c["tokens"] for s in summaries for c in s["buckets"].values()))
    target = spec.shard_bytes or 128_000_000
    return max(1, math.ceil(input_bytes / input_tokens * total_tokens / target))


def _bucket_entry(plan: BucketPlan) -> dict[str, Any]:
    return {
        "weight": plan.weight,
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
    """Shards of an earlier plan in the same output directory (another shard count): not part of this mix."""
    fs, root = storage.filesystem(output_dir)
    for folder in ("shards", "heldout"):
        for path in fs.glob(storage.join(root, folder, "*.parquet")):
            relative = posixpath.join(folder, posixpath.basename(path))
            if relative not in wanted:
                fs.rm(path)
