"""A real run on real files: nothing lost, reasons named, identical bytes whatever the parallelism."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from run_helpers import copy_inputs, output_digests, recipe_for
from warcio.archiveiterator import ArchiveIterator

from refinery.pipelines.cli import main as cli
from refinery.pipelines.runner import RunDirectoryConflict, run_recipe


def count_source_documents(inputs: dict[str, list[Path]]) -> int:
    """Documents in the inputs, counted independently of Refinery's readers."""
    total = 0
    for path in inputs["warc"]:
        with gzip.open(path, "rb") as raw, open(path, "rb") as stream:
            assert raw.read(4) == b"WARC"
            total += sum(1 for record in ArchiveIterator(stream) if record.rec_type == "response")
    for path in inputs["jsonl"]:
        text = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read().decode()
        total += sum(1 for line in text.splitlines() if line.strip())
    for path in inputs["parquet"]:
        total += pq.ParquetFile(path).metadata.num_rows
    return total


@pytest.fixture(scope="module")
def clean_run(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("accounting")
    inputs = copy_inputs(base / "in")
    recipe = recipe_for(base / "in", base / "out")
    result = run_recipe(recipe, show_progress=False)
    return base, inputs, recipe, result


def test_every_input_document_is_kept_rejected_or_errored(clean_run):
    base, inputs, _, _ = clean_run
    summary = json.loads((base / "out" / "run.json").read_text())
    assert summary["accounting"] == {"ok": True, "error": None}
    ingest, length, lid = summary["segments"][0]["stages"]
    assert ingest["stage"] == "ingest" and lid["stage"] == "language_id"
    assert ingest["in"] == count_source_documents(inputs)
    assert length["in"] == ingest["kept"] and lid["in"] == length["kept"]
    rows = {kind: 0 for kind in ("kept", "rejected", "errors")}
    for stats_file in sorted((base / "out/segments/00/stats").glob("*.json")):
        stats = json.loads(stats_file.read_text())
        for stage in stats["stages"]:
            assert stage["in"] == stage["kept"] + stage["rejected"] + stage["errored"], stats["shard"]
        for kind in rows:
            table = pq.read_table(base / "out/segments/00" / kind / f"{stats['shard']}.parquet")
            assert table.num_rows == stats["rows"][kind]
            rows[kind] += table.num_rows
    total_rejected = sum(s["rejected"] for s in summary["segments"][0]["stages"])
    total_errored = sum(s["errored"] for s in summary["segments"][0]["stages"])
    assert rows == {"kept": lid["kept"], "rejected": total_rejected, "errors": total_errored}
    assert rows["kept"] + rows["rejected"] + rows["errors"] == ingest["in"]


def test_rejected_rows_name_their_stage_and_rule(clean_run):
    base, _, _, result = clean_run
    rejected = pq.read_table(base / "out/segments/00/rejected").to_pylist()
    reasons = {row["reason"] for row in rejected}
    assert all(re.fullmatch(r"[a-z_]+:[a-z_]+", reason) for reason in reasons), reasons
    assert "ingest:non_html" in reasons, "the sample WARCs carry non-HTML responses"
    assert any(reason.startswith("length:") for reason in reasons)
    by_reason = result.summary["segments"][0]["stages"]
    counted = {rule: n for stage in by_reason for rule, n in stage["reasons"].items()}
    assert counted == {reason: sum(1 for r in rejected if r["reason"] == reason) for reason in reasons}


def test_kept_shards_carry_the_declared_schema_and_stable_ids(clean_run):
    base, _, _, _ = clean_run
    kept = pq.read_table(base / "out/segments/00/kept")
    assert kept.schema.names == ["id", "text", "source", "url", "date", "lang", "lang_score"]
    ids = kept.column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert {i.split("/")[0] for i in ids} == {"web", "copyright", "changelog"}
    assert kept.column("date").null_count < kept.num_rows


def test_output_is_byte_identical_across_runs_and_parallelism(clean_run):
    base, _, _, _ = clean_run
    serial = recipe_for(base / "in", base / "serial")
    run_recipe(serial, max_in_flight=1, show_progress=False)
    assert output_digests(base / "serial") == output_digests(base / "out")


def test_rerun_resumes_and_a_different_recipe_is_refused(clean_run):
    base, _, recipe, _ = clean_run
    before = output_digests(base / "out")
    victim = sorted((base / "out/segments/00/done").glob("*.json"))[0]
    victim.unlink()
    kept = base / "out/segments/00/kept" / victim.name.replace(".json", ".parquet")
    kept.write_bytes(b"half a file")
    result = run_recipe(recipe, show_progress=False)
    assert result.summary["shards"]["processed"] == 1
    assert result.summary["shards"]["resumed"] == result.summary["shards"]["shards"] - 1
    assert output_digests(base / "out") == before
    other = recipe_for(base / "in", base / "out", stages=[{"stage": "length", "min_chars": 10}])
    with pytest.raises(RunDirectoryConflict, match="holds a run of another recipe"):
        run_recipe(other, show_progress=False)


def test_report_shows_funnel_rules_and_time(clean_run):
    base, _, _, _ = clean_run
    (base / "out" / "report.html").unlink()
    assert cli(["report", str(base / "out")]) == 0
    page = (base / "out" / "report.html").read_text()
    assert page.count("<svg") == 4 and "0·language_id" in page and "ingest:non_html" in page  # + CPU per node
    report = json.loads((base / "out" / "report.json").read_text())
    assert [step["stage"] for step in report["funnel"]] == ["ingest", "length", "language_id"]
    assert all(step["seconds"] >= 0 for step in report["funnel"])
    for step in report["funnel"]:
        counts = [count for _, count in step["top_rules"]]
        assert counts == sorted(counts, reverse=True), "top rules come most frequent first"
