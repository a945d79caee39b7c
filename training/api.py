"""What the mix optimizer calls: train one config on one manifest for a token budget, get per-bucket losses back.

:func:`train_on_manifest` is a pure function of its arguments (no module state; the model, optimizer and data
stream live in its frame) and is safe inside a Ray task: there it sets torch's intra-op threads to the CPUs the task
holds, so that Ray's per-task scheduling is honoured instead of every task spawning a thread per core.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from refinery.pipelines.executor import task_cpus
from refinery.training.vocab import Vocabulary


def read_log(output_dir: str | Path, event: str | None = None) -> list[dict[str, Any]]:
    """The records of a training run's ``log.jsonl`` (one per step or evaluation), those of ``event`` only if
    given: the typed reader of the trainer's log, so nothing outside ``training`` parses it."""
    path = Path(output_dir) / "log.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if event is None or r.get("event") == event]


def train_on_manifest(
    manifest_path: str | Path,
    config: str = "proxy",
    token_budget: int | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    vocabulary: Vocabulary | None = None,
    threads: int | None = None,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``config`` (a preset name) on the manifest; return the run summary.

    The summary holds ``eval_losses`` (held-out loss per bucket, nats/token), ``mean_eval_loss`` (their unweighted
    mean), ``tokens``, ``steps`` and the packing counters. ``output_dir`` None trains in a temporary folder that is
    removed afterwards. Pass one ``vocabulary`` (:func:`refinery.training.vocab.build_vocabulary` over every
    candidate manifest) to every run whose losses are compared. ``overrides`` are :class:`TrainConfig` fields;
    ``device`` None: CUDA when visible, else CPU.
    """
    import torch

    from refinery.training.trainer import preset, train

    cpus = task_cpus()
    if threads is None and cpus is not None:
        threads = max(1, int(cpus))
    if threads is not None:
        torch.set_num_threads(threads)
    train_config = preset(config, token_budget=token_budget, seed=seed, **overrides)
    if output_dir is None:
        with tempfile.TemporaryDirectory(prefix="refinery-train-") as folder:
            summary = train(manifest_path, folder, train_config, vocabulary=vocabulary, device=device)
            summary["output_dir"] = None
            return summary
    return train(manifest_path, output_dir, train_config, vocabulary=vocabulary, device=device)
