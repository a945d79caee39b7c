"""Step 5: does the fit predict proxies it never saw, and does the chosen mix beat natural and uniform?

* Held-out mixes (drawn from their own stream, trained with the candidates, never given to the fit) and the chosen
  mix at the proxy seed: the model's predicted objective against the proxy's actual one, their Spearman rank
  correlation and error.
* The seed comparison: the chosen, natural and uniform mixes each written and trained at every seed of
  ``validation.seeds`` (the writer's sampling and the trainer's initialisation and data order both move with the
  seed), at the same token budget; mean and standard deviation of the objective and of every target per mix, and
  per seed whether the chosen mix beat both others.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .fit import FittedModel, spearman
from .targets import objective


def trained_weights(result: dict[str, Any]) -> dict[str, float]:
    """The weights a proxy was really trained on: the writer's realised shares (the drawn ones before they existed)."""
    return result.get("realised_weights") or result["weights"]


def heldout_validation(
    model: FittedModel, names: list[str], results: dict[str, dict[str, Any]], buckets: list[str]
) -> dict[str, Any]:
    """Predicted against actual objective (and per target) for the named proxies."""
    x = np.asarray([[trained_weights(results[n])[b] for b in buckets] for n in names])
    actual = np.asarray([objective(results[n]["losses"], model.target_weights) for n in names])
    predicted = model.objective(x) if len(names) else np.zeros(0)
    per_target = {}
    if len(names):
        predicted_losses = model.predict(x)
        for i, target in enumerate(model.targets):
            per_target[target] = spearman(predicted_losses[:, i], [results[n]["losses"][target] for n in names])
    return {
        "mixes": [
            {"name": n, "predicted": float(p), "actual": float(a)}
            for n, p, a in zip(names, predicted, actual, strict=True)
        ],
        "spearman": spearman(predicted, actual) if len(names) >= 2 else None,
        "rmse": float(math.sqrt(np.mean((predicted - actual) ** 2))) if len(names) else None,
        "mean_absolute_error": float(np.mean(np.abs(predicted - actual))) if len(names) else None,
        "per_target_spearman": per_target,
    }


def seed_comparison(runs: dict[str, dict[int, dict[str, Any]]], target_weights: dict[str, float]) -> dict[str, Any]:
    """``runs[mix][seed]`` results → per mix the objective's mean, std and values; wins of the chosen mix per seed."""
    summary: dict[str, Any] = {}
    for mix, by_seed in runs.items():
        seeds = sorted(by_seed)
        values = [objective(by_seed[s]["losses"], target_weights) for s in seeds]
        targets = sorted(target_weights)
        summary[mix] = {
            "seeds": seeds,
            "objective": values,
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "targets": {
                t: {
                    "mean": float(np.mean([by_seed[s]["losses"][t] for s in seeds])),
                    "std": float(np.std([by_seed[s]["losses"][t] for s in seeds], ddof=1)) if len(seeds) > 1 else 0.0,
                }
                for t in targets
            },
        }
    chosen = summary.get("chosen")
    if chosen is not None:
        others = [m for m in summary if m != "chosen"]
        wins = [
            all(chosen["objective"][i] < summary[o]["objective"][i] for o in others)
            for i in range(len(chosen["seeds"]))
        ]
        summary["chosen_wins_per_seed"] = wins
        summary["chosen_beats_all_on_mean"] = all(chosen["mean"] < summary[o]["mean"] for o in others)
        summary["paired_difference"] = {
            o: {
                "mean": float(np.mean(np.subtract(chosen["objective"], summary[o]["objective"]))),
                "std": float(np.std(np.subtract(chosen["objective"], summary[o]["objective"]), ddof=1))
                if len(chosen["seeds"]) > 1
                else 0.0,
            }
            for o in others
        }
    return summary
