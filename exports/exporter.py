"""``export_manifest``: a verified mix manifest → one trainer-format dataset per bucket, a blend and ``export.json``.

::

    from refinery.exports.exporter import export_manifest

    export_json = export_manifest("mixes/llama3-v1/manifest.json", "megatron", "exports/llama3-v1-megatron")

Phases, each a bounded Ray map of plain top-level functions (testable without Ray):

1. (Megatron) which bucket datasets are already complete (marker fingerprint, sizes, sha256);
2. a task per source file (:func:`refinery.exports.shard_task.export_source`): verify, tokenize, split by bucket;
3. (Megatron) a task per bucket dataset (:func:`refinery.exports.merge.merge_dataset`) concatenating the parts;
4. the blend files and ``export.json`` (written last), then the Megatron parts are removed.

Output layout (``SPLIT`` is ``train`` for the training shards and ``heldout`` for the held-out sets)::

    DIR/export.json                       lineage and every file's size and sha256 (refinery verify reads it)
    DIR/blend.json                        {split: [{"path": dataset, "weight": w}, ...]} (both formats)
    DIR/blend.txt, DIR/heldout_blend.txt  Megatron: "w1 train/web w2 train/code ..." for --data-path
    DIR/SPLIT/BUCKET.bin, .idx            Megatron: one indexed dataset per bucket
    DIR/SPLIT/BUCKET/part-NNNNN.ds        datatrove/nanotron: one folder per bucket, a file per source shard
    DIR/_work/                            markers (and, during a Megatron export, the parts)

The same manifest and format give byte-identical files; a rerun into the same folder redoes only what is missing
or corrupt (a killed export resumes the shards it had not finished).

``DIR`` and the manifest may be local paths or fsspec URLs (``s3://``, ``gs://``, ``file://``): every read and
write, marker, listing and removal goes through fsspec (:mod:`refinery.exports.location`), with the storage
contract of runs (a temporary name, then a move; the marker last). docs/export.md says what that guarantees on an
object store.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from refinery import pipelines
from refinery.mixes.buckets import bucket_file_name
from refinery.pipelines import storage
from refinery.pipelines.manifest import Manifest, location
from refinery.pipelines.models import file_sha256, tokenizer_file

from .formats import DATATROVE, FORMATS, FRAMING, MEGATRON, token_dtype
from .lineage import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, EXPORT_MANIFEST
from .location import files_under, process_memory, remove_tree, root_of
from .merge import dataset_is_done, merge_dataset
from .shard_task import ExportError, export_source

EXPORTER_VERSION = 1
TRAIN, HELDOUT = "train", "heldout"
DEFAULT_BATCH_ROWS = 1000


def _parallel_map(function: Any, items: list[Any], description: str, in_process: bool = False) -> list[Any]:
    """One task per item through the spine's executor (1 CPU each, bounded in flight, results in item order)."""
    if in_process:
        return [function(item) for item in items]
    from refinery.pipelines.executor import Resources, map_tasks

    return map_tasks(function, items, resources=Resources(cpus=1), description=description)


def _special_id(tokenizer: Any, manifest_id: int | None, token: str | None, role: str) -> int | None:
    if token is not None:
        found = tokenizer.token_to_id(token)
        if found is None:
            raise ExportError(f"the tokenizer has no {role} token {token!r}")
        return int(found)
    return manifest_id


def export_manifest(
    manifest_path: str | Path,
    export_format: str,
    output_dir: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    bos_token: str | None = None,
    eos_token: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    keep_parts: bool = False,
    in_process: bool = False,
    tokenizer_name: str | None = None,
) -> Path | str:
    """Export the manifest's training shards and held-out sets; return the path of ``export.json``.

    ``manifest_path`` and ``output_dir`` are local paths or fsspec URLs (``s3://...``, ``file://...``; a local
    path returns a ``Path``, a URL a string). Ray workers must reach both: ``memory://`` (this process's memory)
    works only with ``in_process``.

    ``bos_token`` / ``eos_token`` name the special tokens when the manifest's tokenizer is not Llama 3's (the
    manifest records ``bos_id`` / ``eos_id`` for ``<|begin_of_text|>`` / ``<|end_of_text|>``). ``batch_rows``:
    documents per tokenizer call (memory, not output). ``keep_parts`` keeps Megatron's per-shard parts.
    ``tokenizer_name``: what datatrove's ``.ds.metadata`` names as the tokenizer (nanotron loads it with
    ``AutoTokenizer.from_pretrained`` and compares it with its config's; default: the manifest's reference).
    ``in_process`` runs every task in this process, one after another, without Ray (debugging; the benchmark's
    per-core figures); the files are the same.
    Raises :class:`ExportError` (a ``ValueError``) when the manifest's files or tokenizer do not match it.
    """
    if export_format not in FORMATS:
        raise ExportError(f"unknown format {export_format!r}; expected one of {', '.join(FORMATS)}")
    from refinery.mixes.token_count import cached_tokenizer
    from refinery.pipelines.ray_session import ray_session

    manifest_path, output = location(manifest_path), location(output_dir)
    if not in_process and (process_memory(manifest_path) or process_memory(output)):
        raise ExportError(
            "memory:// lives in this process only and Ray workers cannot reach it: use a URL every worker can "
            "reach, or in_process=True"
        )
    root = root_of(output)
    source = Manifest.read(manifest_path)
    manifest = source.data()
    tokenizer_entry = manifest["tokenizer"]
    reference = tokenizer_entry["reference"]
    actual_sha = file_sha256(tokenizer_file(reference))
    if actual_sha != tokenizer_entry["sha256"]:
        raise ExportError(
            f"{reference}: sha256 {actual_sha[:12]}... but the manifest was counted with "
            f"{tokenizer_entry['sha256'][:12]}..."
        )
    tokenizer = cached_tokenizer(reference)
    framing = FRAMING[export_format]
    bos_id = _special_id(tokenizer, tokenizer_entry.get("bos_id"), bos_token, "BOS")
    eos_id = _special_id(tokenizer, tokenizer_entry.get("eos_id"), eos_token, "EOS")
    if (framing.bos and bos_id is None) or (framing.eos and eos_id is None):
        raise ExportError(f"{export_format} frames documents with BOS/EOS; name them with --bos-token/--eos-token")
    dtype = token_dtype(export_format, tokenizer.get_vocab_size())
    config = {
        "v": EXPORTER_VERSION,
        "format": export_format,
        "tokenizer": actual_sha,
        "bos": bos_id if framing.bos else None,
        "eos": eos_id if framing.eos else None,
        "dtype": dtype.name,
        "tokenizer_name": (tokenizer_name or reference) if export_format == DATATROVE else None,
    }
    entries = source.entries()
    jobs = []
    for index, entry in enumerate(e for e in entries if e.bucket is None):
        jobs.append(_source_job(source, entry, TRAIN, f"part-{index:05d}", None, f"{TRAIN}-{index:05d}"))
    for entry in (e for e in entries if e.bucket is not None):
        name = bucket_file_name(entry.bucket)
        jobs.append(_source_job(source, entry, HELDOUT, "part-00000", entry.bucket, f"{HELDOUT}-{name}"))
    for job in jobs:
        job.update(
            output_dir=root,
            format=export_format,
            tokenizer=reference,
            tokenizer_name=config["tokenizer_name"],
            dtype=dtype.name,
            bos_id=bos_id,
            eos_id=eos_id,
            batch_rows=batch_rows,
            fingerprint=storage.fingerprint(
                {**config, "source": job["source"], "sha256": job["sha256"], "split": job["split"]}
            ),
            marker_path=storage.join(root, "_work", "markers", f"{job.pop('marker')}.json"),
        )
    expected = _expected_datasets(manifest)
    output_fs, output_inner = storage.filesystem(root)
    output_fs.makedirs(output_inner, exist_ok=True)
    with nullcontext() if in_process else ray_session(address, num_cpus):
        dataset_jobs: dict[str, dict[str, Any]] = {}
        if export_format == MEGATRON:
            for key, (split, _bucket) in expected.items():
                sources = sorted(j["sha256"] for j in jobs if j["split"] == split)
                dataset_jobs[key] = {
                    "output_dir": root,
                    "prefix": key,
                    "dtype": dtype.name,
                    "fingerprint": storage.fingerprint({**config, "dataset": key, "sources": sources}),
                    "marker_path": storage.join(root, "_work", "markers", f"dataset-{key.replace('/', '-')}.json"),
                }
            keys = sorted(dataset_jobs)
            done = dict(
                zip(
                    keys,
                    _parallel_map(
                        dataset_is_done, [dataset_jobs[k] for k in keys], "export: check datasets", in_process
                    ),
                    strict=True,
                )
            )
            required = sorted(k for k, marker in done.items() if marker is None)
            for job in jobs:
                job["required"] = required
        markers = _parallel_map(export_source, jobs, "export: tokenize shards", in_process)
        _check_datasets(markers, expected)
        if export_format == MEGATRON:
            for key in required:
                dataset_jobs[key]["parts"] = [
                    {
                        "bin": m["outputs"][key]["token_file"],
                        "idx": m["outputs"][key]["token_file"].removesuffix(".bin") + ".idx",
                        "sha256": m["outputs"][key]["files"][m["outputs"][key]["token_file"]]["sha256"],
                    }
                    for m in markers
                    if key in m["outputs"]
                ]
            merged = _parallel_map(
                merge_dataset, [dataset_jobs[k] for k in required], "export: merge buckets", in_process
            )
            done.update(zip(required, merged, strict=True))
    datasets = _dataset_records(manifest, markers, expected, done if export_format == MEGATRON else None)
    blends = _write_blends(root, export_format, datasets)
    record = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "export_format": export_format,
        "producer": {
            "refinery_version": pipelines.__version__,
            "git_commit": _git_commit(),
            "exporter_version": EXPORTER_VERSION,
        },
        "source": {
            "manifest_sha256": storage.file_digest(manifest_path)[1],
            "plan_fingerprint": manifest.get("plan_fingerprint"),
            "run_fingerprint": manifest.get("run", {}).get("fingerprint"),
            "recipe_fingerprint": manifest.get("recipe", {}).get("fingerprint"),
        },
        "tokenizer": {
            "reference": reference,
            "sha256": actual_sha,
            "vocab_size": tokenizer.get_vocab_size(),
            "bos_id": bos_id,
            "eos_id": eos_id,
            "metadata_name": config["tokenizer_name"],
        },
        "framing": {"bos": framing.bos, "eos": framing.eos, "token_dtype": dtype.name},
        "datasets": [{k: v for k, v in d.items() if k != "file_records"} for d in datasets],
        "blends": {name: relative for name, (relative, _) in blends.items()},
        "sources": [
            {
                "path": m["source"],
                "sha256": m["sha256"],
                "documents": m["documents"],
                "content_tokens": m["content_tokens"],
            }
            for m in markers
        ],
        "files": _file_list(datasets, blends),
    }
    _remove_stale(root, {f["path"] for f in record["files"]})
    storage.write_json_file(storage.join(root, EXPORT_MANIFEST), record)
    if export_format == MEGATRON and not keep_parts:
        remove_tree(root, "_work/parts")
    return output / EXPORT_MANIFEST if isinstance(output, Path) else storage.join(root, EXPORT_MANIFEST)


def _source_job(source: Manifest, entry: Any, split: str, part: str, bucket: str | None, marker: str) -> dict[str, Any]:
    return {
        "source": entry.path,
        "source_path": _source_path(source.file(entry)),
        "bytes": entry.bytes,
        "sha256": entry.sha256,
        "rows": entry.rows,
        "tokens": entry.tokens,
        "split": split,
        "part": part,
        "bucket": bucket,
        "marker": marker,
    }


def _source_path(file: Path | str) -> str:
    """A shard's location for its task: an absolute local path (workers may run elsewhere), or its URL."""
    return str(file.resolve()) if isinstance(file, Path) else file


def _expected_datasets(manifest: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Every dataset the manifest says the shards hold: ``split/bucket-file-name`` → (split, bucket)."""
    expected = {
        f"{TRAIN}/{bucket_file_name(name)}": (TRAIN, name)
        for name, bucket in manifest.get("buckets", {}).items()
        if bucket.get("documents", 0) > 0
    }
    for name in manifest.get("heldout", {}):
        expected[f"{HELDOUT}/{bucket_file_name(name)}"] = (HELDOUT, name)
    return expected


def _check_datasets(markers: list[dict[str, Any]], expected: dict[str, tuple[str, str]]) -> None:
    found = {key for m in markers for key in m["outputs"]}
    if found != set(expected):
        raise ExportError(
            f"the shards hold buckets {sorted(found)}, the manifest lists {sorted(expected)}: "
            "a manifest and shards that disagree"
        )


def _dataset_records(
    manifest: dict[str, Any],
    markers: list[dict[str, Any]],
    expected: dict[str, tuple[str, str]],
    merged: dict[str, dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Per dataset: counts summed over the shards' outputs, its files, and its weight within its split."""
    records = []
    for key in sorted(expected):
        split, bucket = expected[key]
        outputs = [m["outputs"][key] for m in markers if key in m["outputs"]]
        if merged is not None:
            files = merged[key]["files"]
        else:
            files = {path: f for o in outputs for path, f in o["files"].items()}
        records.append(
            {
                "name": key,
                "split": split,
                "bucket": bucket,
                "manifest_weight": manifest["buckets"].get(bucket, {}).get("weight") if split == TRAIN else None,
                "documents": sum(o["documents"] for o in outputs),
                "tokens": sum(o["tokens"] for o in outputs),
                "content_tokens": sum(o["content_tokens"] for o in outputs),
                "files": sorted(files),
                "file_records": files,
            }
        )
    for split in (TRAIN, HELDOUT):
        total = sum(r["tokens"] for r in records if r["split"] == split)
        for r in records:
            if r["split"] == split:
                r["weight"] = round(r["tokens"] / total, 12) if total else 0.0
    return records


def _write_blends(root: str, export_format: str, datasets: list[dict[str, Any]]) -> dict[str, tuple[str, bytes]]:
    """``blend.json`` (both formats) and Megatron's ``--data-path`` files; {name: (relative path, bytes)}."""
    blends: dict[str, tuple[str, bytes]] = {}
    by_split = {
        split: [{"path": d["name"], "weight": d["weight"]} for d in datasets if d["split"] == split]
        for split in (TRAIN, HELDOUT)
    }
    blends["json"] = ("blend.json", (json.dumps(by_split, indent=1, sort_keys=True) + "\n").encode())
    if export_format == MEGATRON:
        for split, name in ((TRAIN, "blend.txt"), (HELDOUT, "heldout_blend.txt")):
            if by_split[split]:
                line = " ".join(f"{d['weight']:.8f} {d['path']}" for d in by_split[split])
                blends[split] = (name, (line + "\n").encode())
    fs, inner = storage.filesystem(root)
    for relative, data in blends.values():
        storage.write_bytes_atomic(fs, storage.join(inner, relative), data)
    return blends


def _file_list(datasets: list[dict[str, Any]], blends: dict[str, tuple[str, bytes]]) -> list[dict[str, Any]]:
    files = {path: record for d in datasets for path, record in d["file_records"].items()}
    for relative, data in blends.values():
        files[relative] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return [{"path": path, **files[path]} for path in sorted(files)]


def _remove_stale(root: str, wanted: set[str]) -> None:
    """Remove files of an earlier export into this folder that this export does not list (never ``_work``):
    another plan's datasets, and the temporaries a killed writer left (on an object store, a kill between the
    write and the copy to the final name). One listing per split folder."""
    fs, inner = storage.filesystem(root)
    for split in (TRAIN, HELDOUT):
        for relative in files_under(root, split):
            if relative not in wanted:
                fs.rm(storage.join(inner, relative))


def _git_commit() -> str | None:
    from refinery.mixes.writer import git_commit

    return git_commit()
