"""Step 4b: the mix with the lowest predicted objective, inside each bucket's epoch cap (deterministic).

Feasible set: the simplex intersected with a box. Upper bounds are each bucket's epoch cap at the proxy budget
(the fit knows nothing beyond it) and, when the output's ``total_tokens`` is set, at that total too; with
``within_observed`` (the default) each weight also stays within the range the fitted proxies covered, because a
regression fitted on a few dozen mixes says little about mixes unlike any of them (a linear fit would otherwise
put everything on one corner).

1. ``samples`` seeded Dirichlet draws (around the natural mix at the candidate concentrations, and flat ones),
   projected onto the feasible set, scored by the model in one vectorised call;
2. RegMix's robust answer: the mean of the ``top`` best (the set is convex, so the mean is feasible);
3. local refinement from there: every pairwise transfer of ``delta`` weight from one bucket to another, the best
   strictly improving one taken, ``delta`` halved when none improves, at most ``refine_steps`` rounds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .bucket_table import BucketTable
from .candidates import SEARCH_STREAM, dirichlet_draws, project_capped_simplex
from .config import SearchSettings
from .fit import FittedModel


def bounds(
    table: BucketTable, budget: int, total_tokens: int | None, observed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) per bucket, as described in the module docstring."""
    upper = table.max_weights(budget)
    if total_tokens is not None:
        upper = np.minimum(upper, table.max_weights(total_tokens))
    lower = np.zeros_like(upper)
    if observed is not None and len(observed):
        lower = np.maximum(lower, observed.min(axis=0))
        upper = np.minimum(upper, observed.max(axis=0))
        if lower.sum() > 1 or upper.sum() < 1:  # cannot happen for observed mixes that fit the caps; stay safe
            lower, upper = np.zeros_like(upper), table.max_weights(budget)
    return lower, upper


def _refine(model: FittedModel, start: np.ndarray, lower: np.ndarray, upper: np.ndarray, steps: int):
    """Pairwise-transfer descent (see the module docstring); returns (weights, objective, rounds taken)."""
    n = len(start)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    current, value = start.copy(), float(model.objective(start)[0])
    delta, rounds = 0.05, 0
    while rounds < steps and delta > 1e-4:
        moves = np.repeat(current[None, :], len(pairs), axis=0)
        for row, (i, j) in enumerate(pairs):  # move up to delta from bucket j to bucket i within both bounds
            amount = min(delta, upper[i] - current[i], current[j] - lower[j])
            moves[row, i] += max(0.0, amount)
            moves[row, j] -= max(0.0, amount)
        values = model.objective(moves)
        best = int(np.argmin(values))
        rounds += 1
        if values[best] < value - 1e-12:
            current, value = moves[best], float(values[best])
        else:
            delta /= 2
    return current, value, rounds


def search(
    model: FittedModel,
    table: BucketTable,
    settings: SearchSettings,
    concentrations: list[float],
    budget: int,
    total_tokens: int | None = None,
    observed: np.ndarray | None = None,
) -> dict[str, Any]:
    """The chosen mix and how it was found: best sample, top-mean, refined (each with its predicted objective)."""
    lower, upper = bounds(table, budget, total_tokens, observed if settings.within_observed else None)
    rng = np.random.default_rng([settings.seed, SEARCH_STREAM])
    half = settings.samples // 2
    draws = np.vstack(
        [
            dirichlet_draws(rng, table.natural, concentrations, half),
            rng.dirichlet(np.ones(len(table.names)), settings.samples - half),
        ]
    )
    feasible = project_capped_simplex(draws, upper, lower)
    values = model.objective(feasible)
    order = np.argsort(values, kind="stable")
    top = feasible[order[: settings.top]].mean(axis=0)
    top = project_capped_simplex(top, upper, lower)  # numerically already inside; keeps sum exactly 1
    refined, _value, rounds = _refine(model, top, lower, upper, settings.refine_steps)
    chosen = project_capped_simplex(refined, upper, lower)
    return {
        "weights": [float(w) for w in chosen],
        "predicted_objective": float(model.objective(chosen)[0]),
        "predicted_losses": dict(zip(model.targets, (float(v) for v in model.predict(chosen)[0]), strict=True)),
        "best_sample": {
            "weights": [float(w) for w in feasible[order[0]]],
            "predicted_objective": float(values[order[0]]),
        },
        "top_mean": {"weights": [float(w) for w in top], "predicted_objective": float(model.objective(top)[0])},
        "refine_rounds": rounds,
        "lower": [float(v) for v in lower],
        "upper": [float(v) for v in upper],
        "samples": len(feasible),
    }
