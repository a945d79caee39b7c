"""The run report: ``report.json`` and a self-contained ``report.html`` (inline SVG, no scripts, no CDN).

It shows the funnel (documents and characters in and kept per stage), the top rejection rules per stage,
errors with their files (unreadable files and a sample of errored documents), and time per stage. It is made
from ``run.json`` and the errors shards alone, so ``refinery report RUN_DIR`` can redraw it at any time.
"""

from __future__ import annotations

import html
from typing import Any

import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import ERROR, FILE, ID, STAGE

TOP_RULES = 10
ERROR_SAMPLE = 50


def _document_errors(fs: Any, root: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to ``ERROR_SAMPLE`` errored documents per segment, with stage, file and error text."""
    sample: list[dict[str, Any]] = []
    for segment in summary["segments"]:
        found = 0
        paths = fs.glob(storage.join(root, segment["directory"], "errors", "*.parquet"))
        for path in sorted(p for p in paths if not storage.is_temporary(p)):
            with fs.open(path, "rb") as handle:
                table = pq.read_table(handle, columns=[ID, STAGE, FILE, ERROR])
            for row in table.to_pylist():
                if row[ID] is None:
                    continue  # whole-file problems are listed from run.json
                sample.append({"segment": segment["index"], **row})
                found += 1
                if found >= ERROR_SAMPLE:
                    break
            if found >= ERROR_SAMPLE:
                break
    return sample


def top_rules(reasons: dict[str, int]) -> list[tuple[str, int]]:
    """Rules by count, most frequent first (JSON files keep keys sorted by name)."""
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))


def build_report(run_dir: str) -> dict[str, Any]:
    fs, root = storage.filesystem(run_dir)
    summary = storage.read_json(fs, storage.join(root, "run.json"))
    funnel = []
    for segment in summary["segments"]:
        for stage in segment["stages"]:
            funnel.append(
                {
                    "segment": segment["index"],
                    "stage": stage["stage"],
                    **{k: stage[k] for k in ("in", "kept", "rejected", "errored", "chars_in", "chars_kept", "seconds")},
                    "top_rules": top_rules(stage["reasons"])[:TOP_RULES],
                }
            )
    return {
        "recipe": summary["recipe"],
        "fingerprint": summary["fingerprint"],
        "wall_seconds": summary["wall_seconds"],
        "shards": summary["shards"],
        "accounting": summary["accounting"],
        "funnel": funnel,
        "file_errors": summary["file_errors"],
        "document_errors": _document_errors(fs, root, summary),
        "failures": summary["failures"],
        "blocked": summary.get("blocked"),
        "sections": _extra_sections(fs, root),
    }


#: Report fragments written by stages and commands (a global stage's clusters, a cost projection):
#: ``RUN/segments/NN/work/report_section.html`` and ``RUN/*.section.html``, included in sorted order.
SECTION_GLOBS = ("segments/*/work/report_section.html", "*.section.html")


def _extra_sections(fs: Any, root: str) -> list[dict[str, str]]:
    sections = []
    for pattern in SECTION_GLOBS:
        for path in sorted(fs.glob(storage.join(root, pattern))):
            with fs.open(path, "rb") as handle:
                sections.append({"file": path[len(root) + 1 :], "html": handle.read().decode("utf-8", "replace")})
    return sections


def tail_at_line(text: str, limit: int) -> str:
    """The end of ``text`` (a traceback), at most ``limit`` characters, starting at a line boundary."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return "…\n" + (cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut)


def _bars(funnel: list[dict[str, Any]], key_in: str, key_kept: str, title: str) -> str:
    """A horizontal funnel: one bar per stage, its input in grey and what it kept in blue."""
    width, row, left = 900, 26, 170
    top = max((step[key_in] for step in funnel), default=0) or 1
    height = row * len(funnel) + 30
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}">']
    parts.append(f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>')
    for i, step in enumerate(funnel):
        y = 24 + i * row
        span = width - left - 200  # room for the "kept / in" label
        w_in = span * step[key_in] / top
        w_kept = span * step[key_kept] / top
        label = html.escape(f"{step['segment']}·{step['stage']}")
        parts.append(f'<text x="0" y="{y + 15}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w_in:.1f}" height="18" fill="#d0d4da"/>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w_kept:.1f}" height="18" fill="#3b6fd4"/>')
        parts.append(f'<text x="{left + w_in + 6:.1f}" y="{y + 14}">{step[key_kept]:,} / {step[key_in]:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _time_bars(funnel: list[dict[str, Any]]) -> str:
    """Where a run's cost goes: seconds per stage (summed over shards) and MB of text per second."""
    width, row, left = 900, 26, 170
    top = max((step["seconds"] for step in funnel), default=0) or 1
    parts = [f'<svg width="{width}" height="{row * len(funnel) + 30}" role="img" aria-label="time per stage">']
    parts.append('<text x="0" y="14" font-weight="bold">Time per stage (task seconds) and text throughput</text>')
    for i, step in enumerate(funnel):
        y = 24 + i * row
        w = (width - left - 230) * step["seconds"] / top
        rate = step["chars_in"] / 1e6 / step["seconds"] if step["seconds"] > 0 else 0.0
        label = html.escape(f"{step['segment']}·{step['stage']}")
        parts.append(f'<text x="0" y="{y + 15}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="18" fill="#d48a3b"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 14}">{step["seconds"]:.2f} s · {rate:.2f} MB/s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _problems(report: dict[str, Any]) -> list[str]:
    problems = []
    if report["failures"]:
        problems.append(f"{len(report['failures'])} shard(s) failed (see Failed shards; rerun to retry them)")
    blocked = report.get("blocked")
    if blocked:
        problems.append(
            f"stopped before segment {blocked['segment']} ({blocked['stage']}): a global stage runs only on "
            "complete input"
        )
    if not report["accounting"]["ok"]:
        problems.append(f"accounting mismatch: {report['accounting'].get('error')}")
    return problems


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body or '<tr><td>none</td></tr>'}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    funnel = report["funnel"]
    problems = _problems(report)
    status = "every document accounted for" if not problems else "PROBLEMS: " + "; ".join(problems)
    stage_rows = [
        [
            f"{s['segment']}·{s['stage']}",
            f"{s['in']:,}",
            f"{s['kept']:,}",
            f"{s['rejected']:,}",
            f"{s['errored']:,}",
            f"{s['chars_in']:,}",
            f"{s['chars_kept']:,}",
            f"{s['seconds']:.2f}",
        ]
        for s in funnel
    ]
    rule_rows = [[f"{s['segment']}·{s['stage']}", rule, f"{n:,}"] for s in funnel for rule, n in s["top_rules"]]
    file_rows = [[e["shard"], e["file"], e["error"]] for e in report["file_errors"]]
    doc_rows = [[e["segment"], e[STAGE], e[FILE], e[ID], e[ERROR][:300]] for e in report["document_errors"]]
    failure_rows = "".join(
        f"<h3>{html.escape(f['shard'])}</h3><p>{html.escape(f['file'])}</p>"
        f"<pre>{html.escape(tail_at_line(f['error'], 2000))}</pre>"
        for f in report["failures"]
    )
    if funnel:
        funnel_html = (
            _bars(funnel, "in", "kept", "Documents in → kept per stage")
            + _bars(funnel, "chars_in", "chars_kept", "Characters in → kept per stage")
            + "<h2>Time per stage</h2>"
            + _time_bars(funnel)
        )
    else:
        funnel_html = "<p><b>No stage finished any shard</b>: every shard failed; see Failed shards below.</p>"
    sections = "".join(s["html"] for s in report.get("sections", []))
    shards = report["shards"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Refinery run report: {html.escape(report["recipe"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}}
pre{{background:#f6f6f6;padding:8px;white-space:pre-wrap;font-size:12px}}svg text{{font-size:12px}}</style></head>
<body><h1>Run report: {html.escape(report["recipe"])}</h1>
<p>Recipe fingerprint {html.escape(report["fingerprint"])} · {shards["shards"]} shards ({shards["processed"]} processed
this run, {shards["resumed"]} resumed) · {report["wall_seconds"]:.1f} s · <b>{html.escape(status)}</b></p>
<h2>Funnel</h2>{funnel_html}
<h2>Stages</h2>{_table(["stage", "in", "kept", "rejected", "errored", "chars in", "chars kept", "seconds"], stage_rows)}
<h2>Top rejection rules</h2>{_table(["stage", "rule", "documents"], rule_rows)}
<h2>Unreadable files</h2>{_table(["shard", "file", "error"], file_rows)}
<h2>Errored documents (sample)</h2>{_table(["segment", "stage", "file", "id", "error"], doc_rows)}
<h2>Failed shards</h2>{failure_rows or "<p>none</p>"}
{sections}
</body></html>
"""


def write_report(run_dir: str) -> dict[str, Any]:
    """Write ``report.json`` and ``report.html`` into the run directory and return the report."""
    fs, root = storage.filesystem(run_dir)
    report = build_report(run_dir)
    storage.write_json_atomic(fs, storage.join(root, "report.json"), report)
    storage.write_bytes_atomic(fs, storage.join(root, "report.html"), render_html(report).encode())
    return report


def terminal_table(summary: dict[str, Any]) -> str:
    """The summary table printed at the end of ``refinery run``."""
    lines = [f"{'stage':<28}{'in':>10}{'kept':>10}{'rejected':>10}{'errored':>9}{'seconds':>9}  top rule"]
    for segment in summary["segments"]:
        for stage in segment["stages"]:
            top = next(iter(top_rules(stage["reasons"])), ("", 0))
            rule = f"{top[0]} ({top[1]:,})" if top[0] else ""
            lines.append(
                f"{str(segment['index']) + '·' + stage['stage']:<28}{stage['in']:>10,}{stage['kept']:>10,}"
                f"{stage['rejected']:>10,}{stage['errored']:>9,}{stage['seconds']:>9.2f}  {rule}"
            )
    shards = summary["shards"]
    lines.append(
        f"shards: {shards['shards']} ({shards['processed']} processed, {shards['resumed']} resumed); "
        f"unreadable files: {len(summary['file_errors'])}; failed shards: {len(summary['failures'])}; "
        f"accounting: {'ok' if summary['accounting']['ok'] else 'MISMATCH'}"
    )
    return "\n".join(lines)
