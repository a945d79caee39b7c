"""Step 6b: ``mix_report.json``'s plots (matplotlib, Agg backend: PNG files, no display needed).

* ``proxies.png`` — every proxy's objective against each bucket's weight (candidates and held-out mixes);
* ``predicted_vs_actual.png`` — the fit's out-of-fold predictions for the candidates and its predictions for the
  held-out mixes and the chosen mix, against the proxies' actual objective;
* ``slices.png`` — the fitted surface through the chosen mix: one bucket's weight varied over its bounds, the others
  scaled to keep the sum 1;
* ``chosen_mix.png`` — the chosen, natural and uniform weights, and their objective over the comparison seeds
  (mean ± std and each seed), titled with whether the chosen mix is within the seed spread of the others.

Every plot states the proxy scale (parameters, steps, tokens) and is saved with a tight bounding box, so no axis
label runs off the image. :func:`write_page` writes ``mix_report.html`` (the run report's style) around them and
registers it with the run, whose report then links it.
"""

from __future__ import annotations

import html
import textwrap
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


def proxy_scale(report: dict[str, Any]) -> dict[str, Any]:
    """The proxies' size: parameters, optimizer steps and training tokens per proxy (the most common values)."""
    proxies = report.get("proxies", [])

    def common(key: str) -> Any:
        values = [p[key] for p in proxies if p.get(key) is not None]
        return max(set(values), key=values.count) if values else None

    proxy = report.get("config", {}).get("proxy", {})
    return {
        "preset": proxy.get("config"),
        "parameters": common("parameters"),
        "steps": common("steps"),
        "tokens": common("tokens"),
        "proxies": len(proxies),
    }


def scale_label(report: dict[str, Any]) -> str:
    """One line for plot titles: ``proxy 'tiny': 0.9M parameters, 24 steps, 3.1k tokens each (12 proxies)``."""
    from refinery.pipelines.report_page import human

    scale = proxy_scale(report)
    return (
        f"proxy '{scale['preset']}': {human(scale['parameters'])} parameters, {scale['steps']} steps, "
        f"{human(scale['tokens'])} tokens each ({scale['proxies']} proxies)"
    )


def spread_verdict(summary: dict[str, Any]) -> dict[str, str]:
    """Per other mix, a sentence: is the chosen mix's objective within the seed spread of it (mean ± std overlap)?

    With one comparison seed there is no spread: a single sentence (key ``seeds``) says so.
    """
    chosen = summary.get("chosen")
    if not chosen:
        return {}
    if len(chosen.get("seeds", [])) < 2:
        return {"seeds": "one seed only: the seed spread is not measured, so no difference can be called"}
    verdicts: dict[str, str] = {}
    for name in ("natural", "uniform"):
        other = summary.get(name)
        if not other:
            continue
        low = max(chosen["mean"] - chosen["std"], other["mean"] - other["std"])
        high = min(chosen["mean"] + chosen["std"], other["mean"] + other["std"])
        if low <= high:
            verdicts[name] = f"chosen and {name} overlap within the seed spread (not distinguishable)"
        elif chosen["mean"] < other["mean"]:
            verdicts[name] = f"chosen beats {name} beyond the seed spread"
        else:
            verdicts[name] = f"chosen is worse than {name} beyond the seed spread"
    return verdicts


def _save(figure: Any, path: Path) -> None:
    """Save with a tight bounding box: labels and titles are never cut off."""
    figure.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})


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
    figure.suptitle(f"Proxy objective against each bucket's weight\n{scale_label(report)}", fontsize=10)
    figure.tight_layout()
    _save(figure, path)
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
    axis.set_title(f"Fit against proxies\n{scale_label(report)}", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)
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
    axis.set_xlabel("weight of one bucket\n(the others re-spread within their bounds, through the chosen mix)")
    axis.set_ylabel("predicted objective")
    axis.set_title(f"Fitted surface slices ({report['fit']['family']})\n{scale_label(report)}", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, path)
    plt.close(figure)
    return path


def plot_chosen(report: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    names = report["buckets"]["names"]
    mixes = report["comparison"]["mixes"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4.4))
    width = 0.8 / len(mixes)
    for k, (label, weights) in enumerate(mixes.items()):
        left.bar(np.arange(len(names)) + k * width, [weights[n] for n in names], width, label=label)
    left.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=8)
    left.set_ylabel("weight")
    left.set_title("Bucket weights", fontsize=10)
    left.legend(fontsize=8)
    summary = report["comparison"]["summary"]
    labels = [m for m in mixes if m in summary]
    chosen = summary.get("chosen")
    if chosen and chosen["std"] > 0:
        right.axhspan(chosen["mean"] - chosen["std"], chosen["mean"] + chosen["std"], color="tab:green", alpha=0.12)
    for m_index, m in enumerate(labels):
        colour = "tab:green" if m == "chosen" else "tab:grey"
        right.errorbar([m_index], [summary[m]["mean"]], yerr=[summary[m]["std"]], fmt="o", c=colour, capsize=5, ms=8)
        right.scatter([m_index + 0.12] * len(summary[m]["objective"]), summary[m]["objective"], c="k", s=10)
    right.set_xticks(range(len(labels)), labels)
    right.set_xlim(-0.5, len(labels) - 0.5)
    right.set_ylabel("objective (nats/token)\nmean ± std over seeds; dots: each seed")
    verdicts = spread_verdict(summary)
    seeds = len(chosen["seeds"]) if chosen else 0
    verdict = "; ".join(verdicts.values()) or "no comparison"
    right.set_title(textwrap.fill(f"{seeds} seed(s): {verdict}", 60), fontsize=9)
    figure.suptitle(scale_label(report), fontsize=9)
    figure.tight_layout()
    _save(figure, path)
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


PAGE = "mix_report.html"


def write_page(report: dict[str, Any], output: Path) -> Path:
    """``mix_report.html`` beside ``mix_report.json``, and a link to it from the run's report (best effort)."""
    from refinery.pipelines.report_page import page

    output = Path(output)
    path = output / PAGE
    run_dir = str(report.get("run_dir", ""))
    run_report = Path(run_dir) / "report.html" if run_dir and "://" not in run_dir else None
    back = ""
    if run_report is not None and run_report.exists():
        back = f'<p><a href="{html.escape(_relative(run_report, output))}">← the run report</a></p>'
    title = f"Refinery mix: {report.get('config', {}).get('name', 'mix')} · from {Path(run_dir).name}"
    temporary = path.with_name(f".tmp-{path.name}")
    temporary.write_text(page(title, f"<h1>{html.escape(title)}</h1>{back}{mix_page_body(report)}"))
    temporary.replace(path)
    if run_dir:
        try:
            from refinery.pipelines.report import register_page, write_report

            register_page(run_dir, "mix", title, str(path.resolve()))
            write_report(run_dir)
        except (OSError, ValueError, KeyError):
            pass  # the run directory is read-only or gone: the mix page stands alone
    return path


def _relative(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


def mix_page_body(report: dict[str, Any]) -> str:
    """The mix report's sections: the verdict, the chosen weights, the proxy scale, the fit, the plots."""
    from refinery.pipelines.report_page import esc, meta_table, table

    names = report["buckets"]["names"]
    mixes = report["comparison"]["mixes"]
    summary = report["comparison"]["summary"]
    verdicts = spread_verdict(summary)
    scale = proxy_scale(report)
    chosen = summary.get("chosen", {})
    verdict_text = "; ".join(verdicts.values()) or "no seed comparison"
    css = "ok" if verdicts and all(" beats " in v for v in verdicts.values()) else "warning"
    parts = [
        f'<p class="{css}" data-summary="verdict"><b>{len(chosen.get("seeds", []))} seed(s):</b> '
        f"{esc(verdict_text)}.</p>"
    ]
    weights = table(
        ["bucket", *mixes],
        [[name, *(f"{mixes[m][name]:.4f}" for m in mixes)] for name in names],
        numeric=range(1, len(mixes) + 1),
    )
    objective = table(
        ["mix", "seeds", "objective mean", "std", "each seed"],
        [
            [m, len(summary[m]["seeds"]), f"{summary[m]['mean']:.4f}", f"{summary[m]['std']:.4f}",
             ", ".join(f"{v:.4f}" for v in summary[m]["objective"])]
            for m in mixes
            if m in summary
        ],
        numeric=(1, 2, 3),
    )  # fmt: skip
    parts.append(f"<h2>Chosen mix</h2>{weights}<h3>Objective (nats/token, lower is better)</h3>{objective}")
    scale_rows = [
        ["proxy preset", scale["preset"]],
        ["parameters per proxy", f"{scale['parameters']:,}" if scale["parameters"] else "-"],
        ["optimizer steps per proxy", f"{scale['steps']:,}" if scale["steps"] else "-"],
        ["training tokens per proxy", f"{scale['tokens']:,}" if scale["tokens"] else "-"],
        ["proxies trained", f"{scale['proxies']:,}"],
    ]
    parts.append(
        f'<h2>Proxy scale</h2><div data-summary="scale">{meta_table(scale_rows)}</div>'
        '<p class="caption">Proxies are small models: a mix that wins at this scale is a hypothesis for the '
        "full-size run, not a result.</p>"
    )
    fit = report["fit"]
    cv = table(
        ["family", "cross-validated Spearman"],
        [[s["family"], "-" if s.get("spearman") is None else f"{s['spearman']:.3f}"] for s in fit["cross_validation"]],
        numeric=(1,),
    )
    held = report["validation"]["heldout"]
    held_rho = "-" if held.get("spearman") is None else f"{held['spearman']:.3f}"
    parts.append(
        f"<h2>Fit</h2><p>Chosen family <b>{esc(fit['family'])}</b>; held-out mixes' Spearman {held_rho} "
        f"({len(held.get('mixes', []))} mixes).</p>{cv}"
    )
    limit = 40
    proxies = report["proxies"]
    rows = [
        [p["name"], p["role"], p.get("seed", ""), f"{p['objective']:.4f}",
         ", ".join(f"{n}={p['weights'][n]:.3f}" for n in names if n in p["weights"])]
        for p in proxies[:limit]
    ]  # fmt: skip
    parts.append(
        "<h2>Proxies</h2>"
        + table(["proxy", "role", "seed", "objective", "weights"], rows, numeric=(2, 3), total=len(proxies))
    )
    plots = report.get("plots", {})
    captions = {
        "chosen_mix": "Chosen, natural and uniform weights, and their objective over the comparison seeds.",
        "predicted_vs_actual": "The fit's predictions against the proxies' measured objective.",
        "slices": "The fitted surface through the chosen mix, one bucket at a time.",
        "proxies": "Every proxy's objective against each bucket's weight.",
    }
    images = "".join(
        f'<figure><img src="{esc(plots[k])}" alt="{esc(captions.get(k, k))}">'
        f'<figcaption class="caption">{esc(captions.get(k, k))}</figcaption></figure>'
        for k in ("chosen_mix", "predicted_vs_actual", "slices", "proxies")
        if k in plots
    )
    parts.append(f"<h2>Plots</h2>{images}")
    timings = report.get("timings", {})
    if timings:
        parts.append(
            "<h2>Time</h2>"
            + table(
                ["step", "seconds"],
                [[k, f"{v:,.1f}"] for k, v in timings.items() if isinstance(v, int | float) and k != "workers"],
                numeric=(1,),
            )
            + f'<p class="caption">{timings.get("workers", "?")} worker(s); proxy core seconds are summed over '
            f"proxies. Manifest: <code>{esc(report.get('manifest', ''))}</code>.</p>"
        )
    return "".join(parts)
