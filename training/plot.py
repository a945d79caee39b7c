"""The loss plot beside the log: training loss and held-out loss per bucket against tokens (matplotlib, Agg)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_log(log_path: Path, png_path: Path) -> None:
    """Draw ``log.jsonl`` into ``png_path`` (nothing to draw: no file)."""
    if not log_path.exists():
        return
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    steps = [r for r in records if r["event"] == "step"]
    evals = [r for r in records if r["event"] == "eval"]
    if not steps:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    axis.plot([r["tokens"] for r in steps], [r["loss"] for r in steps], label="train", color="black", linewidth=1)
    buckets = sorted({b for r in evals for b in r["losses"]})
    for bucket in buckets:
        points = [(r["tokens"], r["losses"][bucket]) for r in evals if bucket in r["losses"]]
        axis.plot(*zip(*points, strict=True), marker="o", label=f"held-out {bucket}")
    axis.set_xlabel("tokens")
    axis.set_ylabel("loss (nats/token)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
