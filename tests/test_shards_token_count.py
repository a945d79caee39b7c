"""The token_count stage on real documents: Llama 3 counts without special tokens, validated tokenizer paths."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from refinery.mixes.shard_index import index_shard, read_index
from refinery.mixes.token_count import TokenCount
from refinery.pipelines.models import DEFAULT_TOKENIZER, load_tokenizer, tokenizer_file
from refinery.pipelines.recipe import RecipeError, parse_recipe


@pytest.fixture(scope="module")
def documents(real_documents: pa.Table) -> pa.Table:
    """Real documents of every source below 20k characters (long pages only cost time here)."""
    short = real_documents.filter(pc.less(pc.utf8_length(real_documents.column("text")), 20_000))
    return short.take(list(range(0, short.num_rows, max(1, short.num_rows // 200))))


def test_counts_match_the_rust_tokenizer_without_special_tokens(documents: pa.Table):
    result = TokenCount().process(documents)
    assert result.rejected.num_rows == 0 and result.kept.num_rows == documents.num_rows
    counts = result.kept.column("n_tokens").to_pylist()
    tokenizer = load_tokenizer(DEFAULT_TOKENIZER)
    texts = documents.column("text").to_pylist()
    for text, count in list(zip(texts, counts, strict=True))[:50]:
        assert count == len(tokenizer.encode(text, add_special_tokens=False).ids)
        assert count + 1 == len(tokenizer.encode(text).ids)  # the default adds <|begin_of_text|>
    assert result.kept.schema.field("n_tokens").type == pa.int32()
    assert sum(counts) > 10 * documents.num_rows


def test_same_file_as_a_user_path_or_folder(documents: pa.Table, tmp_path: Path):
    folder = tmp_path / "llama3"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(tokenizer_file(DEFAULT_TOKENIZER).read_bytes())
    default = TokenCount().process(documents.slice(0, 40)).kept.column("n_tokens")
    assert TokenCount(tokenizer=str(folder)).process(documents.slice(0, 40)).kept.column("n_tokens") == default
    assert (
        TokenCount(tokenizer=str(folder / "tokenizer.json")).process(documents.slice(0, 40)).kept["n_tokens"] == default
    )


def test_missing_tokenizer_fails_validation(tmp_path: Path):
    with pytest.raises(ValidationError, match="no such file"):
        TokenCount(tokenizer=str(tmp_path / "absent.json"))
    data = {
        "name": "t",
        "output_dir": str(tmp_path / "out"),
        "inputs": [{"name": "x", "format": "jsonl", "paths": [str(tmp_path / "*.jsonl")]}],
        "stages": [{"stage": "token_count", "tokenizer": "package:no_such_package/tokenizer.json"}],
    }
    with pytest.raises(RecipeError, match="token_count"):
        parse_recipe(data, tmp_path)


def test_index_counts_on_the_fly_like_the_stage(documents: pa.Table, tmp_path: Path):
    """A run without n_tokens: the mix index counts with the same code and gets the same numbers."""
    path = tmp_path / "kept.parquet"
    pq.write_table(documents, path, row_group_size=64)
    job = {
        "path": str(path),
        "index_path": str(tmp_path / "index.parquet"),
        "marker_path": str(tmp_path / "index.json"),
        "columns": ["source"],
        "tokenizer": DEFAULT_TOKENIZER,
        "seed": 0,
        "heldout_seed": 0,
        "fingerprint": "f",
    }
    summary = index_shard(job)
    index = read_index(job["index_path"])
    expected = TokenCount().process(documents).kept.column("n_tokens").to_pylist()
    assert index.column("n_tokens").to_pylist() == expected
    assert summary["rows"] == documents.num_rows and not summary["has_tokens"]
    assert sum(b["tokens"] for b in summary["buckets"].values()) == sum(expected)
    assert index_shard(job) == summary  # its marker: not recomputed
