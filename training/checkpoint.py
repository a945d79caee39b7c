"""Checkpoints in safetensors only (no pickle anywhere): model, optimizer state, data position, RNG state.

Layout of ``OUTPUT/checkpoints/step-000120/``:

* ``model.safetensors`` — the weights (``safetensors.torch.save_model``: a tied output projection stored once);
* ``state.safetensors`` — tensors ``optimizer/<param index>/<key>`` (AdamW moments and step), ``rng/torch``,
  ``rng/cuda/<i>``, ``data/<name>`` (the packer's buffer); the string metadata ``trainer`` holds a JSON document
  with the step, the optimizer's hyper-parameters and the data position;
* ``done.json`` — written last (after both files are renamed into place): a folder without it is ignored, so a run
  killed while saving resumes from the previous checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from refinery.pipelines import storage

KEEP = 2  # checkpoints kept (the newest ones)


def _atomic(path: Path, write) -> None:
    fs, inner = storage.filesystem(str(path))
    with storage.atomic_output(fs, inner) as temporary:
        write(temporary)


def save_checkpoint(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data_arrays: dict[str, np.ndarray],
    trainer_state: dict[str, Any],
) -> Path:
    """Write ``folder/step-NNNNNN`` and remove older checkpoints beyond :data:`KEEP`."""
    target = folder / f"step-{step:06d}"
    target.mkdir(parents=True, exist_ok=True)
    (target / "done.json").unlink(missing_ok=True)
    _atomic(target / "model.safetensors", lambda p: save_model(model, str(p)))

    optim = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, state in optim["state"].items():
        for key, value in state.items():
            tensors[f"optimizer/{index}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = rng
    for name, array in data_arrays.items():
        tensors[f"data/{name}"] = torch.from_numpy(np.ascontiguousarray(array))
    metadata = {"trainer": json.dumps({**trainer_state, "step": step, "param_groups": optim["param_groups"]})}
    _atomic(target / "state.safetensors", lambda p: save_file(tensors, str(p), metadata=metadata))
    (target / "done.json").write_text(json.dumps({"step": step}))

    finished = sorted(p for p in folder.glob("step-*") if (p / "done.json").exists())
    for old in finished[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder`` (``None`` when there is none)."""
    finished = sorted(p for p in folder.glob("step-*") if (p / "done.json").exists())
    return finished[-1] if finished else None


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Restore model, optimizer and RNG in place; return the trainer state and the data arrays."""
    load_model(model, str(path / "model.safetensors"), device=str(next(model.parameters()).device))
    with safe_open(str(path / "state.safetensors"), framework="pt") as handle:
        trainer_state = json.loads(handle.metadata()["trainer"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iterator)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    groups = trainer_state.pop("param_groups")
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        cuda_keys = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
        cuda = [tensors[k] for k in cuda_keys]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    data = {key.removeprefix("data/"): value.numpy() for key, value in tensors.items() if key.startswith("data/")}
    return trainer_state, data
