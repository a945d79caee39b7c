"""The scoring stages on Ray: scores land in the kept shards of a pipeline run (committed students)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from run_helpers import copy_inputs, output_digests, recipe_for

from refinery.classifiers.scoring import DomainClassifier, QualityClassifier
from refinery.pipelines.recipe import RecipeError, parse_recipe
from refinery.pipelines.runner import run_recipe

EDU = "package:refinery.classifiers/models/edu_fasttext"
DOMAIN = "package:refinery.classifiers/models/domain_fasttext"
TOPIC = "package:refinery.classifiers/models/topic_fasttext"


def test_quality_classifier_rejects_below_min_score(real_documents):
    batch = real_documents.slice(0, 200)
    scored = QualityClassifier(model_path=EDU).process(batch).kept
    threshold = float(pc.approximate_median(scored["quality_score"]).as_py())
    result = QualityClassifier(model_path=EDU, min_score=threshold).process(batch)
    assert result.kept.num_rows + result.rejected.num_rows == 200 and result.rejected.num_rows > 0
    assert pc.min(result.kept["quality_score"]).as_py() >= threshold
    assert set(result.rejected["reason"].to_pylist()) == {"quality_classifier:low_score"}


def test_domain_classifier_adds_domain_and_topic(real_documents):
    stage = DomainClassifier(domain_model_path=DOMAIN, topic_model_path=TOPIC)
    kept = stage.process(real_documents.slice(0, 100)).kept
    assert kept.num_rows == 100 and kept.schema.field("domain").type == pa.string()
    assert set(kept["domain"].to_pylist()) <= {"web", "code", "math", "multilingual"}
    assert kept["topic"].null_count == 0


def test_model_paths_are_checked_when_the_recipe_is_validated(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        recipe_for(tmp_path, tmp_path / "out", [{"stage": "quality_classifier", "model_path": str(tmp_path / "x")}])
    with pytest.raises(RecipeError, match=r"student\.json"):
        recipe_for(tmp_path, tmp_path / "out", [{"stage": "domain_classifier", "topic_model_path": str(tmp_path)}])


def test_scores_land_in_kept_shards_of_a_run(ray_local, tmp_path):
    copy_inputs(tmp_path / "in")
    stages = [
        {"stage": "length", "min_chars": 200},
        {"stage": "quality_classifier", "model_path": EDU},
        {"stage": "domain_classifier", "domain_model_path": DOMAIN, "topic_model_path": TOPIC},
        {
            "stage": "quality_percentile",
            "model_path": EDU,
            "column": "edu_score",
            "min_percentile": 0.25,
            "sample_size": 200,
        },
    ]
    recipe = recipe_for(tmp_path / "in", tmp_path / "out", stages)
    result = run_recipe(recipe, show_progress=False)
    assert result.ok
    kept = pq.read_table(tmp_path / "out" / "segments" / "01" / "kept")
    for column in ("quality_score", "domain", "topic", "edu_score"):
        assert kept[column].null_count == 0, column
    threshold = json.loads((tmp_path / "out/segments/01/work/threshold.json").read_text())
    assert threshold["min_percentile"] == 0.25 and threshold["sampled_documents"] > 0
    assert pc.min(kept["edu_score"]).as_py() >= threshold["threshold"]
    rejected = pq.read_table(tmp_path / "out" / "segments" / "01" / "rejected")
    assert rejected.num_rows > 0 and set(rejected["reason"].to_pylist()) == {"quality_percentile:below_percentile"}
    before = output_digests(tmp_path / "out")
    assert run_recipe(recipe, show_progress=False).summary["shards"]["processed"] == 0
    assert output_digests(tmp_path / "out") == before


def test_the_classify_recipe_validates():
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "llama3_classify.yaml"
    import yaml

    parsed = parse_recipe(yaml.safe_load(recipe.read_text()), recipe.parent)
    assert [s.stage_name for s in parsed.stages][-3:] == [
        "quality_classifier",
        "domain_classifier",
        "quality_percentile",
    ]
