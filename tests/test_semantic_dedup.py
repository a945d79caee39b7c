"""semantic_dedup (SemDeDup) on real documents with planted near-duplicates: the exact greedy rule per ε, the
decision in a real Ray run, the same bytes with 1 and 2 workers, resume from phase markers, validated reads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.dedup.semantic.report import semantic_report_html
from refinery.dedup.semantic.sample import quotas
from refinery.dedup.semantic.similarity import cluster_decisions


def brute_force(vectors: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The rule as written in the paper, one document at a time with a full similarity matrix."""
    sims = vectors @ vectors.T
    kept = np.zeros(len(vectors), dtype=bool)
    best = np.full(len(vectors), -np.inf)
    for j in range(len(vectors)):
        earlier = np.flatnonzero(kept[:j])
        best[j] = sims[j, earlier].max() if len(earlier) else -np.inf
        kept[j] = best[j] <= threshold
    return kept, best


def planted_vectors(seed: int = 0, n: int = 300, dim: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim)).astype(np.float32)
    for source in rng.choice(n, size=60, replace=False):  # chains of near-copies at graded distances
        target = rng.integers(n)
        base[target] = base[source] + rng.normal(scale=rng.uniform(0.02, 0.6), size=dim)
    return base / np.linalg.norm(base, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk", [16, 37, 1000])
def test_one_pass_equals_the_greedy_rule_for_every_epsilon(chunk: int) -> None:
    vectors = planted_vectors()
    epsilons = [0.01, 0.02, 0.05, 0.1, 0.3]
    thresholds = np.array([1 - e for e in epsilons])
    result = cluster_decisions(vectors, thresholds, chunk)
    removed_counts = []
    for e, threshold in enumerate(thresholds):
        kept, best = brute_force(vectors, threshold)
        np.testing.assert_array_equal(result.kept[e], kept)
        np.testing.assert_allclose(result.best[e], best, atol=1e-5)
        removed = np.flatnonzero(~kept)  # duplicate_of points at a kept earlier document above the threshold
        assert np.all(result.best_index[e, removed] < removed)
        assert np.all(result.kept[e, result.best_index[e, removed]])
        removed_counts.append(len(removed))
    assert removed_counts == sorted(removed_counts) and removed_counts[0] < removed_counts[-1]
    any_max = np.array([(vectors[:j] @ vectors[j]).max() if j else -np.inf for j in range(len(vectors))])
    np.testing.assert_allclose(result.any_max, any_max, atol=1e-5)


def test_sample_quotas_are_proportional_and_exact() -> None:
    assert quotas([100, 300, 0, 600], 100) == [10, 30, 0, 60]
    assert sum(quotas([7, 13, 29], 10)) == 10
    assert quotas([3, 4], 100) == [3, 4]


SYNONYMS = {
    "the": "this",
    "is": "is actually",
    "use": "employ",
    "file": "document",
    "command": "instruction",
    "function": "routine",
    "returns": "gives back",
    "value": "result",
    "example": "sample",
    "data": "information",
    "server": "host",
    "can": "may",
}


def paraphrase(text: str, rng: np.random.Generator) -> str:
    """A paraphrase-like edit: some words swapped for near-synonyms, a sentence of the second half dropped, case
    and spacing changed, a word appended."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if word.lower() in SYNONYMS and rng.random() < 0.3:
            words[i] = SYNONYMS[word.lower()]
    edited = " ".join(words)
    sentences = re.split(r"(?<=[.!?])\s+", edited)
    if len(sentences) > 3:
        del sentences[int(rng.integers(len(sentences) // 2, len(sentences) - 1))]
    edited = " ".join(sentences).replace("\n\n", "\n")
    return edited[:1] + edited[1:40].lower() + edited[40:] + " (revised)"


@pytest.fixture(scope="module")
def planted_corpus(real_documents: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two JSONL shards of real English pages (120, cut to 1,500 characters); 16 of them have a paraphrased copy
    in the other shard."""
    table = real_documents.filter(pa.compute.equal(real_documents.column("lang"), "en"))
    seen, originals = set(), []
    for text in table.column("text").to_pylist():
        text = text[:1500]
        if len(text) >= 500 and text[:120] not in seen:
            seen.add(text[:120])
            originals.append(text)
    originals = originals[:120]
    rng = np.random.default_rng(7)
    folder = tmp_path_factory.mktemp("semantic") / "inputs"
    folder.mkdir()
    half = len(originals) // 2
    pairs = {}
    shards = {"a": [], "b": []}
    for i, text in enumerate(originals):
        shards["a" if i < half else "b"].append({"id": f"o{i:03d}", "text": text})
    for i in list(range(8)) + list(range(half, half + 8)):
        shards["b" if i < half else "a"].append({"id": f"p{i:03d}", "text": paraphrase(originals[i], rng)})
        pairs[f"docs/o{i:03d}"] = f"docs/p{i:03d}"
    for name, rows in shards.items():
        with open(folder / f"docs-{name}.jsonl", "w") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return {"inputs": folder, "pairs": pairs, "documents": len(originals) + len(pairs)}


def semantic_recipe(inputs: Path, output: Path):
    from refinery.pipelines.recipe import parse_recipe

    data = {
        "name": "semantic",
        "output_dir": str(output),
        "batch_size": 40,
        "inputs": [{"name": "docs", "format": "jsonl", "paths": [str(inputs / "*.jsonl")], "id_field": "id"}],
        "stages": [
            {"stage": "embed", "device": "cpu", "max_tokens": 64, "batch_size": 32},
            {
                "stage": "semantic_dedup",
                "n_clusters": 4,
                "sample_size": 120,
                "partitions": 3,
                "chunk_size": 16,
                "epsilon": 0.1,
                "examples": 3,
            },
        ],
    }
    return parse_recipe(data, inputs)


def decided(run_dir: Path) -> tuple[pa.Table, pa.Table]:
    kept = pa.concat_tables(pq.read_table(p) for p in sorted((run_dir / "segments/01/kept").glob("*.parquet")))
    rejected = pa.concat_tables(pq.read_table(p) for p in sorted((run_dir / "segments/01/rejected").glob("*.parquet")))
    return kept, rejected


@pytest.fixture(scope="module")
def first_run(ray_local, planted_corpus: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from refinery.pipelines.runner import run_recipe

    output = tmp_path_factory.mktemp("semantic-run") / "run"
    assert run_recipe(semantic_recipe(planted_corpus["inputs"], output), show_progress=False).ok
    return output


def test_planted_paraphrases_are_removed(first_run: Path, planted_corpus: dict) -> None:
    kept, rejected = decided(first_run)
    assert kept.num_rows + rejected.num_rows == planted_corpus["documents"]
    assert set(rejected.column("reason").to_pylist()) == {"semantic_dedup:duplicate"}
    ids, targets = rejected.column("id").to_pylist(), rejected.column("semantic_duplicate_of").to_pylist()
    duplicate_of = dict(zip(ids, targets, strict=True))
    for original, copy in planted_corpus["pairs"].items():
        removed = [d for d in (original, copy) if d in duplicate_of]
        assert len(removed) == 1, f"exactly one of {original}, {copy} must go"
        assert duplicate_of[removed[0]] in (original, copy)
    assert rejected.num_rows < 2 * len(planted_corpus["pairs"]), "SemDeDup at ε=0.1 must not remove most pages"
    assert kept.column("semantic_duplicate_of").null_count == kept.num_rows
    assert kept.column("semantic_cluster").null_count == 0
    similarity = rejected.column("semantic_similarity").to_numpy()
    assert np.all(similarity > 0.9)


def test_summary_and_report(first_run: Path, planted_corpus: dict) -> None:
    summary = json.loads((first_run / "segments/01/work/report/semantic_summary.json").read_text())
    assert summary["documents"] == planted_corpus["documents"]
    removed = [row["removed"] for row in summary["removals"]]
    assert [row["epsilon"] for row in summary["removals"]] == [0.01, 0.02, 0.05, 0.1]
    assert removed == sorted(removed)
    _, rejected = decided(first_run)
    assert removed[3] == rejected.num_rows  # the decision ε's count is the rows actually rejected
    assert sum(b["clusters"] for b in summary["cluster_size_histogram"]) == summary["clusters_nonempty"]
    pair = summary["examples"]["removed"][0]
    assert pair["doc"]["snippet"] and pair["other"]["snippet"]
    page = semantic_report_html(summary)
    assert "0.1 <b>(decision)</b>" in page and pair["doc"]["id"] in page


def test_same_bytes_with_one_worker(first_run: Path, planted_corpus: dict, tmp_path: Path) -> None:
    """The global stage from scratch with one task at a time (the embeddings of the first run are reused)."""
    from run_helpers import output_digests

    from refinery.pipelines.runner import run_recipe

    output = tmp_path / "run"
    (output / "segments").mkdir(parents=True)
    shutil.copy(first_run / "recipe.json", output / "recipe.json")
    shutil.copytree(first_run / "segments/00", output / "segments/00")
    assert run_recipe(semantic_recipe(planted_corpus["inputs"], output), max_in_flight=1, show_progress=False).ok
    assert output_digests(output) == output_digests(first_run)
    for phase in ("kmeans/centroids.parquet", "similarity/stats.json", "report/semantic_summary.json"):
        ours, theirs = output / "segments/01/work" / phase, first_run / "segments/01/work" / phase
        assert ours.read_bytes() == theirs.read_bytes()


def test_resume_skips_finished_phases_and_recomputes_corrupted_ones(
    ray_local, first_run: Path, planted_corpus: dict, tmp_path: Path
) -> None:
    from run_helpers import output_digests

    from refinery.pipelines.runner import run_recipe

    output = tmp_path / "run"
    shutil.copytree(first_run, output)
    work = output / "segments/01/work"
    expected = output_digests(first_run)
    # a run killed after the assign phase: later markers, decisions and the decision segment are gone
    (work / "_phases/similarity.json").unlink()
    (work / "_phases/report.json").unlink()
    shutil.rmtree(output / "segments/01/done")
    kept_sample = {p: p.stat().st_mtime_ns for p in (work / "sample").glob("*.parquet")}
    kept_assign = {p: p.stat().st_mtime_ns for p in (work / "assign").rglob("*.parquet")}
    # and one assign partition file was damaged on disk: its reader must notice and the phase be redone
    damaged = sorted((work / "assign").rglob("*.parquet"))[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    recipe = semantic_recipe(planted_corpus["inputs"], output)
    assert run_recipe(recipe, show_progress=False).ok
    assert output_digests(output) == expected
    assert all(p.stat().st_mtime_ns == t for p, t in kept_sample.items()), "the sample phase was recomputed"
    assert damaged.read_bytes() == (first_run / damaged.relative_to(output)).read_bytes()
    assert any(p.stat().st_mtime_ns != t for p, t in kept_assign.items())


def test_keep_order_policies() -> None:
    from refinery.dedup.semantic.similarity import keep_order

    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "cluster": pa.array([1, 0, 1, 1, 0], pa.int32()),
            "distance": pa.array([0.1, 0.2, 0.3, 0.3, 0.2], pa.float32()),
            "quality_score": pa.array([0.9, None, 0.1, 0.5, 0.4], pa.float32()),
        }
    )
    ids = table.column("id").to_pylist()
    farthest = [ids[i] for i in keep_order(table, "farthest_from_centroid")]
    assert farthest == ["b", "e", "c", "d", "a"]  # by cluster; farthest first; ties by id
    assert [ids[i] for i in keep_order(table, "quality_score")] == ["e", "b", "a", "d", "c"]  # nulls last
