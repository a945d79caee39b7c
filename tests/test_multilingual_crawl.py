"""A crawl of nine languages, most shards holding no English, through the default recipe (recipes/llama3.yaml).

The fixture (``tests/fixtures/multilingual_crawl``, built by ``scripts/build_world_corpus.py fixture``) holds
sections of real man pages in German, French, Spanish, Japanese, Russian, Chinese, Polish, Dutch and English,
one source and one shard per language, in WARC, JSONL and Parquet. The default recipe applies
``gopher_quality`` and ``c4_quality`` to English only: before the fix every all-German (or all-Japanese) batch
made ``per_language.py`` return ``rejected=None``, the shard task failed with ``AttributeError`` and the run
stopped before its first global stage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.pipelines.cli import DEFAULT_RECIPE
from refinery.pipelines.recipe import load_recipe
from refinery.pipelines.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]
CRAWL = REPO / "tests" / "fixtures" / "multilingual_crawl"


def crawl_inputs() -> list[dict]:
    inputs = json.loads((CRAWL / "recipe_inputs.json").read_text())
    return [{**spec, "paths": [str(CRAWL / p) for p in spec["paths"]]} for spec in inputs]


def test_fixture_is_multilingual_with_english_free_sources():
    contents = json.loads((CRAWL / "contents.json").read_text())
    languages = {source["language"] for source in contents["sources"].values()}
    assert len(languages - {"en"}) >= 8
    formats = {source["format"] for source in contents["sources"].values()}
    assert formats == {"warc", "jsonl", "parquet"}


def test_multilingual_crawl_through_the_default_recipe(ray_local, tmp_path):
    recipe = load_recipe(REPO / DEFAULT_RECIPE, {"output_dir": str(tmp_path / "run"), "inputs": crawl_inputs()})
    result = run_recipe(recipe, show_progress=False)
    summary = result.summary
    assert not result.failures, result.failures
    assert result.blocked is None, result.blocked
    assert result.ok, summary["accounting"]
    assert summary["outputs"]["complete"]
    segments = summary["segments"]
    assert len(segments) == 8, "all segments ran: 5 global stages, each ending a segment, and 3 of map stages"
    shard_count = len(crawl_inputs())
    for segment in segments:
        assert segment["shards"] == shard_count, f"segment {segment['index']}: a shard did not finish"
        for stage in segment["stages"]:
            assert stage["in"] == stage["kept"] + stage["rejected"] + stage["errored"], stage
    stages = {stage["stage"]: stage for segment in segments for stage in segment["stages"]}
    assert stages["ingest"]["in"] >= 200
    # the English-only rules rejected English documents only: the other languages passed them untouched
    rejected = pa.concat_tables(
        pq.read_table(p, columns=["lang", "reason"]) for p in (tmp_path / "run").glob("segments/*/rejected/*.parquet")
    )
    english_rules = [r.startswith(("gopher_quality:", "c4_quality:")) for r in rejected["reason"].to_pylist()]
    assert set(rejected.filter(pa.array(english_rules))["lang"].to_pylist()) <= {"en"}
    final = set()
    for path in (tmp_path / "run").glob(f"segments/{segments[-1]['index']:02d}/kept/*.parquet"):
        final.update(pq.read_table(path, columns=["lang"])["lang"].to_pylist())
    assert len(final - {"en"}) >= 8, f"non-English documents must survive the chain: {sorted(final)}"
    check_projection(str(tmp_path / "run"), summary)


def check_projection(run_dir: str, summary: dict) -> None:
    """``refinery project`` counts the global phases' seconds; a run predicts itself with no error."""
    from refinery.mixes.projection import compare_runs, project_run

    measured = {
        f"{seg['index']}:{p}": s for seg in summary["segments"] for p, s in seg.get("phase_seconds", {}).items()
    }
    assert len(measured) >= 5, "url, exact, MinHash, line dedup and token_kl phases are recorded"
    projection = project_run(run_dir, 1e9, sample_documents=50, cores=2)
    phases = [s for s in projection["stages"] if s["kind"] == "phase"]
    assert len(phases) == len(measured)
    assert projection["measured"]["phase_wall_seconds"] == pytest.approx(sum(measured.values()))
    parts = projection["stage_core_hours"] + projection["io_overhead_core_hours"] + projection["phase_core_hours"]
    assert projection["total_core_hours"] == pytest.approx(parts) and projection["phase_core_hours"] > 0
    itself = compare_runs(run_dir, run_dir)
    assert itself["scale"] == 1 and itself["total"]["error"] == 0
    assert itself["cpu_total"]["measured_seconds"] > 0 and itself["cpu_total"]["error"] == 0  # CPU is recorded
    assert all(
        summary_stage.get("cpu_seconds", 0) >= 0 for seg in summary["segments"] for summary_stage in seg["stages"]
    )
    assert all(
        seg.get("phase_cpu_seconds", {}).keys() == seg["phase_seconds"].keys()
        for seg in summary["segments"]
        if "phase_seconds" in seg
    )
    assert {row["name"].split("·")[1] for row in itself["rows"]} >= {"minhash_dedup:signatures", "token_kl"}
