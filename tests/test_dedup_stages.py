"""Dedup stages on real documents with planted duplicates: reasons, twins, line edits, determinism, recovery."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pytest
from dedup_corpus import BOILERPLATE, all_stages, build, recipe
from run_helpers import output_digests

from refinery.pipelines.recipe import parse_recipe
from refinery.pipelines.runner import run_recipe


def run(inputs, output, stages, **options):
    parsed = parse_recipe(recipe(inputs, output, stages), inputs)
    return run_recipe(parsed, show_progress=False, **options)


def rejected(output, segment):
    return {r["id"]: r for r in ds.dataset(output / f"segments/{segment:02d}/rejected").to_table().to_pylist()}


def assert_twins_kept(output, segment, rejected_rows, column):
    """Every removed document names a twin that the same stage kept."""
    kept = set(ds.dataset(output / f"segments/{segment:02d}/kept").to_table().column("id").to_pylist())
    assert all(row[column] in kept for row in rejected_rows.values())


@pytest.fixture(scope="module")
def corpus(ray_local, real_documents, tmp_path_factory):
    base = tmp_path_factory.mktemp("dedup")
    planted = {name: f"web/{local}" for name, local in build(real_documents, base / "in").items()}
    result = run(base / "in", base / "clean", all_stages(4))
    assert result.ok
    return base, planted, output_digests(base / "clean")


def test_known_duplicates_removed_with_reasons_and_twins(corpus):
    base, planted, _ = corpus
    out = base / "clean"
    url = rejected(out, 1)
    assert set(url) == {planted["recrawl_old"]}
    assert url[planted["recrawl_old"]]["reason"] == "url_dedup:older_crawl"
    assert url[planted["recrawl_old"]]["url_duplicate_of"] == planted["recrawl_new"]
    exact = rejected(out, 2)  # the sample corpus has exact duplicates of its own, too
    assert exact[planted["exact_copy"]]["exact_duplicate_of"] == planted["exact_original"]
    assert {v["reason"] for v in exact.values()} == {"exact_dedup:duplicate"}
    assert_twins_kept(out, 2, exact, "exact_duplicate_of")
    lines = rejected(out, 3)
    assert set(lines) == {planted["empty_after_lines"]}
    assert lines[planted["empty_after_lines"]]["text"] == BOILERPLATE, "a rejected row keeps the text it came with"
    kept_texts = ds.dataset(out / "segments/03/kept").to_table().column("text").to_pylist()
    assert not any(BOILERPLATE in t for t in kept_texts), "the boilerplate line is removed from every document"
    counters = {}
    for stats in (out / "segments/03/stats").glob("*.json"):
        for key, value in json.loads(stats.read_text())["stages"][-1]["counters"].items():
            counters[key] = counters.get(key, 0) + value
    before = {r["id"]: r["text"] for r in ds.dataset(out / "segments/02/kept").to_table().to_pylist()}
    after = {r["id"]: r["text"] for r in ds.dataset(out / "segments/03/kept").to_table().to_pylist()}
    assert counters["chars_removed"] == sum(len(before[i]) - len(text) for i, text in after.items())
    assert counters["lines_removed"] >= 10
    near = rejected(out, 4)
    assert near[planted["near_copy"]]["minhash_duplicate_of"] == planted["near_original"]
    assert {v["reason"] for v in near.values()} == {"minhash_dedup:duplicate"}
    assert_twins_kept(out, 4, near, "minhash_duplicate_of")
    kept = ds.dataset(out / "segments/04/kept").to_table()
    clustered = {r["id"]: r["minhash_cluster"] for r in kept.to_pylist() if r["minhash_cluster"]}
    assert clustered[planted["near_original"]] == planted["near_original"]
    assert all(v["minhash_cluster"] == v["minhash_duplicate_of"] for v in near.values())
    summary = json.loads((out / "segments/04/work/summary/minhash_clusters.json").read_text())
    assert summary["removed"] == len(near) and summary["clusters"] == len(clustered)
    assert sum(int(size) * count for size, count in summary["size_histogram"].items()) == len(near) + len(clustered)
    assert summary["component_rounds"] >= 3 and summary["examples"]


def test_same_output_with_other_partitions_and_workers(corpus, tmp_path):
    base, _, clean = corpus
    run(base / "in", tmp_path / "p16", all_stages(16), max_in_flight=1)
    assert output_digests(tmp_path / "p16") == clean


def test_corrupted_intermediate_is_detected_and_recomputed(corpus, tmp_path, capsys):
    base, _, clean = corpus
    out = tmp_path / "corrupt"
    run(base / "in", out, all_stages(4))
    work = out / "segments/04/work"
    victim = sorted((work / "edges/rows").glob("part-*/*.parquet"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    (work / "_phases/components-r00.json").unlink()  # as if the run had died right after the edges phase
    for marker in (out / "segments/04/done").glob("*.json"):
        marker.unlink()
    run(base / "in", out, all_stages(4))
    assert "recomputing phase 'edges' of minhash_dedup" in capsys.readouterr().out
    assert output_digests(out) == clean


def test_partition_phase_interrupted_midway_then_resumed(corpus, tmp_path):
    """As a run killed while the ``pairs`` shuffle was half written: later markers gone, some writers' files gone,
    a half-written temporary file left behind. The resumed run recomputes from there and matches a clean run."""
    base, _, clean = corpus
    out = tmp_path / "interrupted"
    run(base / "in", out, all_stages(4))
    work = out / "segments/04/work"
    for marker in (work / "_phases").glob("*.json"):
        if marker.stem != "signatures":
            marker.unlink()
    indexes = sorted((work / "pairs/rows/_index").glob("*.json"))
    for index in indexes[len(indexes) // 2 :]:
        index.unlink()
    for part in sorted((work / "pairs/rows").glob("part-*"))[:2]:
        for file in part.glob("*.parquet"):
            file.unlink()
    (work / "pairs/rows/.tmp-0123456789ab-w000001.parquet").write_bytes(b"PAR1 half written")
    for done in (out / "segments/04").glob("*/*.json"):
        if done.parent.name in ("done", "stats"):
            done.unlink()
    run(base / "in", out, all_stages(4))
    assert output_digests(out) == clean
