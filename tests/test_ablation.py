"""`refinery ablate` on a real run: put-back changes the training data, targets stay clean, a kill resumes.

The run is the mix optimizer tests' shared run (five sample shards, length + language ID + token_count); the
ablation puts back language ID's rejections, plus the unfiltered variant, at two seeds with the `tiny` preset.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_mix_optimizer import kill_session, shared_base, shared_run

from refinery.mixes.ablation.config import AblateConfigError, load_config
from refinery.mixes.ablation.results import ablation_table, verdict

CONFIG = {
    "name": "test",
    "variants": [{"stages": ["language_id"]}],
    "include_unfiltered": True,
    "seeds": [0, 1],
    "shards": 4,
    "heldout": {"column": "source", "fraction": 0.1, "max_documents": 20},
    "proxy": {"config": "tiny", "token_budget": 2048, "eval_sequences": 2},
}
PROXIES = 6  # output, language_id, unfiltered at seeds 0 and 1


def _ids(output: Path, variant: str) -> set[str]:
    manifest = json.loads((output / f"{variant}.manifest.json").read_text())
    return {i for s in manifest["shards"] for i in pq.read_table(output / s["path"], columns=["id"])["id"].to_pylist()}


@pytest.fixture(scope="module")
def ablated(ray_local, tmp_path_factory):
    """Start `refinery ablate` in a subprocess, kill it once a proxy is done, then resume it in this process."""
    from refinery.pipelines.cli import main as cli

    base = shared_base(tmp_path_factory)
    run = shared_run(base)
    config = base / "ablate.json"
    config.write_text(json.dumps(CONFIG))
    output = base / "ablation"
    command = [sys.executable, "-m", "refinery.pipelines.cli", "ablate", str(run), "--config", str(config)]
    command += ["--output", str(output), "--quiet"]
    log = base / "ablate-killed.log"
    with log.open("wb") as stderr:
        driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and not list(output.glob("proxies/*/result.json")):
            if driver.poll() is not None:
                pytest.fail(f"the ablation ended early: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
    finally:
        kill_session(driver)
    assert driver.returncode == -signal.SIGKILL
    finished = {p.parent.name: p.stat().st_mtime_ns for p in output.glob("proxies/*/result.json")}
    assert 1 <= len(finished) < PROXIES
    assert cli(["ablate", str(run), "--config", str(config), "--output", str(output), "--quiet"]) == 0
    return run, output, finished, json.loads((output / "ablation.json").read_text())


def test_a_killed_ablation_retrains_only_unfinished_proxies(ablated):
    _, output, finished, report = ablated
    results = {p.parent.name: p for p in output.glob("proxies/*/result.json")}
    assert len(results) == PROXIES == len(report["proxies"])
    for name, stamp in finished.items():
        assert results[name].stat().st_mtime_ns == stamp, f"{name} finished before the kill and was retrained"


def test_putting_a_stage_back_adds_exactly_its_rejections(ablated):
    run, output, _, report = ablated
    rejected = set()
    for path in (run / "segments" / "00" / "rejected").glob("*.parquet"):
        table = pq.read_table(path, columns=["id", "reason"])
        keep = pc.starts_with(table["reason"], "language_id:")
        rejected |= set(table.filter(keep)["id"].to_pylist())
    heldout = {i for p in (output / "heldout").glob("*.parquet") for i in pq.read_table(p)["id"].to_pylist()}
    baseline, put_back, unfiltered = (_ids(output, v) for v in ("output", "language_id", "unfiltered"))
    assert rejected, "the run's language ID rejected documents: the ablation has something to put back"
    assert put_back - baseline == rejected - heldout
    assert baseline < put_back < unfiltered, "unfiltered also puts back the length filter's rejections"
    assert not (heldout & unfiltered), "no variant trains on a held-out document"
    assert report["variants"]["language_id"]["stages"] == ["language_id"]


def test_report_lists_every_variant_with_deltas_and_a_verdict(ablated):
    run, output, _, report = ablated
    table = report["table"]
    assert [r["variant"] for r in table["rows"]] == ["output", "language_id", "unfiltered"]
    assert set(table["targets"]) == set(report["proxies"]["output-s0"]["losses"])
    page = (output / "report.html").read_text()
    for variant in ("language_id", "unfiltered"):
        assert variant in page
        row = next(r for r in table["rows"] if r["variant"] == variant)
        expected = sum(
            report["proxies"][f"{variant}-s{s}"]["losses"][t] - report["proxies"][f"output-s{s}"]["losses"][t]
            for s in (0, 1)
            for t in table["targets"]
        ) / (2 * len(table["targets"]))
        assert row["targets"]["mean"]["delta"] == pytest.approx(expected, abs=1e-9)
    assert (output / "ablation.png").stat().st_size > 1000
    pages = [json.loads(p.read_text()) for p in (run / "pages").glob("*.json")]
    ablation = [p for p in pages if p["kind"] == "ablation"]
    assert [Path(p["path"]) for p in ablation] == [(output / "report.html").resolve()]
    href = os.path.relpath(output / "report.html", run)
    assert f'href="{href}"' in (run / "report.html").read_text(), "the run report links the ablation page"
    assert "proxy tiny" in report["scale"] and "parameters" in report["scale"]


def test_verdict_says_when_an_effect_is_inside_the_seed_spread():
    def results(deltas):
        return {
            "output": {s: {"losses": {"a": 5.0}, "tokens": 1, "steps": 1, "parameters": 1} for s in range(3)},
            "v": {
                s: {"losses": {"a": 5.0 + d}, "tokens": 1, "steps": 1, "parameters": 1} for s, d in enumerate(deltas)
            },
        }

    noisy = ablation_table(results([0.05, -0.04, 0.02]), [0, 1, 2])["rows"][1]["targets"]["mean"]
    clear = ablation_table(results([0.30, 0.31, 0.29]), [0, 1, 2])["rows"][1]["targets"]["mean"]
    assert verdict(noisy, "v") == "within the seed spread"
    assert verdict(clear, "v") == "the stage helps"


def test_config_refuses_unknown_keys_and_reserved_names():
    with pytest.raises(AblateConfigError, match="extra"):
        load_config({**CONFIG, "bogus": 1})
    with pytest.raises(AblateConfigError, match="reserved"):
        load_config({**CONFIG, "variants": [{"name": "output", "stages": ["length"]}]})
