"""Helpers for tests that run real recipes: small real inputs, recipes, and byte-level comparison of runs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from refinery.pipelines.recipe import Recipe, parse_recipe

SAMPLE = Path(__file__).resolve().parents[1] / "sample_corpus"
STAGES = [{"stage": "length", "min_chars": 200}, {"stage": "language_id", "min_score": 0.5}]


def copy_inputs(target: Path) -> dict[str, list[Path]]:
    """Copy one real shard of each format from the sample corpus (two WARC sources) into ``target``."""
    chosen = {
        "warc": sorted(SAMPLE.glob("warc/debian_handbook-0000[01].warc.gz"))
        + sorted(SAMPLE.glob("warc/postgresql_docs-00000.warc.gz")),
        "jsonl": sorted(SAMPLE.glob("jsonl/*-00000.jsonl.zst")),
        "parquet": sorted(SAMPLE.glob("parquet/*-00000.parquet")),
    }
    copied: dict[str, list[Path]] = {}
    for kind, paths in chosen.items():
        assert paths, f"sample corpus has no {kind} shard"
        (target / kind).mkdir(parents=True, exist_ok=True)
        copied[kind] = [Path(shutil.copy(p, target / kind / p.name)) for p in paths]
    return copied


def recipe_for(inputs_dir: Path, output_dir: Path, stages: list[dict] | None = None, **extra: Any) -> Recipe:
    data = {
        "name": "test",
        "output_dir": str(output_dir),
        "batch_size": 64,
        "inputs": [
            {"name": "web", "format": "warc", "paths": [str(inputs_dir / "warc" / "*.warc.gz")]},
            {"name": "copyright", "format": "jsonl", "paths": [str(inputs_dir / "jsonl" / "*.jsonl.zst")]},
            {"name": "changelog", "format": "parquet", "paths": [str(inputs_dir / "parquet" / "*.parquet")]},
        ],
        "stages": STAGES if stages is None else stages,
        **extra,
    }
    return parse_recipe(data, inputs_dir)


def recipe_file(path: Path, recipe: Recipe) -> Path:
    """Write a recipe as YAML-compatible JSON (JSON is YAML) for the CLI."""
    path.write_text(json.dumps(recipe.to_data()))
    return path


def output_digests(run_dir: Path) -> dict[str, str]:
    """sha256 of every deterministic output: the Parquet shards and per-shard stats (not markers, timings)."""
    digests = {}
    for path in sorted((run_dir / "segments").rglob("*")):
        relative = path.relative_to(run_dir)
        if path.is_file() and relative.parts[2] in ("kept", "rejected", "errors", "stats"):
            digests[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
