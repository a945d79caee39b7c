"""Step 2: candidate mixes — Dirichlet samples around the natural mix, each within every bucket's epoch cap.

Draw ``i`` uses concentration ``concentrations[i % len]``: ``alpha = concentration × n × natural`` (``n`` buckets),
so every draw has the natural mix as its mean and a larger concentration stays closer to it (RegMix samples around
the token distribution the same way). A draw that would need more than a bucket's ``max_epochs`` at the proxy
token budget is rejected and drawn again. The natural and the uniform mixes are always candidates; where the cap of
a small bucket makes one of them infeasible, its closest feasible mix (Euclidean projection onto the capped
simplex) stands in and says so in its name.

Streams: candidates, held-out validation mixes and the search each draw from ``default_rng([seed, stream])``, so
adding validation mixes never changes the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bucket_table import BucketTable
from .config import CandidateSettings

CANDIDATE_STREAM, VALIDATION_STREAM, SEARCH_STREAM = 0, 1, 2
ALPHA_FLOOR = 1e-3  # a bucket with a vanishing natural share still gets drawn now and then


@dataclass(frozen=True)
class Mix:
    """A named weight vector over the table's buckets (sums to 1)."""

    name: str
    weights: tuple[float, ...]

    def as_dict(self, names: list[str]) -> dict[str, float]:
        return dict(zip(names, self.weights, strict=True))


def project_capped_simplex(weights: np.ndarray, upper: np.ndarray, lower: np.ndarray | None = None) -> np.ndarray:
    """The closest point (Euclidean) to ``weights`` with ``lower <= x <= upper`` and ``sum(x) == 1``.

    ``x = clip(w - tau, lower, upper)`` for the ``tau`` that makes the sum 1, found by bisection (the sum falls
    monotonically with ``tau``). Works on one vector or on rows. Requires ``sum(lower) <= 1 <= sum(upper)``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    lower = np.zeros_like(upper) if lower is None else np.asarray(lower, dtype=np.float64)
    if upper.sum() < 1 - 1e-12 or lower.sum() > 1 + 1e-12:
        raise ValueError("the bounds (epoch caps) admit no mix: sum(lower) <= 1 <= sum(upper) fails")
    rows = np.atleast_2d(weights)
    low = (rows.min(axis=1) - upper.max() - 1.0)[:, None]
    high = (rows.max(axis=1) + 1.0)[:, None]
    for _ in range(100):
        tau = 0.5 * (low + high)
        over = np.clip(rows - tau, lower, upper).sum(axis=1, keepdims=True) > 1.0
        low, high = np.where(over, tau, low), np.where(over, high, tau)
    x = np.clip(rows - 0.5 * (low + high), lower, upper)
    x = x / x.sum(axis=1, keepdims=True)
    return x[0] if weights.ndim == 1 else x


def dirichlet_draws(
    rng: np.random.Generator, natural: np.ndarray, concentrations: list[float], count: int, start: int = 0
) -> np.ndarray:
    """``count`` Dirichlet draws, draw ``start + i`` at concentration ``concentrations[(start + i) % len]``."""
    n = len(natural)
    rows = []
    for i in range(count):
        concentration = concentrations[(start + i) % len(concentrations)]
        rows.append(rng.dirichlet(np.maximum(concentration * n * natural, ALPHA_FLOOR)))
    return np.asarray(rows).reshape(count, n)


def sample_feasible(
    table: BucketTable, settings: CandidateSettings, budget: int, count: int, seed: int, stream: int
) -> np.ndarray:
    """``count`` feasible Dirichlet mixes from one seeded stream (rejection sampling; error after max_draws)."""
    rng = np.random.default_rng([seed, stream])
    natural, n = table.natural, len(table.names)
    kept: list[np.ndarray] = []
    draws = 0
    while len(kept) < count:
        if draws >= settings.max_draws:
            raise ValueError(
                f"only {len(kept)} of {count} Dirichlet draws fit the epoch caps after {draws} draws at "
                f"{budget:,} tokens per proxy; lower proxy.token_budget, raise max_epochs or the concentrations"
            )
        batch = dirichlet_draws(rng, natural, settings.concentrations, 64, start=draws)
        draws += len(batch)
        batch = settings.min_weight / n + (1 - settings.min_weight) * batch
        for row in batch[table.feasible(batch, budget)]:
            if len(kept) < count:
                kept.append(row)
    return np.asarray(kept).reshape(count, n)


def anchor_mixes(table: BucketTable, budget: int) -> list[Mix]:
    """The natural and uniform mixes, each projected onto the epoch caps when it does not fit them."""
    upper = table.max_weights(budget)
    mixes = []
    for name, weights in (("natural", table.natural), ("uniform", table.uniform)):
        if not table.feasible(weights, budget)[0]:
            weights, name = project_capped_simplex(weights, upper), f"{name}_capped"
        mixes.append(Mix(name, tuple(float(w) for w in weights)))
    return mixes


def candidate_mixes(table: BucketTable, settings: CandidateSettings, budget: int, seed: int) -> list[Mix]:
    """Natural, uniform, then ``settings.count`` seeded feasible Dirichlet draws named ``c000``, ``c001``, ..."""
    draws = sample_feasible(table, settings, budget, settings.count, seed, CANDIDATE_STREAM)
    return anchor_mixes(table, budget) + [Mix(f"c{i:03d}", tuple(float(w) for w in row)) for i, row in enumerate(draws)]


def validation_mixes(table: BucketTable, settings: CandidateSettings, budget: int, seed: int, count: int) -> list[Mix]:
    """``count`` more draws from a separate stream: mixes the fit never sees, named ``v000``, ..."""
    if count == 0:
        return []
    draws = sample_feasible(table, settings, budget, count, seed, VALIDATION_STREAM)
    return [Mix(f"v{i:03d}", tuple(float(w) for w in row)) for i, row in enumerate(draws)]
