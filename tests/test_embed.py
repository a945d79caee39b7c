"""The ``embed`` stage and its encoder on real documents: unit norm, determinism, input order, agreement with
sentence-transformers, and the column in a real Ray run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.dedup.embed import EMBEDDING, EmbedStage, embedding_matrix
from refinery.dedup.encoder import CHARS_PER_TOKEN_BOUND, TextEncoder, encoder_dimension
from refinery.pipelines.executor import Resources
from refinery.pipelines.models import DEFAULT_ENCODER, resolve_model_path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(device="cpu", batch_size=16, max_tokens=128)  # 128 tokens: half the cost of 256


@pytest.fixture(scope="module")
def texts(real_documents: pa.Table) -> list[str]:
    """32 real documents (manual pages, handbook pages in several languages, licences, changelogs), cut to
    lengths from 30 to 2,000 characters so batches mix short and truncated documents."""
    rows = real_documents.column("text").to_pylist()
    picked = [rows[i] for i in np.linspace(0, len(rows) - 1, 32).astype(int)]
    lengths = np.geomspace(30, 2000, len(picked)).astype(int)[np.random.default_rng(1).permutation(len(picked))]
    return [text[:n] for text, n in zip(picked, lengths, strict=True)]


def test_dimension_is_read_from_config_without_loading(encoder: TextEncoder) -> None:
    assert encoder_dimension(DEFAULT_ENCODER) == encoder.dim == 384


def test_unit_norm_and_deterministic(encoder: TextEncoder, texts: list[str]) -> None:
    first = encoder.encode(texts)
    assert first.shape == (len(texts), 384) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert first.tobytes() == encoder.encode(texts).tobytes()
    other = TextEncoder(device="cpu", batch_size=16, max_tokens=128)
    assert first.tobytes() == other.encode(texts).tobytes()


def test_rows_stay_in_input_order(encoder: TextEncoder, texts: list[str]) -> None:
    """Batches are cut from the length-sorted order; each row must still be its own text's vector."""
    lengths = [len(encoder._tokenize([t])[0]) for t in texts]
    assert len(set(lengths)) > 5, "the sample must mix lengths or sorting is not exercised"
    batched = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts[:8]])
    np.testing.assert_allclose(batched[:8], alone, atol=1e-4)
    permutation = np.random.default_rng(0).permutation(len(texts))
    shuffled = encoder.encode([texts[i] for i in permutation])
    np.testing.assert_allclose(shuffled, batched[permutation], atol=1e-4)
    # distinct documents get distinct vectors (a bug that repeats one row would pass the checks above otherwise)
    assert np.min(np.linalg.norm(batched[:, None] - batched[None], axis=2) + np.eye(len(texts))) > 1e-3


def test_matches_sentence_transformers(encoder: TextEncoder, texts: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_model_path(DEFAULT_ENCODER)), device="cpu", local_files_only=True)
    assert model.max_seq_length == 256  # the model's own setting, which the stage's default max_tokens matches
    model.max_seq_length = encoder.max_tokens
    theirs = model.encode(texts, normalize_embeddings=True, batch_size=16)
    ours = encoder.encode(texts)
    assert float(np.min(np.sum(ours * theirs, axis=1))) > 0.999


def test_character_clip_never_changes_tokens(encoder: TextEncoder, texts: list[str]) -> None:
    """Long documents are clipped before tokenizing; the ids must equal tokenizing the whole text."""
    limit = encoder.max_tokens * CHARS_PER_TOKEN_BOUND
    long_word = "x" * (limit - 10) + "y" * 300 + " tail"  # one word across the clip: must be re-tokenized
    long_text = max(texts, key=len) * (1 + 2 * limit // max(len(max(texts, key=len)), 1))
    cases = [long_word, long_text, "", "short text"]
    full = encoder.tokenizer(cases, truncation=True, max_length=encoder.max_tokens)["input_ids"]
    assert encoder._tokenize(cases) == full
    assert len(long_text) > limit


def test_stage_declares_and_fills_the_column(texts: list[str]) -> None:
    stage = EmbedStage(device="cpu", batch_size=8)
    assert stage.added_columns() == [pa.field(EMBEDDING, pa.list_(pa.float16(), 384))]
    assert stage.resources() == Resources(cpus=1, gpus=0)
    assert EmbedStage(device="cuda").resources().gpus == 1
    batch = pa.table({"id": [str(i) for i in range(8)], "text": pa.array(texts[:8], pa.large_string())})
    result = stage.process(batch)
    assert result.kept.num_rows == 8 and result.rejected.num_rows == 0
    vectors = embedding_matrix(result.kept.column(EMBEDDING))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)


def test_bad_model_path_is_a_validation_error(tmp_path: Path) -> None:
    from refinery.pipelines.recipe import RecipeError, parse_recipe

    data = {
        "name": "x",
        "output_dir": str(tmp_path / "out"),
        "inputs": [{"name": "a", "format": "jsonl", "paths": ["a.jsonl"]}],
        "stages": [{"stage": "embed", "model_path": str(tmp_path / "missing-model")}],
    }
    with pytest.raises(RecipeError, match="model_path"):
        parse_recipe(data, tmp_path)


def test_embed_in_a_real_run_adds_the_column(ray_local, tmp_path: Path) -> None:
    from run_helpers import copy_inputs, recipe_for

    from refinery.pipelines.runner import run_recipe

    inputs = tmp_path / "inputs"
    copy_inputs(inputs)
    stages = [
        {"stage": "length", "min_chars": 200, "max_chars": 1000},
        {"stage": "embed", "device": "cpu", "max_tokens": 32, "batch_size": 32},
    ]
    result = run_recipe(recipe_for(inputs, tmp_path / "run", stages), show_progress=False)
    assert result.ok
    kept_files = sorted((tmp_path / "run" / "segments" / "00" / "kept").glob("*.parquet"))
    assert kept_files
    total = 0
    for path in kept_files:
        table = pq.read_table(path)
        assert table.schema.field(EMBEDDING).type == pa.list_(pa.float16(), 384)
        if table.num_rows:
            vectors = embedding_matrix(table.column(EMBEDDING))
            np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
        total += table.num_rows
    assert total > 20
    for stats_file in (tmp_path / "run" / "segments" / "00" / "stats").glob("*.json"):
        embed = next(s for s in json.loads(stats_file.read_text())["stages"] if s["stage"] == "embed")
        assert embed["kept"] == embed["in"] and embed["rejected"] == embed["errored"] == 0
