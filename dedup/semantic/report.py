"""Phase 4: the summary a person reads to judge ε: cluster sizes, removals per ε, borderline pairs side by side.

``work/report/semantic_summary.json`` (deterministic, written by :func:`write_summary`) holds the counts and,
for the decision ε, the removed pairs of *lowest* similarity (what ε only just removes) and the kept pairs of
*highest* similarity (what it only just keeps), with text snippets of both documents read back from the input
shards. :func:`semantic_report_html` renders it as an HTML fragment for the run report.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import TEXT

SNIPPET_CHARS = 400


def size_histogram(sizes: list[int]) -> list[dict[str, int]]:
    """Clusters per size bucket (1, 2–3, 4–7, ... powers of two): how lopsided the clustering is."""
    if not sizes:
        return []
    buckets: dict[int, int] = defaultdict(int)
    for size in sizes:
        buckets[int(np.floor(np.log2(max(size, 1))))] += 1
    return [{"min": 2**b, "max": 2 ** (b + 1) - 1, "clusters": buckets[b]} for b in sorted(buckets)]


def merge_stats(parts: list[dict[str, Any]], epsilons: list[float], limit: int) -> dict[str, Any]:
    """Add up the per-partition results (partition order is fixed, so the merge is deterministic)."""
    documents = sum(p["documents"] for p in parts)
    sizes = sorted((size for p in parts for _, size in p["clusters"]), reverse=True)
    removals = []
    for e, epsilon in enumerate(epsilons):
        removed = sum(p["removed"][e] for p in parts)
        removed_any = sum(p["removed_any"][e] for p in parts)
        removals.append(
            {
                "epsilon": epsilon,
                "threshold": round(1 - epsilon, 6),
                "removed": removed,
                "fraction": round(removed / documents, 6) if documents else 0.0,
                "removed_any_earlier": removed_any,
            }
        )
    removed = [x for p in parts for x in p["examples"]["removed"]]
    removed.sort(key=lambda x: (x["similarity"], x["doc"]["id"]))
    kept = [x for p in parts for x in p["examples"]["kept"]]
    kept.sort(key=lambda x: (-x["similarity"], x["doc"]["id"]))
    return {
        "documents": documents,
        "clusters_nonempty": len(sizes),
        "largest_clusters": sizes[:10],
        "median_cluster_size": float(np.median(sizes)) if sizes else 0.0,
        "cluster_size_histogram": size_histogram(sizes),
        "removals": removals,
        "examples": {"removed": removed[:limit], "kept": kept[:limit]},
    }


def attach_snippets(job: dict[str, Any]) -> dict[str, Any]:
    """Fill in the text snippets of the example pairs (one read of the text column per shard involved)."""
    summary, paths = job["summary"], job["paths"]
    wanted: dict[int, set[int]] = defaultdict(set)
    for items in summary["examples"].values():
        for item in items:
            for side in ("doc", "other"):
                wanted[item[side]["shard"]].add(item[side]["row"])
    texts: dict[tuple[int, int], str] = {}
    for shard, rows in sorted(wanted.items()):
        fs, path = storage.filesystem(paths[shard])
        ordered = sorted(rows)
        with fs.open(path, "rb") as handle:
            column = pq.read_table(handle, columns=[TEXT]).column(TEXT).take(pa.array(ordered))
        for row, text in zip(ordered, column.to_pylist(), strict=True):
            texts[(shard, row)] = (text or "")[:SNIPPET_CHARS]
    for items in summary["examples"].values():
        for item in items:
            for side in ("doc", "other"):
                item[side]["snippet"] = texts[(item[side]["shard"], item[side]["row"])]
                item[side]["shard_name"] = job["names"][item[side]["shard"]]
    return summary


def semantic_report_html(summary: dict[str, Any]) -> str:
    """An HTML fragment: parameters, removals per ε, cluster sizes, and borderline pairs as text side by side."""
    esc = html.escape
    decision = summary.get("epsilon")
    parts = [
        "<section class='semantic-dedup'><h2>Semantic dedup (SemDeDup)</h2>",
        f"<p>{summary.get('documents', 0):,} documents in {summary.get('clusters_nonempty', 0):,} clusters "
        f"(k-means k={summary.get('clusters', '?')}, fitted on {summary.get('sample_rows', 0):,} sampled embeddings); "
        f"keep order: <code>{esc(str(summary.get('keep', '')))}</code>; decision ε = {decision}.</p>",
        "<table><tr><th>ε</th><th>similarity above</th><th>removed</th><th>fraction</th>"
        "<th>removed by the any-earlier rule</th></tr>",
    ]
    for row in summary.get("removals", []):
        mark = " <b>(decision)</b>" if row["epsilon"] == decision else ""
        parts.append(
            f"<tr><td>{row['epsilon']}{mark}</td><td>{row['threshold']}</td><td>{row['removed']:,}</td>"
            f"<td>{100 * row['fraction']:.2f}%</td><td>{row['removed_any_earlier']:,}</td></tr>"
        )
    parts.append("</table><h3>Cluster sizes</h3><table><tr><th>size</th><th>clusters</th></tr>")
    for bucket in summary.get("cluster_size_histogram", []):
        parts.append(f"<tr><td>{bucket['min']}–{bucket['max']}</td><td>{bucket['clusters']}</td></tr>")
    parts.append(f"</table><p>Largest clusters: {', '.join(str(s) for s in summary.get('largest_clusters', []))}</p>")
    titles = {
        "removed": "Removed with the lowest similarity (what this ε only just removes)",
        "kept": "Kept with the highest similarity to an earlier kept document (what it only just keeps)",
    }
    for name, title in titles.items():
        parts.append(f"<h3>{esc(title)}</h3><table><tr><th>similarity</th><th>document</th><th>earlier kept</th></tr>")
        for item in summary.get("examples", {}).get(name, []):
            cells = "".join(
                f"<td><small>{esc(item[side]['id'])}</small><pre style='white-space:pre-wrap;max-width:40em'>"
                f"{esc(item[side].get('snippet', ''))}</pre></td>"
                for side in ("doc", "other")
            )
            parts.append(f"<tr><td>{item['similarity']:.4f}<br>cluster {item['cluster']}</td>{cells}</tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)
