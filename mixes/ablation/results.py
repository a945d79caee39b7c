"""The ablation table: per variant and target, the loss change against the run's output, with its seed spread.

A delta is ``loss(variant) - loss(output)`` at the same seed (paired: both proxies saw the same data order and
initialisation), averaged over seeds. A positive delta means the model got *worse* with the stage's rejections put
back, i.e. the stage helps. The spread is the standard error of the paired mean (sample standard deviation over
seeds / sqrt(seeds)); an effect is called resolved when ``|delta|`` exceeds the two-sided 95% Student-t interval
of the paired mean, ``t(0.975, seeds - 1) × spread`` (12.7 × spread at 2 seeds, 4.3 at 3, 2.8 at 5), and "within
the seed spread" otherwise; with one seed nothing is resolved: there is no spread to compare with.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import numpy as np

BASELINE = "output"
OBJECTIVE = "mean"


def _objective(losses: dict[str, float]) -> float:
    return float(np.mean(list(losses.values()))) if losses else float("nan")


def ablation_table(results: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    """``results[variant][seed]`` (result.json contents) → per variant, per target: mean loss, delta, spread."""
    from scipy.stats import t as student_t

    baseline = results[BASELINE]
    critical = float(student_t.ppf(0.975, len(seeds) - 1)) if len(seeds) > 1 else math.inf
    targets = sorted(next(iter(baseline.values()))["losses"])
    rows = []
    for variant, by_seed in results.items():
        per_target = {}
        for target in [*targets, OBJECTIVE]:

            def loss(result: dict[str, Any], target: str = target) -> float:
                return _objective(result["losses"]) if target == OBJECTIVE else float(result["losses"][target])

            values = np.array([loss(by_seed[s]) for s in seeds])
            deltas = values - np.array([loss(baseline[s]) for s in seeds])
            spread = float(np.std(deltas, ddof=1) / math.sqrt(len(seeds))) if len(seeds) > 1 else None
            delta = float(deltas.mean())
            resolved = spread is not None and variant != BASELINE and abs(delta) > critical * spread
            per_target[target] = {
                "loss": float(values.mean()),
                "loss_std": float(values.std(ddof=1)) if len(seeds) > 1 else None,
                "delta": delta,
                "spread": spread,
                "resolved": bool(resolved),
            }
        first = by_seed[seeds[0]]
        rows.append({"variant": variant, "targets": per_target, "tokens": first["tokens"], "steps": first["steps"],
                     "parameters": first["parameters"]})  # fmt: skip
    return {
        "baseline": BASELINE,
        "objective": OBJECTIVE,
        "targets": targets,
        "seeds": seeds,
        "t_critical": critical if len(seeds) > 1 else None,
        "rows": rows,
    }


def verdict(cell: dict[str, Any], variant: str) -> str:
    if variant == BASELINE:
        return "baseline"
    if cell["spread"] is None:
        return "one seed: no spread"
    if not cell["resolved"]:
        return "within the seed spread"
    return "the stage helps" if cell["delta"] > 0 else "the stage hurts"


def table_text(table: dict[str, Any]) -> str:
    """A plain-text table for the terminal (objective column)."""
    lines = [f"{'variant':<28} {'loss':>8} {'delta':>9} {'spread':>8}  verdict"]
    for row in table["rows"]:
        cell = row["targets"][OBJECTIVE]
        spread = "-" if cell["spread"] is None else f"{cell['spread']:.4f}"
        label = verdict(cell, row["variant"])
        lines.append(f"{row['variant']:<28} {cell['loss']:>8.4f} {cell['delta']:>+9.4f} {spread:>8}  {label}")
    return "\n".join(lines)


def plot(table: dict[str, Any], path: Path, scale: str) -> Path:
    """Horizontal bars: objective delta per variant with ±2 spread whiskers; the proxy scale in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table["rows"] if r["variant"] != BASELINE]
    names = [r["variant"] for r in rows]
    deltas = [r["targets"][OBJECTIVE]["delta"] for r in rows]
    critical = table["t_critical"] or 0.0
    errors = [critical * (r["targets"][OBJECTIVE]["spread"] or 0.0) for r in rows]
    figure, axis = plt.subplots(figsize=(7.2, 0.5 * len(rows) + 1.6), layout="constrained")
    colors = ["#2b8a3e" if r["targets"][OBJECTIVE]["resolved"] else "#adb5bd" for r in rows]
    axis.barh(names, deltas, xerr=errors, color=colors, capsize=3)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.invert_yaxis()
    axis.set_xlabel("loss with the stage's rejections put back − loss of the run's output (nats/token)")
    axis.set_title(f"Filter ablation (whiskers: 95% t interval over seeds; grey: inside it)\n{scale}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def section_html(table: dict[str, Any], plot_name: str, scale: str) -> str:
    """A self-contained HTML section (the run report embeds it; ``report.html`` wraps it)."""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in [*table["targets"], "objective"])
    body = []
    for row in table["rows"]:
        cells = []
        for target in [*table["targets"], OBJECTIVE]:
            cell = row["targets"][target]
            spread = "" if cell["spread"] is None else f" ± {cell['spread']:.3f}"
            cells.append(f"<td class=num>{cell['loss']:.3f} ({cell['delta']:+.3f}{spread})</td>")
        verdict_text = verdict(row["targets"][OBJECTIVE], row["variant"])
        body.append(f"<tr><td>{html.escape(row['variant'])}</td>{''.join(cells)}<td>{verdict_text}</td></tr>")
    return (
        "<section id=ablation><h2>Filter ablation</h2>"
        f"<p>{html.escape(scale)}. Each cell: mean held-out loss over seeds {table['seeds']} "
        "(delta against the run's output ± standard error of the paired delta). A positive delta: the stage helps.</p>"
        f"<table><thead><tr><th>variant</th>{head}<th>verdict</th></tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<img src='{html.escape(plot_name)}' alt='ablation deltas' style='max-width:100%'></section>"
    )
