"""``report.html`` from the report dict (:func:`refinery.pipelines.report.build_report`): layout and charts only.

Every figure a test or a user may check against ``run.json`` carries a ``data-summary`` attribute naming it.
"""

from __future__ import annotations

from typing import Any

from refinery.pipelines.report_page import (
    PALETTE,
    Raw,
    duration,
    esc,
    hbar_chart,
    human,
    line_chart,
    meta_table,
    more,
    page,
    percent,
    table,
    truncate,
)

LIST_LIMIT = 100
INPUT_PATHS_SHOWN = 3
FAILURE_TAIL = 2000


def problems(report: dict[str, Any]) -> list[str]:
    found = []
    if report["failures"]:
        found.append(f"{len(report['failures'])} shard(s) failed (see Failed shards; rerun to retry them)")
    blocked = report.get("blocked")
    if blocked:
        found.append(
            f"stopped before segment {blocked['segment']} ({blocked['stage']}): a global stage runs only on "
            "complete input"
        )
    if not report["accounting"]["ok"]:
        found.append(f"accounting mismatch: {report['accounting'].get('error')}")
    if report["file_errors"]:
        found.append(f"{len(report['file_errors']):,} unreadable input file(s) (see Unreadable files)")
    errored = sum(step["errored"] for step in report["funnel"])
    if errored:
        found.append(f"{errored:,} document(s) errored (see Errored documents)")
    return found


def _status(report: dict[str, Any]) -> str:
    found = problems(report)
    if not found:
        return (
            '<p class="ok" data-summary="status">Every document accounted for: kept, or rejected with a named rule.</p>'
        )
    items = "".join(f"<li>{esc(p)}</li>" for p in found)
    return f'<div class="problems" data-summary="status"><b>PROBLEMS: {esc("; ".join(found))}</b><ul>{items}</ul></div>'


def _summary(report: dict[str, Any]) -> str:
    o = report["overview"]
    sample = report.get("text_samples", {}).get("output") or {}

    def row(name: str, key: str, estimate: bool = False) -> tuple[list[Any], dict[int, str]]:
        into, out = o[f"{key}_in{'_estimate' if estimate else ''}"], o[f"{key}_out{'_estimate' if estimate else ''}"]
        approx = "≈ " if estimate else ""
        cells = [
            name,
            "-" if into is None else f"{approx}{into:,}",
            "-" if out is None else f"{approx}{out:,}",
            "-" if into in (None, 0) or out is None else percent(out, into),
        ]
        attrs = {} if estimate else {1: f'data-summary="{key}_in"', 2: f'data-summary="{key}_out"'}
        return cells, attrs

    rows, attrs = zip(
        row("documents", "documents"), row("characters", "chars"), row("tokens", "tokens", True), strict=True
    )
    counts = table(["", "in", "out", "out / in"], rows, numeric=(1, 2, 3), attributes=list(attrs))
    token_note = (
        f"Tokens are estimated: characters × tokens per character of {report['text_samples']['input']['documents']:,} "
        f"input and {sample.get('documents', 0):,} output documents (a seeded sample, {esc(sample.get('tokenizer'))})."
        if o.get("tokens_out_estimate") is not None and report["text_samples"].get("input")
        else "Tokens: no tokenizer available to estimate them."
    )
    if not o["output_complete"]:
        token_note += " The run did not finish: “out” is what its last finished stage kept."
    inputs = []
    for spec in o["inputs"]:
        paths = spec["paths"]
        shown = ", ".join(paths[:INPUT_PATHS_SHOWN]) + (
            f" (+{len(paths) - INPUT_PATHS_SHOWN} more)" if len(paths) > INPUT_PATHS_SHOWN else ""
        )
        inputs.append(f"<b>{esc(spec['name'])}</b> ({esc(spec['format'])}): {esc(shown)}")
    shards = o["shards"]
    meta = [
        (
            "wall time",
            Raw(
                f'<span data-summary="wall_seconds" data-value="{o["wall_seconds"]}">'
                f"{esc(duration(o['wall_seconds']))}</span> "
                f"({o['wall_seconds']:,.1f} s, this invocation)"
            ),
        ),
        ("finished", o.get("finished_at") or "-"),
        ("Refinery version", o.get("refinery_version") or "-"),
        ("run directory", Raw(f"<code>{esc(o['run_dir'])}</code>")),
        (
            "recipe",
            Raw(f'{esc(o["recipe"])} · fingerprint <code data-summary="fingerprint">{esc(o["fingerprint"])}</code>'),
        ),
        ("shards", f"{shards['shards']:,} ({shards['processed']:,} processed this run, {shards['resumed']:,} resumed)"),
        ("inputs", Raw("<br>".join(inputs) or "-")),
    ]
    meta_html = meta_table(meta)
    return f'<section id="summary"><h2>Summary</h2>{counts}<p class="caption">{token_note}</p>{meta_html}</section>'


def _funnel(report: dict[str, Any]) -> str:
    funnel = report["funnel"]
    if not funnel:
        return "<p><b>No stage finished any shard</b>: every shard failed; see Failed shards below.</p>"
    first_docs, first_chars = funnel[0]["in"] or 1, funnel[0]["chars_in"] or 1
    documents = hbar_chart(
        "Documents kept per stage (log scale; grey: the stage's input)",
        [
            {
                "label": f"{s['segment']}·{s['stage']}",
                "total": s["in"],
                "part": s["kept"],
                "text": f"{human(s['kept'])} of {human(s['in'])} · {percent(s['kept'], first_docs)} of input",
            }
            for s in funnel
        ],
        log=True,
    )
    chars = hbar_chart(
        "Characters kept per stage (log scale)",
        [
            {
                "label": f"{s['segment']}·{s['stage']}",
                "total": s["chars_in"],
                "part": s["chars_kept"],
                "text": f"{human(s['chars_kept'])} of {human(s['chars_in'])} · {percent(s['chars_kept'], first_chars)}",
                "colour": PALETTE[2],
            }
            for s in funnel
        ],
        log=True,
    )
    rows = [
        [
            f"{s['segment']}·{s['stage']}",
            f"{s['in']:,}",
            f"{s['kept']:,}",
            f"{s['rejected']:,}",
            f"{s['errored']:,}",
            percent(s["kept"], first_docs),
            f"{s['chars_in']:,}",
            f"{s['chars_kept']:,}",
            f"{s['seconds']:.2f}",
        ]
        for s in funnel
    ]
    stages = table(
        ["stage", "in", "kept", "rejected", "errored", "% of input", "chars in", "chars kept", "task s"],
        rows,
        numeric=range(1, 9),
    )
    return f'<section id="funnel"><h2>Funnel</h2>{documents}{chars}<h3>Stages</h3>{stages}</section>'


def _timing(report: dict[str, Any]) -> str:
    timing = report.get("timing")
    funnel = report["funnel"]
    if not timing or not funnel:
        return ""
    bytes_per_char = (report.get("text_samples", {}).get("input") or {}).get("bytes_per_char") or 1.0
    by_segment = {s["segment"]: s for s in timing["segments"]}
    bars = []
    for step in funnel:
        seg = by_segment.get(step["segment"], {})
        seconds = step["seconds"]
        rate = step["chars_in"] * bytes_per_char / 1e6 / seconds if seconds > 0 else 0.0
        bars.append(
            {
                "label": f"{step['segment']}·{step['stage']}",
                "part": seconds,
                "text": f"{seconds:.2f} task s · {rate:,.2f} MB/s",
                "colour": PALETTE[1],
            }
        )
        first_of_segment = step["stage"] == seg.get("stages", "").split("+")[0]
        for phase, phase_seconds in (seg.get("phase_seconds") or {}).items() if first_of_segment else ():
            bars.append(
                {
                    "label": f"▸ {phase}",
                    "indent": 16,
                    "part": phase_seconds,
                    "text": f"{phase_seconds:.2f} s wall (global phase)",
                    "colour": PALETTE[4],
                }
            )
    chart = hbar_chart("Time per stage: task seconds (orange) and global phases' wall seconds (purple)", bars)
    rows = [
        [
            Raw(f'{s["segment"]} <span class="caption">{esc(s["stages"].replace("+", " + "))}</span>'),
            f"{s['shards']:,}",
            "-" if s["wall_span_seconds"] is None else f"{s['wall_span_seconds']:.2f}",
            f"{s['phase_wall_seconds']:.2f}",
            f"{s['task_seconds']:.2f}",
            f"{s['stage_seconds']:.2f}",
            f"{s['task_overhead_seconds']:.2f}",
            "-" if s["cpu_seconds"] is None else f"{s['cpu_seconds']:.2f}",
            "-" if s["parallelism"] is None else f"{s['parallelism']:.2f}",
        ]
        for s in timing["segments"]
    ]
    segments = table(
        [
            "segment",
            "shard tasks",
            "tasks' wall span s",
            "phases wall s",
            "task s",
            "in stages s",
            "task I/O + overhead s",
            "CPU s",
            "tasks at once",
        ],
        rows,
        numeric=range(1, 9),
    )
    missing = any(s["wall_span_seconds"] is None for s in timing["segments"])
    reconcile = (
        (
            '<p class="warning">Some completion markers have no timestamps (an older version wrote them): their '
            "segments' wall spans are unknown and counted in the driver's time below.</p>"
            if missing
            else ""
        )
        + f"<p>Run wall time {timing['wall_seconds']:,.2f} s = segments' task spans and global phases "
        f"{timing['segments_and_phases_seconds']:,.2f} s + driver {timing['driver_seconds']:,.2f} s (Ray start-up, "
        "planning, reading stats, this report). Task seconds are summed over parallel tasks, so they exceed wall "
        "time when tasks run at once. Throughput is UTF-8 bytes of text per task second: characters × "
        f"{bytes_per_char:.3f} bytes per character, measured on the input sample.</p>"
    )
    return (
        f'<section id="time"><h2>Time per stage</h2>{chart}<h3>Task against wall seconds per segment</h3>{segments}'
        f"{reconcile}{_cpu(timing)}</section>"
    )


def _cpu(timing: dict[str, Any]) -> str:
    line = timing.get("cpu_timeline") or {}
    if not line.get("nodes"):
        return (
            '<p class="caption">CPU use over time: the completion markers have no timestamps '
            "(written by an older version).</p>"
        )
    series = [
        {"name": f"node {node[:12]}", "x": line["seconds"], "y": values} for node, values in line["nodes"].items()
    ]
    chart = line_chart(
        "CPU use per node over time (shard tasks)", series, "seconds since the first shard task started", "cores busy"
    )
    return (
        f'<h3>CPU per node</h3>{chart}<p class="caption">Each shard task\'s CPU seconds (its worker process, '
        "Arrow threads included) spread over its wall interval. Global phases run between the segments (the gaps); "
        "their tasks record no CPU time.</p>"
    )


def _rules(report: dict[str, Any]) -> str:
    samples = {s["segment"]: s for s in report.get("rule_samples", [])}
    edits = {e["segment"]: e for e in report.get("edit_samples", [])}
    parts = []
    for step in report["funnel"]:
        if not step["top_rules"] and not step.get("edits"):
            continue
        name = f"{step['segment']}·{step['stage']}"
        params = ", ".join(f"{k}={v}" for k, v in sorted(step.get("parameters", {}).items()))
        share = percent(step["rejected"], step["in"])
        head = f'<h3>{esc(name)}</h3><p class="caption">rejected {step["rejected"]:,} of {step["in"]:,} ({share})'
        if step.get("edits"):
            head += " · edited kept documents: " + ", ".join(
                f"{k.replace('_', ' ')} {v:,}" for k, v in step["edits"].items()
            )
        head += (
            f" · parameters: <code>{esc(truncate(params, 300))}</code>" if params else " · default parameters"
        ) + "</p>"
        rules = table(
            ["rule", "documents", "% of stage input"],
            [[rule, f"{n:,}", percent(n, step["in"])] for rule, n in step["top_rules"]],
            numeric=(1, 2),
            total=step.get("rules_total", len(step["top_rules"])),
            more_noun="more rules",
        )
        docs = []
        found = samples.get(step["segment"], {}).get("rules", {})
        for rule, _ in step["top_rules"]:
            entry = found.get(rule)
            if entry is None:
                continue
            items = "".join(_document(doc) for doc in entry["documents"]) or (
                '<p class="caption">none of this rule in the rows read for samples</p>'
            )
            opened = " open" if entry["documents"] and not any(" open>" in d for d in docs) else ""
            count = len(entry["documents"])
            label = f"{count} sample document{'s' if count != 1 else ''}" if count else "no sample in the rows read"
            docs.append(f"<details{opened}><summary>{esc(rule)}: {label}</summary>{items}</details>")
        parts.append(head + rules + "".join(docs))
        edit = edits.get(step["segment"])
        if edit and step["stage"] == edit["stages"][-1]:
            parts.append(_edits(edit))
    info = ""
    if report.get("rule_samples"):
        read = sum(s["rows_read"] for s in report["rule_samples"])
        info = (
            f'<p class="caption">Samples: a seeded choice among {read:,} rejected rows read (the first row group of at '
            "most 4 files per segment), texts cut at 400 characters (…). Values are the columns a stage recorded on "
            "the document; thresholds are the stage's parameters.</p>"
        )
    return f'<section id="rules"><h2>Rules and the documents behind them</h2>{info}{"".join(parts)}</section>'


def _document(doc: dict[str, Any]) -> str:
    values = " · ".join(f"{esc(k)} = <b>{esc(v)}</b>" for k, v in doc.get("values", {}).items())
    where = esc(doc.get("url") or doc.get("source") or "")
    return (
        f'<div class="caption">{esc(doc["id"])} · {where} · {doc.get("chars", 0):,} chars'
        f"{' · ' + values if values else ''}</div>"
        f'<div class="doc">{esc(doc["text"]) or "<i>(no text)</i>"}</div>'
    )


def _edits(edit: dict[str, Any]) -> str:
    snippets = []
    for doc in edit["documents"]:
        body = "".join(
            f"<del>{esc(text)}</del>"
            if kind == "removed"
            else f"<ins>{esc(text)}</ins>"
            if kind == "added"
            else esc(text)
            for kind, text in doc["fragments"]
        )
        snippets.append(
            f'<div class="caption">{esc(doc["id"])}: {doc["chars_before"]:,} → {doc["chars_after"]:,} chars, '
            f'{doc["changes"]} changed block(s); the first:</div><div class="doc">{body}</div>'
        )
    stages = " + ".join(edit["stages"])
    listed = snippets or ['<p class="caption">no edited document in the rows read</p>']
    return (
        f"<details open><summary>Edits to kept documents in segment {edit['segment']} ({esc(stages)}): "
        f"before → after, {len(edit['documents'])} of {edit['edited_in_sample']:,} edited documents seen</summary>"
        f"{''.join(listed)}</details>"
    )


def _errors(report: dict[str, Any]) -> str:
    files = report["file_errors"]
    file_rows = [[e["shard"], e["file"], e["error"]] for e in files[:LIST_LIMIT]]
    docs = report["document_errors"]
    doc_rows = [[e["segment"], e["stage"], e["file"], e["id"], truncate(e["error"], 300)] for e in docs]
    errored = sum(step["errored"] for step in report["funnel"])
    failures = "".join(
        f"<h3>{esc(f['shard'])}</h3><p>{esc(f['file'])}</p><pre>{esc(_tail(f['error']))}</pre>"
        for f in report["failures"]
    )
    unreadable = table(["shard", "file", "error"], file_rows, total=len(files), more_noun="more unreadable files")
    errored_table = table(["segment", "stage", "file", "id", "error"], doc_rows, numeric=(0,))
    errored_more = more(errored, len(docs), "more errored documents (see segments/NN/errors/)")
    return (
        f'<section id="errors"><h2>Unreadable files</h2>{unreadable}'
        f"<h2>Errored documents (sample)</h2>{errored_table}{errored_more}"
        f"<h2>Failed shards</h2>{failures or '<p>none</p>'}</section>"
    )


def _tail(text: str) -> str:
    from refinery.pipelines.report import tail_at_line

    return tail_at_line(text, FAILURE_TAIL)


def _pages(report: dict[str, Any]) -> str:
    pages = report.get("pages") or []
    if not pages:
        return ""
    items = "".join(f'<li>{esc(p["kind"])}: <a href="{esc(p["href"])}">{esc(p["title"])}</a></li>' for p in pages)
    return f'<section id="pages"><h2>Made from this run</h2><ul>{items}</ul></section>'


def render_html(report: dict[str, Any]) -> str:
    o = report.get("overview", {})
    directory = o.get("run_dir", "").rstrip("/").rsplit("/", 1)[-1]
    title = f"Refinery run: {report['recipe']} · {directory} · {o.get('finished_at') or ''}"
    nav = (
        '<nav><a href="#summary">Summary</a><a href="#funnel">Funnel</a><a href="#time">Time</a>'
        '<a href="#rules">Rules</a><a href="#errors">Errors</a>'
        + ('<a href="#pages">Made from this run</a>' if report.get("pages") else "")
        + (
            '<a href="#projection">Projection</a>'
            if any('id="projection"' in x["html"] for x in report.get("sections", []))
            else ""
        )
        + "</nav>"
    )
    sections = "".join(s["html"] for s in report.get("sections", []))
    notes = "".join(
        f'<p class="warning">Part of this report could not be drawn: {esc(n)}</p>'
        for n in report.get("report_notes", [])
    )
    body = (
        f"<h1>{esc(title)}</h1>{_status(report)}{notes}{nav}{_summary(report) if o else ''}{_pages(report)}"
        f"{_funnel(report)}{_timing(report)}{_rules(report)}{_errors(report)}{sections}"
    )
    return page(title, body)
