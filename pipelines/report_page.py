"""The look every Refinery HTML page shares (run report, mix report, classifier evaluation): one stylesheet,
tables whose number columns are right-aligned, lists that say how many rows they leave out, and SVG charts that
scale to the window (a ``viewBox`` 720 units wide, so nothing is clipped at 760 px and text stays readable).

Pages are self-contained: inline CSS and SVG, images as relative files next to the page or ``data:`` URLs, no
scripts, no fonts or styles from a network; a Content-Security-Policy meta tag forbids anything else, so a page
opened from disk never reaches the network.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

#: Width, in SVG units, of every chart; the page scales it to the window (``width: 100%``).
CHART_WIDTH = 720
#: Colours for series (nodes, mixes): distinguishable and readable on white.
PALETTE = ("#3b6fd4", "#d48a3b", "#3ba55c", "#b8425a", "#7d5bbf", "#2a9d9b", "#8c6d31", "#5f6b7a")

CSP = "default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;padding:12px 16px;max-width:1100px;
color:#1d2430;line-height:1.4}
h1{font-size:22px;margin:.3em 0}h2{font-size:18px;margin-top:1.6em;border-bottom:1px solid #dde2e8}
h3{font-size:15px;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.6em 0;max-width:100%}
td,th{border:1px solid #d5dae0;padding:3px 6px;text-align:left;font-size:12.5px;vertical-align:top}
th{background:#f2f4f7}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
pre,.doc{background:#f6f7f9;padding:6px 8px;white-space:pre-wrap;word-break:break-word;font-size:12px;
font-family:ui-monospace,Menlo,Consolas,monospace;margin:.3em 0}
.doc del{background:#fbd3d3;text-decoration:line-through}.doc ins{background:#cdeccf;text-decoration:none}
.more{color:#5f6b7a;font-style:italic}
.problems{background:#fdecea;border:1px solid #e4a39b;padding:8px 12px;border-radius:4px}
.ok{background:#e8f5e9;border:1px solid #9ccc9f;padding:8px 12px;border-radius:4px}
.warning{background:#fff6e0;border:1px solid #e6c36a;padding:8px 12px;border-radius:4px}
.meta td:first-child{color:#5f6b7a;white-space:nowrap}
.caption{color:#5f6b7a;font-size:13px}
svg{width:100%;height:auto;max-width:900px;display:block}svg text{font-size:12px;fill:#1d2430}
img{max-width:100%;height:auto}figure{margin:.6em 0}
details{margin:.3em 0}summary{cursor:pointer}
nav a{margin-right:1em}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def page(title: str, body: str) -> str:
    """A whole HTML document: the shared stylesheet, a CSP that keeps it off the network, ``body`` inside."""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def more(total: int, shown: int, noun: str = "more") -> str:
    """``+N more`` when a list shows ``shown`` of ``total`` items, else nothing."""
    return f'<p class="more">+{total - shown:,} {esc(noun)}</p>' if total > shown else ""


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    total: int | None = None,
    more_noun: str = "more",
    attributes: Sequence[dict[int, str]] | None = None,
) -> str:
    """A table; columns in ``numeric`` are right-aligned; ``total`` > rows shown adds a ``+N more`` line.

    ``attributes[r][c]`` is extra HTML attributes for cell (r, c) (``data-summary="..."`` lets a test find it).
    Cells are escaped unless given as :class:`Raw`.
    """
    numeric = set(numeric)
    rows = list(rows)
    head = "".join(f"<th{' class=num' if i in numeric else ''}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, cell in enumerate(row):
            extra = (attributes[r].get(c, "") if attributes and r < len(attributes) else "") or ""
            css = ' class="num"' if c in numeric else ""
            content = cell.html if isinstance(cell, Raw) else esc(cell)
            cells.append(f"<td{css}{' ' + extra if extra else ''}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(headers)}">none</td></tr>')
    shown = len(rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>' + (
        more(total, shown, more_noun) if total is not None else ""
    )


def meta_table(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column key/value table without a header row (``Raw`` values are HTML)."""
    body = "".join(
        f"<tr><td>{esc(key)}</td><td>{value.html if isinstance(value, Raw) else esc(value)}</td></tr>"
        for key, value in rows
    )
    return f'<div class="scroll"><table class="meta"><tbody>{body}</tbody></table></div>'


class Raw:
    """Cell content that is already HTML."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def human(value: float | None, unit: str = "", binary: bool = False) -> str:
    """1.23 M, 4.56 GB; ``binary`` uses 1024 steps (bytes as a file system counts them)."""
    if value is None:
        return "-"
    base = 1024.0 if binary else 1000.0
    for power, suffix in ((5, "P"), (4, "T"), (3, "G"), (2, "M"), (1, "k")):
        factor = base**power
        if abs(value) >= factor:
            prefix = (suffix.upper() + "i") if binary else suffix
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:,.0f} {unit}".rstrip() if float(value).is_integer() else f"{value:.2f} {unit}".rstrip()


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "-"


def duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 2 h 03 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def truncate(text: str | None, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis when cut."""
    text = text or ""
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


# -- charts ------------------------------------------------------------------------------------------------------


def svg_open(height: float, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {CHART_WIDTH} {height:.0f}" preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{esc(label)}" xmlns="http://www.w3.org/2000/svg">'
    )


def hbar_chart(
    title: str,
    rows: Sequence[dict[str, Any]],
    log: bool = False,
    label_width: int = 200,
    value_width: int = 210,
) -> str:
    """Horizontal bars: each row ``{label, total, part, text, colour, indent}``: ``total`` in grey, ``part`` over it.

    ``log`` uses a log10 axis (1 … the largest total) so a funnel's tail stays visible beside its head. Labels sit
    in fixed columns (left: the row's name; right: its figures), so no text runs past the chart.
    """
    row_height, top_margin = 22, 24
    span = CHART_WIDTH - label_width - value_width - 10
    largest = max((max(r.get("total", 0) or 0, r.get("part", 0) or 0) for r in rows), default=0) or 1

    def length(value: float) -> float:
        if value <= 0:
            return 0.0
        if log:
            return span * math.log10(1 + value) / math.log10(1 + largest)
        return span * value / largest

    height = top_margin + row_height * len(rows) + 8
    parts = [svg_open(height, title), f'<text x="0" y="14" font-weight="bold">{esc(title)}</text>']
    for i, row in enumerate(rows):
        y = top_margin + i * row_height
        label = truncate(row["label"], (label_width - row.get("indent", 0)) // 7)
        indent = row.get("indent", 0)
        parts.append(f'<text x="{indent}" y="{y + 14}"><title>{esc(row["label"])}</title>{esc(label)}</text>')
        if row.get("total") is not None:
            parts.append(
                f'<rect x="{label_width}" y="{y + 2}" width="{length(row["total"]):.1f}" height="16" fill="#d0d4da"/>'
            )
        parts.append(
            f'<rect x="{label_width}" y="{y + 2}" width="{length(row.get("part") or 0):.1f}" height="16" '
            f'fill="{row.get("colour", PALETTE[0])}"/>'
        )
        parts.append(f'<text x="{CHART_WIDTH - value_width}" y="{y + 14}">{esc(row["text"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 x 10^k at or above ``raw`` (axis ticks people can read)."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def line_chart(
    title: str,
    series: Sequence[dict[str, Any]],
    x_label: str,
    y_label: str,
    y_max: float | None = None,
) -> str:
    """Lines ``{name, x: [...], y: [...]}`` on shared axes, a legend under the plot; 720 units wide."""
    left, right, top, plot_height = 56, 16, 26, 200
    legend_rows = math.ceil(len(series) / 3)
    height = top + plot_height + 40 + 18 * legend_rows
    xs = [x for s in series for x in s["x"]] or [0.0, 1.0]
    ys = [y for s in series for y in s["y"]] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = y_max or max(max(ys), 1e-9) * 1.1
    y1 = nice_step(y1 / 4) * math.ceil(y1 / nice_step(y1 / 4))
    width = CHART_WIDTH - left - right

    def px(x: float) -> float:
        return left + width * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        return top + plot_height * (1 - y / y1)

    parts = [svg_open(height, title), f'<text x="0" y="14" font-weight="bold">{esc(title)}</text>']
    parts.append(f'<rect x="{left}" y="{top}" width="{width}" height="{plot_height}" fill="none" stroke="#c5ccd4"/>')
    step = nice_step(y1 / 4)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    for k in range(int(y1 / step + 1e-9) + 1):
        value = step * k
        parts.append(f'<text x="{left - 6}" y="{py(value) + 4:.1f}" text-anchor="end">{value:.{decimals}f}</text>')
        parts.append(
            f'<line x1="{left}" x2="{left + width}" y1="{py(value):.1f}" y2="{py(value):.1f}" stroke="#eef0f3"/>'
        )
    for k in range(6):
        value = x0 + (x1 - x0) * k / 5
        anchor = "start" if k == 0 else "end" if k == 5 else "middle"
        parts.append(
            f'<text x="{px(value):.1f}" y="{top + plot_height + 16}" text-anchor="{anchor}">{value:,.0f}</text>'
        )
    parts.append(
        f'<text x="{left + width / 2:.0f}" y="{top + plot_height + 32}" text-anchor="middle">{esc(x_label)}</text>'
    )
    parts.append(
        f'<text transform="translate(12,{top + plot_height / 2:.0f}) rotate(-90)" text-anchor="middle">'
        f"{esc(y_label)}</text>"
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s["x"], s["y"], strict=True))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8"/>')
        lx = left + (i % 3) * (width / 3)
        ly = top + plot_height + 50 + 18 * (i // 3)
        parts.append(f'<rect x="{lx:.0f}" y="{ly - 9}" width="12" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 16:.0f}" y="{ly}">{esc(truncate(s["name"], 30))}</text>')
    parts.append("</svg>")
    return "".join(parts)
