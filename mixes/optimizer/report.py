"""Step 6b: ``mix_report.json``'s plots (matplotlib, Agg backend: PNG files, no display needed).

* ``proxies.png`` — every proxy's objective against each bucket's weight (candidates and held-out mixes);
* ``predicted_vs_actual.png`` — the fit's out-of-fold predictions for the candidates and its predictions for the
  held-out mixes and the chosen mix, against the proxies' actual objective;
* ``slices.png`` — the fitted surface through the chosen mix: one bucket's weight varied over its bounds, the others
  scaled to keep the sum 1;
* ``chosen_mix.png`` — the chosen, natural and uniform weights, and their objective over the comparison seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .candidates import project_capped_simplex
from .fit import FittedModel


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def slice_curves(
    model: FittedModel, names: list[str], chosen: list[float], lower: list[float], upper: list[float], points: int = 41
) -> dict[str, dict[str, list[float]]]:
    """Per bucket: weights along its slice through the chosen mix and the predicted objective there.

    The other buckets share the rest as close to their chosen proportions as the search's bounds allow (the
    chosen mix's other weights, scaled, then projected onto the bounds), so a slice stays inside the set the search
    chose from; weights of the bucket where no such mix exists are left out.
    """
    chosen_array, low, high = np.asarray(chosen), np.asarray(lower), np.asarray(upper)
    curves = {}
    for i, name in enumerate(names):
        others = np.arange(len(names)) != i
        rest = chosen_array[others]
        kept, rows = [], []
        for value in np.linspace(lower[i], upper[i], points):
            share = 1.0 - value
            if not low[others].sum() - 1e-12 <= share <= high[others].sum() + 1e-12 or share <= 0:
                continue
            start = rest / rest.sum() if rest.sum() > 0 else np.full(len(rest), 1 / len(rest))
            row = np.empty(len(names))
            row[i] = value
            row[others] = share * project_capped_simplex(start, high[others] / share, low[others] / share)
            kept.append(float(value))
            rows.append(row)
        predicted = model.objective(np.asarray(rows)) if rows else []
        curves[name] = {"weight": kept, "objective": [float(v) for v in predicted]}
    return curves


def plot_proxies(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    names = report["buckets"]["names"]
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for index, name in enumerate(names):
        axis = axes[index // columns][index % columns]
        for role, colour in (("candidate", "tab:blue"), ("validation", "tab:orange")):
            proxies = [p for p in report["proxies"] if p["role"] == role]
            axis.scatter(
                [p["weights"][name] for p in proxies], [p["objective"] for p in proxies], s=18, c=colour, label=role
            )
        axis.set_xlabel(f"weight of {name}")
        axis.set_ylabel("objective (nats/token)")
    for index in range(len(names), rows * columns):
        axes[index // columns][index % columns].axis("off")
    axes[0][0].legend(fontsize=8)
    figure.suptitle("Proxy objective against each bucket's weight")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_predicted_vs_actual(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 4.8))
    fit = report["fit"]
    chosen_cv = next(s for s in fit["cross_validation"] if s["family"] == fit["family"])
    candidates = [p for p in report["proxies"] if p["role"] == "candidate"]
    axis.scatter(
        [p["objective"] for p in candidates],
        chosen_cv["predicted_objective"],
        s=18,
        label=f"candidates, out-of-fold (ρ={chosen_cv['spearman']:.2f})",
    )
    held = report["validation"]["heldout"]
    if held["mixes"]:
        rho = held["spearman"]
        axis.scatter(
            [m["actual"] for m in held["mixes"]],
            [m["predicted"] for m in held["mixes"]],
            s=30,
            marker="s",
            c="tab:orange",
            label="held-out mixes + chosen" + (f" (ρ={rho:.2f})" if rho is not None else ""),
        )
    low = min(axis.get_xlim()[0], axis.get_ylim()[0])
    high = max(axis.get_xlim()[1], axis.get_ylim()[1])
    axis.plot([low, high], [low, high], c="grey", lw=0.8, ls="--")
    axis.set_xlabel("actual objective")
    axis.set_ylabel(f"predicted objective ({fit['family']})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_slices(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    curves = report["search"]["slices"]
    chosen = report["chosen"]["weights"]
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for name, curve in curves.items():
        line = axis.plot(curve["weight"], curve["objective"], label=name)[0]
        axis.axvline(chosen[name], c=line.get_color(), lw=0.6, ls=":")
    axis.set_xlabel("weight of one bucket (the others re-spread within their bounds, through the chosen mix)")
    axis.set_ylabel("predicted objective")
    axis.set_title(f"Fitted surface slices ({report['fit']['family']})")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_chosen(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    names = report["buckets"]["names"]
    mixes = report["comparison"]["mixes"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(mixes)
    for k, (label, weights) in enumerate(mixes.items()):
        left.bar(np.arange(len(names)) + k * width, [weights[n] for n in names], width, label=label)
    left.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("weight")
    left.legend(fontsize=8)
    summary = report["comparison"]["summary"]
    labels = [m for m in mixes if m in summary]
    for m_index, m in enumerate(labels):
        colour = "tab:green" if m == "chosen" else "tab:grey"
        right.errorbar([m_index], [summary[m]["mean"]], yerr=[summary[m]["std"]], fmt="o", c=colour, capsize=5, ms=8)
        right.scatter([m_index + 0.12] * len(summary[m]["objective"]), summary[m]["objective"], c="k", s=10)
    right.set_xticks(range(len(labels)), labels)
    right.set_xlim(-0.5, len(labels) - 0.5)
    right.set_ylabel("objective (nats/token): mean ± std, and each seed")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_plots(report: dict[str, Any], folder: Path) -> dict[str, str]:
    """Every plot into ``folder``; returns their names relative to the output directory's parent of ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "proxies": plot_proxies(report, folder / "proxies.png"),
        "predicted_vs_actual": plot_predicted_vs_actual(report, folder / "predicted_vs_actual.png"),
        "slices": plot_slices(report, folder / "slices.png"),
        "chosen_mix": plot_chosen(report, folder / "chosen_mix.png"),
    }
    return {k: f"{folder.name}/{v.name}" for k, v in paths.items()}
