"""The trainer on a real manifest: loss falls, resume reproduces the curve, a corrupt shard refuses, Ray API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from training_fixtures import build_manifest, one_thread  # noqa: F401  (autouse: one torch thread)

from refinery.pipelines.cli import main
from refinery.training.trainer import Trainer, TrainingError, preset, train


@pytest.fixture(scope="module")
def manifest(real_documents, tmp_path_factory) -> Path:
    return build_manifest(real_documents, tmp_path_factory.mktemp("manifest"))


def _steps(output: Path) -> list[dict]:
    return [r for r in map(json.loads, (output / "log.jsonl").read_text().splitlines()) if r["event"] == "step"]


def test_tiny_model_loss_falls_on_real_shards(manifest, tmp_path, capsys):
    output = tmp_path / "run"
    code = main(["train", str(manifest), "--config", "tiny", "--output", str(output), "--tokens", "8192",
                 "--seq-len", "64", "--quiet"])  # fmt: skip
    assert code == 0
    summary = json.loads((output / "summary.json").read_text())
    steps = _steps(output)
    assert summary["finished"] and summary["steps"] == len(steps) == 16
    assert set(summary["eval_losses"]) == {"python_docs", "postgresql_docs", "debian_changelog"}
    first = steps[0]["loss"]  # the untrained model's loss (≈ ln of the vocabulary size)
    assert abs(first - torch.log(torch.tensor(float(summary["vocab_size"]))).item()) < 0.5
    assert sum(s["loss"] for s in steps[-3:]) / 3 < first - 0.7
    assert summary["mean_eval_loss"] < first - 0.7
    assert summary["packing"]["dropped_tokens"] == 0
    assert (output / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = next((output / "checkpoints").glob("step-*"))
    assert sorted(p.name for p in checkpoint.iterdir()) == ["done.json", "model.safetensors", "state.safetensors"]
    with safe_open(str(checkpoint / "state.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert "rng/torch" in keys and "data/tokens" in keys and any(k.startswith("optimizer/") for k in keys)
    assert '"mean_eval_loss"' in capsys.readouterr().out


def test_resume_gives_the_same_loss_curve(manifest, tmp_path):
    config = preset(
        "tiny", seq_len=64, micro_batch=2, grad_accum=2, token_budget=6 * 256, eval_every=3, eval_sequences=4
    )
    whole = train(manifest, tmp_path / "whole", config)
    part = train(manifest, tmp_path / "parts", config, stop_after_steps=3)
    assert not part["finished"] and part["steps"] == 3
    with pytest.raises(TrainingError, match="holds a run"):
        train(manifest, tmp_path / "parts", config)  # never overwrite a run silently
    resumed = train(manifest, tmp_path / "parts", config, resume=True)
    assert resumed["finished"] and resumed["steps"] == whole["steps"] == 6
    curve = [(s["step"], s["loss"], s["lr"], s["grad_norm"]) for s in _steps(tmp_path / "whole")]
    assert [(s["step"], s["loss"], s["lr"], s["grad_norm"]) for s in _steps(tmp_path / "parts")] == curve
    assert resumed["eval_losses"] == whole["eval_losses"]
    assert resumed["packing"] == whole["packing"]


def test_corrupted_shard_refuses_to_train(manifest, tmp_path, capsys):
    copy = tmp_path / "manifest"
    shutil.copytree(manifest.parent, copy, ignore=shutil.ignore_patterns("run*"))
    shard = copy / "shards" / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    shard.write_bytes(bytes(data))
    with pytest.raises(TrainingError, match=r"part-00001\.parquet: sha256"):
        Trainer(copy / "manifest.json", tmp_path / "out", preset("tiny"), verify_shards=True)
    assert not (tmp_path / "out").exists()  # refused before writing anything
    assert main(["train", str(copy / "manifest.json"), "--output", str(tmp_path / "out"), "--verify-shards"]) == 2
    assert main(["verify", str(copy / "manifest.json")]) != 0  # `refinery verify` is the full check
    shard.write_bytes(bytes(data[:-1]))  # a size change is caught by the cheap start-up check (no hashing)
    with pytest.raises(TrainingError, match=r"part-00001\.parquet: \d+ bytes"):
        Trainer(copy / "manifest.json", tmp_path / "out", preset("tiny"))
    (copy / "heldout" / "python_docs.parquet").unlink()
    capsys.readouterr()
    assert main(["train", str(copy / "manifest.json"), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    printed = capsys.readouterr()
    assert "refinery train:" in printed.err and "python_docs.parquet" in printed.err and not printed.out


def test_api_returns_per_bucket_losses_from_a_ray_task(manifest, ray_local):
    from refinery.training.api import train_on_manifest

    task = ray_local.remote(num_cpus=1)(train_on_manifest)
    summary = ray_local.get(
        task.remote(
            str(manifest), config="tiny", token_budget=2 * 256, seed=3, seq_len=64, grad_accum=1, eval_sequences=2
        )
    )
    assert summary["steps"] == 2 and summary["output_dir"] is None
    losses = summary["eval_losses"]
    assert set(losses) == {"python_docs", "postgresql_docs", "debian_changelog"}
    assert all(0 < v < 20 for v in losses.values())
    assert summary["mean_eval_loss"] == pytest.approx(sum(losses.values()) / 3)
