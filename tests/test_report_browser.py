"""The HTML pages as a user sees them: a real run's report, a real mix report and a classifier evaluation, opened
in a headless Chromium (tests/browser.py). Every image and SVG renders, nothing is fetched from beyond file:/data:,
no chart text falls outside its SVG at a 760 px window, and the page's summary figures equal run.json's.

The report's content is checked here too: samples behind the rules (bounded, truncated, with the recorded
values), before/after snippets of an editing stage (PII masking), global phases in the timing, CPU per node.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser import Browser, probe
from run_helpers import copy_inputs, recipe_for
from test_mix_optimizer import optimise, shared_base, shared_run

from refinery.classifiers.evaluation_page import write_evaluation_page
from refinery.pipelines.report_page import table
from refinery.pipelines.report_samples import TEXT_LIMIT
from refinery.pipelines.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]
# A map segment, a global stage (phases), and an editing stage: ids, language scores and e-mails of real pages.
STAGES = [
    {"stage": "length", "min_chars": 200},
    {"stage": "language_id", "min_score": 0.5},
    {"stage": "exact_dedup"},
    {"stage": "pii"},
]


@pytest.fixture(scope="module")
def report_run(ray_local, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("report_run")
    copy_inputs(base / "in")
    result = run_recipe(recipe_for(base / "in", base / "run", stages=STAGES), show_progress=False)
    assert result.ok
    return base / "run"


@pytest.fixture(scope="module")
def browser():
    with Browser(width=760, height=900) as session:
        yield session


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_report_shows_samples_edits_and_phases(report_run: Path):
    report = json.loads((report_run / "report.json").read_text())
    run = json.loads((report_run / "run.json").read_text())
    samples = {s["segment"]: s for s in report["rule_samples"]}
    low_score = samples[0]["rules"]["language_id:low_score"]["documents"]
    assert low_score, "documents behind the language ID rule"
    for document in low_score:
        assert "lang_score" in document["values"], "the measured value the stage recorded"
        assert len(document["text"]) <= TEXT_LIMIT + 1
        assert document["chars"] <= TEXT_LIMIT or document["text"].endswith("…")
    language = next(step for step in report["funnel"] if step["stage"] == "language_id")
    assert language["parameters"]["min_score"] == 0.5, "the threshold beside the value"
    # the PII segment edited kept documents: counts beside the rejections, and a before/after of a mask
    pii_segment = next(s for s in run["segments"] if s["stages"][0]["stage"] == "pii")
    masked = {k: v for k, v in pii_segment["stages"][0]["counters"].items() if k.endswith("_masked")}
    assert sum(masked.values()) > 0
    pii = next(step for step in report["funnel"] if step["stage"] == "pii")
    assert pii["edits"] == masked
    edits = next(e for e in report["edit_samples"] if e["segment"] == pii_segment["index"])
    assert edits["documents"], "a before/after snippet of a masked document"
    added = "".join(text for doc in edits["documents"] for kind, text in doc["fragments"] if kind == "added")
    assert "<" in added and ">" in added, f"a mask placeholder replaces the PII: {added!r}"
    # global phases and the shard tasks' timeline
    timing = {s["segment"]: s for s in report["timing"]["segments"]}
    dedup = next(s for s in run["segments"] if s["kind"] == "global")
    assert timing[dedup["index"]]["phase_seconds"] == dedup["phase_seconds"] and dedup["phase_seconds"]
    assert report["timing"]["cpu_timeline"]["nodes"], "CPU per node from the completion markers"
    page = (report_run / "report.html").read_text()
    assert "keys" in page and "global phase" in page and "CPU use per node" in page
    assert "&lt;EMAIL&gt;" in page or "&lt;IP&gt;" in page or "&lt;PHONE&gt;" in page


def test_lists_say_how_many_they_leave_out():
    html = table(["rule", "documents"], [["a", "1"]], numeric=(1,), total=13, more_noun="more rules")
    assert "+12 more rules" in html and '<td class="num">1</td>' in html
    assert "more" not in table(["rule"], [["a"]], total=1)


def test_run_report_in_a_real_browser(report_run: Path, browser: Browser):
    seen = probe(browser, report_run / "report.html")
    assert seen["problems"] == {"images": [], "svgs": [], "remote": [], "clipped": []}, seen["problems"]
    assert seen["svgs"] >= 4, "documents, characters, time per stage, CPU per node"
    assert seen["overflow"] <= 0, "nothing wider than a 760 px window (wide tables scroll inside their box)"
    run = json.loads((report_run / "run.json").read_text())
    stages = [stage for segment in run["segments"] for stage in segment["stages"]]
    shown = seen["summary"]
    assert _number(shown["documents_in"]) == stages[0]["in"]
    assert _number(shown["documents_out"]) == stages[-1]["kept"]
    assert _number(shown["chars_in"]) == stages[0]["chars_in"]
    assert _number(shown["chars_out"]) == stages[-1]["chars_kept"]
    assert shown["fingerprint"] == run["fingerprint"]
    assert float(shown["wall_seconds"]) == run["wall_seconds"]


def test_the_browser_check_catches_remote_and_broken_content(tmp_path: Path, browser: Browser):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="http://example.invalid/x.png">'
        '<svg viewBox="0 0 100 20" width="100"><text x="90" y="14">clipped label</text></svg></body></html>'
    )
    problems = probe(browser, bad)["problems"]
    assert problems["remote"] == ["http://example.invalid/x.png"]
    assert problems["images"] == ["http://example.invalid/x.png"]
    assert problems["clipped"] == ["clipped label"]


def test_mix_report_in_a_real_browser_and_linked_from_the_run(ray_local, tmp_path_factory, browser: Browser):
    base = shared_base(tmp_path_factory)
    run = shared_run(base)
    report = optimise(base)
    page = base / "out" / "mix_report.html"
    seen = probe(browser, page)
    assert seen["problems"] == {"images": [], "svgs": [], "remote": [], "clipped": []}, seen["problems"]
    assert seen["images"] == 4 and seen["overflow"] <= 0
    scale = seen["summary"]["scale"]
    proxy = report["proxies"][0]
    assert f"{proxy['parameters']:,}" in scale and f"{proxy['steps']:,}" in scale and f"{proxy['tokens']:,}" in scale
    assert "seed" in seen["summary"]["verdict"]
    run_page = probe(browser, run / "report.html")
    assert run_page["problems"]["remote"] == [] and run_page["problems"]["clipped"] == []
    linked = [href for href in run_page["links"] if href.endswith("mix_report.html")]
    assert linked and (run / linked[0]).resolve() == page.resolve(), "the run report links the mix made from it"


def test_classifier_evaluation_page_in_a_real_browser(report_run: Path, tmp_path: Path, browser: Browser):
    committed = REPO / "classifiers" / "models" / "edu_fasttext" / "eval"
    result = json.loads((committed / "eval.json").read_text())
    shutil.copy(committed / "confusion.png", tmp_path / "confusion.png")
    page = write_evaluation_page(result, tmp_path, run_dir=str(report_run))  # as `eval-classifier --run RUN`
    seen = probe(browser, page)
    assert seen["problems"] == {"images": [], "svgs": [], "remote": [], "clipped": []}, seen["problems"]
    assert seen["images"] == 1 and seen["overflow"] <= 0
    text = page.read_text()
    for row in result["student"]["confusion"]:
        for value in row:
            assert f">{value:,}</td>" in text, "every confusion count is on the page"
    assert "length logreg" in text and "majority" in text and "ceiling" in text
    linked = [h for h in probe(browser, report_run / "report.html")["links"] if h.endswith("eval.html")]
    assert linked and (report_run / linked[0]).resolve() == page.resolve(), "the run report links the evaluation"


def test_the_mix_verdict_says_when_chosen_natural_and_uniform_overlap():
    from refinery.mixes.optimizer.report import spread_verdict

    def mix(mean: float, std: float) -> dict:
        return {"seeds": [0, 1, 2], "mean": mean, "std": std, "objective": [mean - std, mean, mean + std]}

    verdicts = spread_verdict({"chosen": mix(3.0, 0.1), "natural": mix(3.15, 0.1), "uniform": mix(3.5, 0.1)})
    assert "overlap" in verdicts["natural"] and "beats uniform" in verdicts["uniform"]
    one_seed = spread_verdict({"chosen": {"seeds": [0], "mean": 3.0, "std": 0.0}, "natural": mix(3.5, 0.0)})
    assert list(one_seed) == ["seeds"] and "not measured" in one_seed["seeds"]


def test_a_report_that_cannot_read_its_samples_still_draws_and_says_so(report_run: Path, tmp_path: Path):
    from refinery.pipelines.report import write_report

    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    for path in (copy / "segments" / "00" / "rejected").glob("*.parquet"):
        path.write_bytes(b"not parquet")  # damaged after the run finished
    report = write_report(str(copy))
    assert report["report_notes"], "the failure is named"
    assert report["funnel"] and report["overview"]["documents_in"] > 0, "the counts are still there"
    assert "could not be drawn" in (copy / "report.html").read_text()
