"""Recipe validation: every mistake is caught before anything runs, with the stage, the field and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from refinery.pipelines.plan import plan_segments
from refinery.pipelines.recipe import RecipeError, load_recipe, parse_recipe

BASE = {
    "name": "t",
    "output_dir": "out",
    "inputs": [{"name": "web", "format": "jsonl", "paths": ["data/*.jsonl"]}],
}


def recipe(**changes):
    return parse_recipe({**BASE, **changes}, Path("/base"))


def test_relative_paths_resolve_against_the_recipe_folder():
    parsed = recipe()
    assert parsed.output_dir == "/base/out"
    assert parsed.inputs[0].paths == ["/base/data/*.jsonl"]
    url = recipe(inputs=[{"name": "web", "format": "jsonl", "paths": ["s3://bucket/x/*.jsonl"]}])
    assert url.inputs[0].paths == ["s3://bucket/x/*.jsonl"]


def test_unknown_stage_is_named_with_the_known_ones():
    with pytest.raises(RecipeError, match=r"stages\[0\]: unknown stage 'lenght'.*known stages: .*length"):
        recipe(stages=[{"stage": "lenght"}])


def test_misspelt_field_names_stage_and_field():
    with pytest.raises(RecipeError, match=r"stages\[1\] \(language_id\): min_scor: unknown field"):
        recipe(stages=[{"stage": "length"}, {"stage": "language_id", "min_scor": 0.5}])


def test_wrong_value_names_stage_field_and_expectation():
    with pytest.raises(RecipeError, match=r"stages\[0\] \(language_id\): min_score: .*less than or equal to 1"):
        recipe(stages=[{"stage": "language_id", "min_score": 7}])
    with pytest.raises(RecipeError, match=r"stages\[0\] \(length\): min_chars: expected an integer \(given: 'many'\)"):
        recipe(stages=[{"stage": "length", "min_chars": "many"}])
    with pytest.raises(RecipeError, match=r"max_chars \(10\) must be >= min_chars \(50\)"):
        recipe(stages=[{"stage": "length", "min_chars": 50, "max_chars": 10}])


def test_per_language_overrides_are_validated_like_the_stage():
    with pytest.raises(RecipeError, match=r"per_language.ja: min_chrs"):
        recipe(stages=[{"stage": "length", "per_language": {"ja": {"min_chrs": 3}}}])


def test_input_and_top_level_mistakes():
    with pytest.raises(RecipeError, match=r"inputs -> 0 -> format: Input should be 'warc', 'jsonl' or 'parquet'"):
        recipe(inputs=[{"name": "web", "format": "csv", "paths": ["a"]}])
    with pytest.raises(RecipeError, match=r"batch_sise: unknown field"):
        recipe(batch_sise=10)
    with pytest.raises(RecipeError, match="input names must be unique"):
        recipe(inputs=[BASE["inputs"][0], BASE["inputs"][0]])


def test_a_recipe_cannot_execute_code(tmp_path):
    malicious = tmp_path / "evil.yaml"
    malicious.write_text("name: !!python/object/apply:os.system ['touch pwned']\noutput_dir: x\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(malicious)
    assert not (tmp_path / "pwned").exists()


def test_map_stages_fuse_into_one_segment_and_fingerprint_tracks_parameters():
    a = recipe(stages=[{"stage": "length"}, {"stage": "language_id"}])
    b = recipe(stages=[{"stage": "length", "min_chars": 51}, {"stage": "language_id"}])
    segments = plan_segments(a.stages, a.fingerprint())
    assert [s.stage_names for s in segments] == [["ingest", "length", "language_id"]]
    assert segments[0].kept_schema.names[-2:] == ["lang", "lang_score"]
    assert a.fingerprint() != b.fingerprint()
    moved = recipe(stages=[{"stage": "length"}, {"stage": "language_id"}], output_dir="elsewhere")
    assert moved.fingerprint() == a.fingerprint(), "the output location does not change what is produced"


def test_shipped_recipes_are_valid():
    for path in sorted(Path(__file__).resolve().parents[1].glob("recipes/*.yaml")):
        assert load_recipe(path).stages, path
