"""The MinHash cluster summary (``work/summary/minhash_clusters.json``) and its HTML block for the run report.

The summary holds the cluster count, the histogram of cluster sizes, removals per source, the pipeline's
counts (documents, candidate pairs, verified pairs, component rounds) and a few removed/kept pairs with the
first characters of both texts, so a reader can judge the duplicates by eye.
"""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT
from refinery.pipelines.stages import GlobalContext

EXAMPLES = 5
SNIPPET_CHARS = 300


def _texts(context: GlobalContext, numbers: list[int]) -> dict[int, str]:
    """The texts of a few documents given by global number (shard index << 32 | row)."""
    found: dict[int, str] = {}
    by_shard: dict[int, list[int]] = {}
    for g in numbers:
        by_shard.setdefault(g >> 32, []).append(g)
    for shard, wanted in sorted(by_shard.items()):
        fs, inner = storage.filesystem(context.input_path(context.shard_names[shard]))
        with fs.open(inner, "rb") as handle:
            column = pq.read_table(handle, columns=[TEXT]).column(TEXT)
        for g in wanted:
            found[g] = (column[g & 0xFFFFFFFF].as_py() or "")[:SNIPPET_CHARS]
    return found


def cluster_summary(stats: list[dict[str, Any]], context: GlobalContext, extra: dict[str, Any]) -> dict[str, Any]:
    """Merge the ``drops`` tasks' statistics and attach text snippets to a few examples."""
    sizes: Counter = Counter()
    for part in stats:
        sizes.update({int(k): v for k, v in part["sizes"].items()})
    examples = sorted((e for part in stats for e in part["examples"]), key=lambda e: e["label"])[:EXAMPLES]
    texts = _texts(context, [e[side]["g"] for e in examples for side in ("kept", "removed")])
    return {
        "stage": "minhash_dedup",
        "clusters": sum(part["clusters"] for part in stats),
        "removed": sum(part["removed"] for part in stats),
        "size_histogram": {str(k): sizes[k] for k in sorted(sizes)},
        **extra,
        "examples": [
            {
                "size": e["size"],
                "kept": {"id": e["kept"]["id"], "text": texts[e["kept"]["g"]]},
                "removed": {"id": e["removed"]["id"], "text": texts[e["removed"]["g"]]},
            }
            for e in examples
        ],
    }


def dedup_report_html(summary: dict[str, Any]) -> str:
    """An HTML block (no scripts, escaped text) for the run report: counts, histogram, sources, example pairs."""
    esc = html.escape
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in summary.get("size_histogram", {}).items())
    sources = "".join(
        f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in sorted(summary.get("removed_by_source", {}).items())
    )
    pairs = "".join(
        "<tr>"
        f"<td><b>{esc(e['kept']['id'])}</b><pre>{esc(e['kept']['text'])}</pre></td>"
        f"<td><b>{esc(e['removed']['id'])}</b><pre>{esc(e['removed']['text'])}</pre></td>"
        f"<td>{e['size']}</td></tr>"
        for e in summary.get("examples", [])
    )
    counts = ", ".join(
        f"{esc(name.replace('_', ' '))}: {summary[name]:,}"
        for name in ("documents", "candidate_pairs", "verified_pairs", "clusters", "removed", "component_rounds")
        if name in summary
    )
    return (
        '<section class="dedup"><h2>MinHash duplicate clusters</h2>'
        f"<p>{counts}</p>"
        "<h3>Cluster sizes</h3><table><tr><th>size</th><th>clusters</th></tr>"
        f"{rows}</table>"
        "<h3>Removed per source</h3><table><tr><th>source</th><th>removed</th></tr>"
        f"{sources}</table>"
        "<h3>Kept and removed, side by side</h3>"
        "<table><tr><th>kept</th><th>removed</th><th>cluster size</th></tr>"
        f"{pairs}</table></section>"
    )
