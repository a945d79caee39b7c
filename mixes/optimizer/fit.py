"""Step 4a: regressions of each target loss on the mix weights, chosen by cross-validated Spearman.

Three families, each fitted per target (the objective is a weighted mean of target losses, so predicting each
target lets the objective's weights change without refitting):

* ``linear`` — ordinary least squares on the weights (RegMix's linear baseline). Weights sum to 1, so the
  intercept and the coefficients are not identified separately; ``lstsq`` returns the minimum-norm solution,
  which predicts the same on the simplex.
* ``lightgbm`` — gradient-boosted trees, RegMix's main model, with settings for a few dozen rows (few leaves,
  small child size) and LightGBM's deterministic mode.
* ``mixing_law`` — Data Mixing Laws' ``L = c + k·exp(Σ_j t_j w_j)``. On the simplex ``k`` is not identified apart
  from the ``t_j`` (``k·exp(Σ t_j w_j) = exp(Σ (t_j + log k) w_j)``), so ``k`` is folded into ``t`` (``k > 0``, loss
  falls as useful data grows). Fitted with :func:`scipy.optimize.least_squares` from several deterministic starts
  (``c`` a little under the smallest loss, ``t`` from a log-linear regression), the best residual kept, with an
  analytic Jacobian and a tiny ridge on ``t`` (well-posed even with fewer proxies than buckets).

Model choice: K-fold cross-validation (folds from a seeded permutation) gives every proxy an out-of-fold prediction
of every target, hence of the objective; the family with the highest Spearman correlation between predicted and
actual objective wins (ties: the simpler family, in the order above). It is then refitted on every proxy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats


def spearman(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Spearman's rank correlation; 0 where it is undefined (a constant prediction: no ranking at all)."""
    predicted, actual = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if len(actual) < 2 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return 0.0
    value = stats.spearmanr(predicted, actual).statistic
    return 0.0 if not np.isfinite(value) else float(value)


def _fit_linear(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    design = np.hstack([np.ones((len(x), 1)), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {"intercept": float(coef[0]), "coef": [float(c) for c in coef[1:]]}


def _predict_linear(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return params["intercept"] + x @ np.asarray(params["coef"])


def _lightgbm_params(rows: int, seed: int) -> dict[str, Any]:
    return {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 4,
        "max_depth": 3,
        "min_child_samples": max(2, min(5, rows // 4)),
        "min_data_in_bin": 1,
        "n_estimators": 300,
        "subsample": 1.0,
        "colsample_bytree": 1.0,
        "reg_lambda": 1e-3,
        "random_state": seed,
        "deterministic": True,
        "force_row_wise": True,
        "n_jobs": 1,
        "verbose": -1,
    }


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    import lightgbm

    model = lightgbm.LGBMRegressor(**_lightgbm_params(len(x), seed))
    model.fit(x, y)
    return {"booster": model.booster_.model_to_string()}


def _load_lightgbm(params: dict[str, Any]) -> Any:
    import lightgbm

    return lightgbm.Booster(model_str=params["booster"])


def _predict_lightgbm(booster: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(x), dtype=np.float64)


RIDGE = 1e-3  # a whisper of L2 on t: keeps the law well-posed when there are fewer mixes than buckets


def _fit_mixing_law(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    spread = float(np.ptp(y)) or 1e-3
    best: tuple[float, np.ndarray] | None = None
    for gap in (0.05, 0.25, 1.0, 4.0):
        c0 = float(y.min()) - gap * spread
        t0, *_ = np.linalg.lstsq(x, np.log(y - c0), rcond=None)

        def residual(p: np.ndarray) -> np.ndarray:
            return np.concatenate([p[0] + np.exp(np.clip(x @ p[1:], -50, 50)) - y, RIDGE * p[1:]])

        def jacobian(p: np.ndarray) -> np.ndarray:
            grown = np.exp(np.clip(x @ p[1:], -50, 50))
            top = np.hstack([np.ones((len(x), 1)), grown[:, None] * x])
            bottom = np.hstack([np.zeros((x.shape[1], 1)), RIDGE * np.eye(x.shape[1])])
            return np.vstack([top, bottom])

        start = np.concatenate([[c0], t0])
        fitted = optimize.least_squares(residual, start, jac=jacobian, method="lm", max_nfev=400, x_scale="jac")
        cost = float(np.sum(fitted.fun**2))
        if np.all(np.isfinite(fitted.x)) and (best is None or cost < best[0] - 1e-15):
            best = (cost, fitted.x)
    assert best is not None
    return {"c": float(best[1][0]), "t": [float(v) for v in best[1][1:]]}


def _predict_mixing_law(params: dict[str, Any], x: np.ndarray) -> np.ndarray:
    return params["c"] + np.exp(np.clip(x @ np.asarray(params["t"]), -50, 50))


def _as_is(params: dict[str, Any]) -> Any:
    return params


@dataclass(frozen=True)
class FitFamily:
    """One regression family: how it fits a target column, how its JSON parameters are loaded, how it predicts.

    ``fit(x, y, seed) -> params`` (JSON-serialisable, stored in ``fit.json``); ``load(params)`` gives what
    ``predict(loaded, x)`` takes. Order in :data:`FAMILIES` is the tie-break order (simplest first).
    """

    name: str
    fit: Callable[[np.ndarray, np.ndarray, int], dict[str, Any]]
    predict: Callable[[Any, np.ndarray], np.ndarray]
    load: Callable[[dict[str, Any]], Any] = _as_is


#: The one registry of fit families: the config validates names against it, the fit and the report use it.
FAMILIES: dict[str, FitFamily] = {
    family.name: family
    for family in (
        FitFamily("linear", _fit_linear, _predict_linear),
        FitFamily("lightgbm", _fit_lightgbm, _predict_lightgbm, _load_lightgbm),
        FitFamily("mixing_law", _fit_mixing_law, _predict_mixing_law),
    )
}


def family(name: str) -> FitFamily:
    """The registered family ``name``; a ``ValueError`` lists the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"unknown fit family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


@dataclass
class FittedModel:
    """One family fitted per target; :meth:`predict` gives target losses, :meth:`objective` their weighted mean."""

    family: str
    targets: list[str]
    target_weights: dict[str, float]
    params: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        self._loaded = {t: family(self.family).load(self.params[t]) for t in self.targets}

    def predict(self, weights: np.ndarray) -> np.ndarray:
        """Predicted losses, shape ``(mixes, targets)`` in :attr:`targets` order."""
        x = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        predict = family(self.family).predict
        return np.stack([predict(self._loaded[t], x) for t in self.targets], axis=1)

    def objective(self, weights: np.ndarray) -> np.ndarray:
        a = np.asarray([self.target_weights[t] for t in self.targets])
        return self.predict(weights) @ a / a.sum()

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "targets": self.targets,
            "target_weights": self.target_weights,
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedModel:
        return cls(data["family"], list(data["targets"]), dict(data["target_weights"]), dict(data["params"]))


def fit_family(name: str, x: np.ndarray, losses: np.ndarray, targets: list[str], weights: dict, seed: int):
    """Fit family ``name`` to every target column of ``losses`` (shape ``(mixes, targets)``)."""
    fit = family(name).fit
    params = {t: fit(x, losses[:, i], seed) for i, t in enumerate(targets)}
    return FittedModel(name, list(targets), dict(weights), params)


def fold_ids(rows: int, folds: int, seed: int) -> np.ndarray:
    """Fold of every row: a seeded permutation dealt round-robin (leave-one-out when rows <= folds)."""
    folds = min(folds, rows)
    ids = np.empty(rows, dtype=np.int64)
    ids[np.random.default_rng([seed, 7]).permutation(rows)] = np.arange(rows) % folds
    return ids


def cross_validate(
    family: str, x: np.ndarray, losses: np.ndarray, targets: list[str], weights: dict, folds: int, seed: int
) -> dict[str, Any]:
    """Out-of-fold predictions of every target and the objective; Spearman and RMSE of the objective."""
    ids = fold_ids(len(x), folds, seed)
    predicted = np.zeros_like(losses)
    for fold in np.unique(ids):
        train, test = ids != fold, ids == fold
        model = fit_family(family, x[train], losses[train], targets, weights, seed)
        predicted[test] = model.predict(x[test])
    a = np.asarray([weights[t] for t in targets])
    actual_objective, predicted_objective = losses @ a / a.sum(), predicted @ a / a.sum()
    return {
        "family": family,
        "spearman": spearman(predicted_objective, actual_objective),
        "rmse": float(math.sqrt(np.mean((predicted_objective - actual_objective) ** 2))),
        "per_target_spearman": {t: spearman(predicted[:, i], losses[:, i]) for i, t in enumerate(targets)},
        "predicted_objective": [float(v) for v in predicted_objective],
    }


def choose_model(
    families: list[str], x: np.ndarray, losses: np.ndarray, targets: list[str], weights: dict, folds: int, seed: int
) -> tuple[FittedModel, list[dict[str, Any]]]:
    """Cross-validate every family, refit the best (highest objective Spearman, then lowest RMSE) on all rows."""
    if len(x) < 3:
        raise ValueError(f"{len(x)} proxies: the fit needs at least 3 (raise candidates.count)")
    scores = [cross_validate(f, x, losses, targets, weights, folds, seed) for f in families]
    best = max(range(len(scores)), key=lambda i: (round(scores[i]["spearman"], 12), -scores[i]["rmse"], -i))
    return fit_family(families[best], x, losses, targets, weights, seed), scores
