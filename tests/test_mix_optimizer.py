"""The data-mix optimizer: candidates, fit, search on known surfaces; a real optimisation, killed and resumed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from run_helpers import STAGES, copy_inputs, recipe_for

from refinery.mixes.optimizer.bucket_table import BucketTable
from refinery.mixes.optimizer.candidates import candidate_mixes, project_capped_simplex, validation_mixes
from refinery.mixes.optimizer.config import CandidateSettings, MixConfig, SearchSettings, load_config
from refinery.mixes.optimizer.fit import FittedModel, choose_model, fit_family
from refinery.mixes.optimizer.search import search
from refinery.mixes.optimizer.validate import trained_weights
from refinery.mixes.sampling import shares_honoured
from refinery.pipelines.manifest import load_manifest, verify_manifest

# A small optimisation: tiny model, 256-token steps, 5 candidates, 1 held-out mix, one comparison seed.
CONFIG = {
    "name": "test",
    "buckets": {"column": "source", "max_epochs": 4, "heldout_fraction": 0.1, "heldout_max_documents": 20},
    "candidates": {"count": 3, "concentrations": [1.0, 8.0]},
    "proxy": {
        "config": "tiny",
        "token_budget": 3072,
        "eval_sequences": 2,
        "overrides": {"seq_len": 128, "micro_batch": 2, "grad_accum": 1},
    },
    "targets": {"quality": {"column": "lang_score", "top_fraction": 0.5}},
    "search": {"samples": 2000, "top": 16, "refine_steps": 30},
    "validation": {"heldout_mixes": 1, "seeds": [0]},
}
PROXIES = 7  # natural, uniform, c000-c002, v000, chosen-s0


def table(available=(400_000, 90_000, 50_000, 3_000), caps=(4.0, 4.0, 4.0, 2.0)) -> BucketTable:
    names = ["handbook", "postgres", "python", "copyright"][: len(available)]
    return BucketTable(
        names=names,
        documents=[100] * len(names),
        tokens=list(available),
        available_tokens=list(available),
        heldout_documents=[5] * len(names),
        heldout_tokens=[1000] * len(names),
        max_epochs=list(caps),
    )


# -- candidates ------------------------------------------------------------------------------------------------
def test_candidates_are_seeded_feasible_and_include_natural_and_uniform():
    buckets, budget = table(), 100_000
    settings = CandidateSettings(count=40, concentrations=[1.0, 4.0, 16.0])
    mixes = candidate_mixes(buckets, settings, budget, seed=3)
    assert [m.name for m in mixes[:2]] == ["natural", "uniform_capped"], "uniform needs 8.3 epochs of copyright"
    assert np.allclose(mixes[0].weights, buckets.natural)
    weights = np.asarray([m.weights for m in mixes])
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert buckets.feasible(weights, budget).all(), "every candidate within every bucket's epoch cap"
    assert (weights[:, 3] * budget <= 3_000 * 2.0).all()
    assert mixes == candidate_mixes(buckets, settings, budget, seed=3), "same seed, same candidates"
    assert mixes[2:] != candidate_mixes(buckets, settings, budget, seed=4)[2:]
    held = validation_mixes(buckets, settings, budget, seed=3, count=5)
    assert not {m.weights for m in held} & {m.weights for m in mixes}, "held-out mixes come from another stream"
    # larger concentration: closer to the natural mix
    distance = np.abs(weights[2:] - buckets.natural).sum(axis=1)
    by_concentration = [distance[i::3].mean() for i in range(3)]
    assert by_concentration[0] > by_concentration[1] > by_concentration[2]


def test_candidates_fail_loudly_when_the_caps_leave_no_room():
    with pytest.raises(ValueError, match="fit the epoch caps"):
        candidate_mixes(table(), CandidateSettings(count=5, max_draws=200), 10_000_000, seed=0)


def test_projection_onto_the_capped_simplex():
    upper, lower = np.array([0.5, 0.5, 0.2, 0.1]), np.array([0.1, 0.0, 0.0, 0.0])
    rows = np.random.default_rng(0).dirichlet(np.ones(4), 200)
    projected = project_capped_simplex(rows, upper, lower)
    assert np.allclose(projected.sum(axis=1), 1.0)
    assert (projected <= upper + 1e-9).all() and (projected >= lower - 1e-9).all()
    inside = np.array([0.4, 0.35, 0.15, 0.1])
    assert np.allclose(project_capped_simplex(inside, upper, lower), inside), "a feasible point stays put"


# -- fit and search on a known surface -------------------------------------------------------------------------
def law(weights: np.ndarray) -> np.ndarray:
    """A Data-Mixing-Law surface for two targets: each falls with its own bucket's weight."""
    t = np.array([[-3.0, -0.5, -0.2, 0.5], [-0.3, -2.5, -1.0, 0.5]])
    return np.stack([2.0 + np.exp(weights @ t[0]), 2.5 + 0.8 * np.exp(weights @ t[1])], axis=1)


def test_fit_chooses_by_cross_validated_spearman_and_recovers_the_law():
    buckets = table()
    mixes = candidate_mixes(buckets, CandidateSettings(count=30), 100_000, seed=1)
    x = np.asarray([m.weights for m in mixes])
    losses = law(x) + np.random.default_rng(0).normal(0, 1e-4, (len(x), 2))
    weights = {"a": 1.0, "b": 1.0}
    model, scores = choose_model(["linear", "lightgbm", "mixing_law"], x, losses, ["a", "b"], weights, 5, 0)
    by_family = {s["family"]: s for s in scores}
    assert model.family == "mixing_law"
    assert by_family["mixing_law"]["spearman"] > 0.98
    assert by_family["mixing_law"]["spearman"] >= max(s["spearman"] for s in scores)
    assert by_family["lightgbm"]["spearman"] > 0.3, "trees learn something from 32 mixes"
    fresh = np.random.default_rng(5).dirichlet(np.ones(4), 50)
    assert np.abs(model.predict(fresh) - law(fresh)).max() < 0.05, "the fitted law generalises off the samples"
    again = FittedModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.predict(fresh), model.predict(fresh)), "a saved model predicts the same"
    trees = fit_family("lightgbm", x, losses, ["a", "b"], weights, 0)
    assert np.allclose(FittedModel.from_dict(json.loads(json.dumps(trees.to_dict()))).predict(x), trees.predict(x))


def test_search_finds_the_constrained_minimum_deterministically():
    buckets = table()
    mixes = candidate_mixes(buckets, CandidateSettings(count=30), 100_000, seed=1)
    x = np.asarray([m.weights for m in mixes])
    weights = {"a": 1.0, "b": 1.0}
    model = fit_family("mixing_law", x, law(x), ["a", "b"], weights, 0)
    settings = SearchSettings(samples=5000, top=16, refine_steps=300, within_observed=False)
    found = search(model, buckets, settings, [1.0, 4.0], 100_000)
    chosen = np.asarray(found["weights"])
    assert np.isclose(chosen.sum(), 1.0) and buckets.feasible(chosen, 100_000)[0]
    dense = project_capped_simplex(np.random.default_rng(9).dirichlet(np.ones(4), 20000), buckets.max_weights(100_000))
    assert found["predicted_objective"] <= model.objective(dense).min() + 1e-3, "no better mix among 20k others"
    assert found["predicted_objective"] <= found["top_mean"]["predicted_objective"]
    assert search(model, buckets, settings, [1.0, 4.0], 100_000) == found, "deterministic"
    bounded = search(model, buckets, SearchSettings(samples=2000, within_observed=True), [1.0], 100_000, None, x)
    inside = np.asarray(bounded["weights"])
    assert (inside >= x.min(axis=0) - 1e-9).all() and (inside <= x.max(axis=0) + 1e-9).all()


def test_config_is_validated_with_named_fields(tmp_path: Path):
    with pytest.raises(ValueError, match="token_budget"):
        load_config({"proxy": {"token_budget": 0}})
    with pytest.raises(ValueError, match="families"):
        load_config({"fit": {"families": ["linear", "svm"]}})
    with pytest.raises(ValueError, match="overrides"):
        load_config({"proxy": {"overrides": {"seed": 3}}})
    for example in sorted((Path(__file__).resolve().parents[1] / "recipes" / "mixes").glob("mix_sample*.yaml")):
        assert isinstance(load_config(example), MixConfig), f"the documented config {example.name} is valid"


# -- a real optimisation ---------------------------------------------------------------------------------------
def shared_run(base: Path) -> Path:
    """A real run over five sample shards (length, language ID, token_count): buckets web, copyright, changelog."""
    from refinery.pipelines.runner import run_recipe

    run = base / "run"
    if not (run / "run.json").exists():
        copy_inputs(base / "in")
        stages = [{**STAGES[0], "max_chars": 20_000}, *STAGES[1:], {"stage": "token_count"}]
        assert run_recipe(recipe_for(base / "in", run, stages=stages), show_progress=False).ok
    return run


def shared_base(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "mix_shared"
    base.mkdir(exist_ok=True)
    (base / "mix.json").write_text(json.dumps(CONFIG))
    return base


def optimise(base: Path) -> dict:
    """The optimisation through the CLI verb, in this process (resumes whatever is already in ``base/out``)."""
    import refinery.mixes.optimizer.commands  # noqa: F401  (registers the verb)
    from refinery.pipelines.cli import main as cli

    assert cli(["mix", str(base / "run"), "--config", str(base / "mix.json"), "--output", str(base / "out")]) == 0
    return json.loads((base / "out" / "mix_report.json").read_text())


def kill_session(driver: subprocess.Popen) -> None:
    """SIGKILL the driver, its embedded Ray (gcs, raylet, workers) and anything else of its session; wait till dead.

    The driver runs in a session of its own (``start_new_session``) and Ray's processes stay in it, so one
    ``killpg`` stops them all at once: no worker outlives the driver to finish its proxy. Descendants that left the
    session are killed too. Killed workers may stay zombies (an init that does not reap them): nothing runs there.
    """
    family: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        family = psutil.Process(driver.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(driver.pid, signal.SIGKILL)
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    driver.wait(timeout=30)

    def running() -> list[psutil.Process]:
        alive = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if (process in family or os.getsid(process.pid) == driver.pid) and (
                    process.status() != psutil.STATUS_ZOMBIE
                ):
                    alive.append(process)
        return alive

    deadline = time.time() + 30
    while (alive := running()) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive, f"processes of the killed optimisation still run: {alive}"


@pytest.fixture(scope="module")
def resumed(ray_local, tmp_path_factory):
    """Start the optimisation in a subprocess, kill it once two proxies are done, then resume it here."""
    base = shared_base(tmp_path_factory)
    shared_run(base)
    out = base / "out"
    # the notebook test shares this base and may already have run the whole optimisation: start from nothing
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "refinery.mixes.optimizer", "mix", str(base / "run")]
    command += ["--config", str(base / "mix.json"), "--output", str(out), "--num-cpus", "2", "--quiet"]
    log = base / "killed.log"
    with log.open("wb") as stderr:
        driver = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True, env=dict(os.environ)
        )
    deadline = time.time() + 240
    try:
        while time.time() < deadline and len(list(out.glob("optimizer/proxies/*/result.json"))) < 2:
            if driver.poll() is not None:
                pytest.fail(f"the optimisation ended early: {log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
    finally:
        kill_session(driver)
    assert driver.returncode == -signal.SIGKILL, "the optimisation was killed, it did not end by itself"
    # every process of the optimisation is dead: these are all the proxies it finished
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("optimizer/proxies/*/result.json")}
    assert 2 <= len(finished) < PROXIES, f"killed mid-optimisation, after {sorted(finished)}"
    report = optimise(base)
    return base, finished, report


def test_killed_optimisation_redoes_only_unfinished_proxies(resumed):
    base, finished, report = resumed
    results = {p.parent.name: p for p in (base / "out").glob("optimizer/proxies/*/result.json")}
    assert len(results) == PROXIES == len(report["proxies"])
    for name, stamp in finished.items():
        assert results[name].stat().st_mtime_ns == stamp, f"{name} was finished before the kill and was redone"
    assert all(json.loads(p.read_text())["complete"] for p in results.values())
    assert not list((base / "out").rglob("checkpoints")), "proxy checkpoints are removed once a proxy is done"


def test_every_proxy_is_scored_on_the_same_heldout_files(resumed):
    base, _, report = resumed
    pool = load_manifest(base / "out/optimizer/pool/manifest.json")
    digests = {b: e["sha256"] for b, e in pool["heldout"].items()}
    assert "web" in digests and set(digests) <= {"web", "copyright", "changelog"}
    targets = set(report["objective"]["targets"])
    assert targets == {*digests, "@top:lang_score"}, "bucket held-out sets and the top-scored documents"
    import pyarrow.parquet as pq

    heldout = pq.read_table([base / "out/optimizer/pool" / e["path"] for e in pool["heldout"].values()])
    top = pq.read_table(base / "out/optimizer/targets/quality.parquet")
    scores = sorted(heldout.column("lang_score").to_pylist(), reverse=True)
    assert top.num_rows == round(0.5 * heldout.num_rows)
    assert min(top.column("lang_score").to_pylist()) >= scores[top.num_rows - 1], "the top half by lang_score"
    for folder in (base / "out/optimizer/proxies").iterdir():
        trained = json.loads((folder / "mix/proxy_manifest.json").read_text())
        assert {b: trained["heldout"][b]["sha256"] for b in digests} == digests
        assert not verify_manifest(folder / "mix/proxy_manifest.json")
        written = load_manifest(folder / "mix/manifest.json")
        for bucket, entry in written["buckets"].items():
            assert entry["epochs"] <= entry["max_epochs"] + 1e-9, f"{folder.name}/{bucket} beyond its epoch cap"
        result = json.loads((folder / "result.json").read_text())
        assert set(result["losses"]) == targets and result["tokens"] == 3072
        # trained on what was written: the realised shares, and whether they honour the drawn weights
        realised = {b: e["realised_share"] for b, e in written["buckets"].items()}
        assert result["realised_weights"] == pytest.approx(realised)
        assert result["honoured"] == shares_honoured(written["buckets"])
        assert trained_weights(result) == result["realised_weights"]


def test_report_fit_validation_and_the_chosen_mix_as_shards(resumed):
    base, _, report = resumed
    out = base / "out"
    fit = report["fit"]
    assert {s["family"] for s in fit["cross_validation"]} == {"linear", "lightgbm", "mixing_law"}
    assert fit["cv_spearman"] == max(s["spearman"] for s in fit["cross_validation"])
    assert fit["candidates"] == ["natural", "uniform", "c000", "c001", "c002"]
    held = report["validation"]["heldout"]
    assert [m["name"] for m in held["mixes"]] == ["v000", "chosen-s0"]
    from scipy.stats import spearmanr

    objectives = {p["name"]: p["objective"] for p in report["proxies"]}
    assert [m["actual"] for m in held["mixes"]] == [objectives[m["name"]] for m in held["mixes"]]
    predicted, actual = [m["predicted"] for m in held["mixes"]], [m["actual"] for m in held["mixes"]]
    expected = spearmanr(predicted, actual).statistic
    assert held["spearman"] == pytest.approx(expected if np.isfinite(expected) else 0.0), "these mixes' Spearman"
    assert held["rmse"] == pytest.approx(float(np.sqrt(np.mean((np.subtract(predicted, actual)) ** 2))))
    summary = report["comparison"]["summary"]
    assert {"chosen", "natural", "uniform"} <= set(summary) and summary["chosen"]["seeds"] == [0]
    manifest = load_manifest(out / "manifest.json")
    assert not verify_manifest(out / "manifest.json")
    chosen = report["chosen"]["weights"]
    for bucket, weight in chosen.items():
        assert abs(manifest["buckets"][bucket]["weight"] - weight) < 0.02, "the writer honours the chosen weights"
    selection = manifest["selection"]
    assert selection["method"] == "refinery-mix"
    assert selection["fit"]["family"] == fit["family"] and selection["fit"]["cv_spearman"] == fit["cv_spearman"]
    assert len(selection["proxies"]) == PROXIES
    assert json.loads(json.dumps(selection["proxies"][0]))["losses"]
    for name in ("proxies", "predicted_vs_actual", "slices", "chosen_mix"):
        png = out / report["plots"][name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a finished optimisation run again retrains nothing and writes the same manifest
    before = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("optimizer/proxies/*/result.json")}
    optimise(base)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest() == before


def test_buckets_from_a_combination_of_columns(resumed):
    from refinery.mixes.optimizer.bucket_table import scan_buckets

    base, _, _ = resumed
    by_source = scan_buckets(str(base / "run"), ["source"])
    combined = scan_buckets(str(base / "run"), ["source", "lang"])
    assert all("/" in name for name in combined) and {n.split("/")[0] for n in combined} == set(by_source)
    for source, totals in by_source.items():
        parts = [v for n, v in combined.items() if n.split("/")[0] == source]
        assert sum(p["tokens"] for p in parts) == totals["tokens"] > 0
        assert sum(p["documents"] for p in parts) == totals["documents"]
