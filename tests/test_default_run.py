"""The README's first command: the default recipe (the Llama 3 chain) over the whole bundled sample corpus."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from refinery.pipelines.cli import DEFAULT_RECIPE
from refinery.pipelines.recipe import load_recipe
from refinery.pipelines.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]
LLAMA3_ORDER = [
    "ingest", "length", "language_id", "url_blocklist", "url_dedup", "exact_dedup", "minhash_dedup", "line_dedup",
    "adult_words", "dirty_words", "line_ngram_repetition",
    "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "token_kl", "pii",
]  # fmt: skip


def test_default_recipe_runs_the_llama3_chain_on_the_sample(ray_local, tmp_path):
    recipe = load_recipe(REPO / DEFAULT_RECIPE, {"output_dir": str(tmp_path / "run")})
    result = run_recipe(recipe, show_progress=False)
    assert result.ok, result.summary["accounting"]
    stages = [stage for segment in result.summary["segments"] for stage in segment["stages"]]
    assert [stage["stage"] for stage in stages] == LLAMA3_ORDER
    assert stages[0]["in"] > 2000, "every document of the sample corpus"
    for before, after in pairwise(stages):
        assert after["in"] == before["kept"]
    assert 0 < stages[-1]["kept"] < stages[0]["in"]
    assert sum(stage["rejected"] for stage in stages) > 1000
    assert (tmp_path / "run/segments/06/work/reference_unigram.parquet").exists()
    report = (tmp_path / "run/report.html").read_text()
    assert report.count("<svg") >= 3  # documents, characters, time per stage (+ dedup sections)
    assert "minhash" in report.lower(), "the MinHash cluster section is in the report"
