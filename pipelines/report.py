"""The run report: ``report.json`` and a self-contained ``report.html`` (inline SVG, no scripts, no network).

From the top: a summary a user can file (documents, characters and tokens in → out, wall time, date, version,
run directory, inputs, recipe fingerprint; problems first), the funnel (log scale, % of input), time per stage
with the global phases and task against wall seconds per segment, CPU use per node over time, and per stage its
top rules with a few rejected documents each and, for stages that edit kept documents, before/after snippets.
Then errors (unreadable files, errored documents, failed shards), the sections global stages and commands wrote
(MinHash clusters, the cost projection) and links to the pages made from this run (mix, classifier evaluation).

It is made from ``run.json``, ``recipe.json``, the completion markers and bounded reads of the output Parquet
files (see :mod:`refinery.pipelines.report_samples`), so ``refinery report RUN_DIR`` redraws it at any time and
its cost does not grow with the corpus.
"""

from __future__ import annotations

import random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import ERROR, FILE, ID, STAGE, TEXT
from refinery.pipelines.report_html import render_html
from refinery.pipelines.report_samples import edit_counts, edit_samples, is_editing, rule_samples
from refinery.pipelines.report_timing import run_timing

__all__ = ["build_report", "register_page", "render_html", "tail_at_line", "terminal_table", "write_report"]

#: Rules listed per stage in the table; rules per stage that get sample documents.
TOP_RULES = 10
SAMPLED_RULES = 5
ERROR_SAMPLE = 50
#: Documents per file, and files, read to measure tokens and UTF-8 bytes per character.
TEXT_SAMPLE_ROWS = 400
TEXT_SAMPLE_FILES = 4
#: Pages made from a run (a mix report, a classifier evaluation) register themselves here; the report links them.
PAGES_DIR = "pages"


def _document_errors(fs: Any, root: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Up to ``ERROR_SAMPLE`` errored documents per segment, with stage, file and error text.

    Bounded like the samples: at most ``ERROR_SAMPLE`` files per segment, read a row group at a time."""
    sample: list[dict[str, Any]] = []
    for segment in summary["segments"]:
        found = 0
        paths = fs.glob(storage.join(root, segment["directory"], "errors", "*.parquet"))
        for path in sorted(p for p in paths if not storage.is_temporary(p))[:ERROR_SAMPLE]:
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.metadata.num_row_groups):
                    for row in parquet.read_row_group(group, columns=[ID, STAGE, FILE, ERROR]).to_pylist():
                        if row[ID] is None:
                            continue  # whole-file problems are listed from run.json
                        sample.append({"segment": segment["index"], **row})
                        found += 1
                        if found >= ERROR_SAMPLE:
                            break
                    if found >= ERROR_SAMPLE:
                        break
            if found >= ERROR_SAMPLE:
                break
    return sample


def top_rules(reasons: dict[str, int]) -> list[tuple[str, int]]:
    """Rules by count, most frequent first (JSON files keep keys sorted by name)."""
    return sorted(reasons.items(), key=lambda item: (-item[1], item[0]))


def _stage_parameters(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each recipe stage's parameters (its thresholds), by stage name; the first entry of a repeated stage."""
    found: dict[str, dict[str, Any]] = {}
    for entry in recipe.get("recipe", {}).get("stages", []):
        found.setdefault(entry.get("stage", ""), {k: v for k, v in entry.items() if k != "stage"})
    return found


def _inputs(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": spec.get("name"), "format": spec.get("format"), "paths": spec.get("paths", [])}
        for spec in recipe.get("recipe", {}).get("inputs", [])
    ]


def text_sample(fs: Any, root: str, directories: list[tuple[str, str]], seed: int) -> dict[str, Any] | None:
    """Characters, UTF-8 bytes and tokens (the default tokenizer) of a bounded, seeded sample of documents.

    ``directories`` are ``(segment directory, kind)`` pairs; of each, up to ``TEXT_SAMPLE_FILES`` files are
    chosen and of each file the first ``TEXT_SAMPLE_ROWS`` rows of its first row group are read.
    """
    rng = random.Random(seed)
    chars = utf8 = tokens = documents = 0
    tokenizer = None
    try:
        from refinery.pipelines.models import load_tokenizer

        tokenizer = load_tokenizer()
    except (OSError, ValueError, ImportError):
        tokenizer = None
    for directory, kind in directories:
        paths = sorted(
            p for p in fs.glob(storage.join(root, directory, kind, "*.parquet")) if not storage.is_temporary(p)
        )
        for path in sorted(rng.sample(paths, min(TEXT_SAMPLE_FILES, len(paths)))):
            with fs.open(path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                if parquet.metadata.num_row_groups == 0 or TEXT not in parquet.schema_arrow.names:
                    continue
                texts = pc.fill_null(parquet.read_row_group(0, columns=[TEXT]).column(TEXT), "")
            texts = texts.slice(0, TEXT_SAMPLE_ROWS)
            chars += int(pc.sum(pc.utf8_length(texts)).as_py() or 0)
            utf8 += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
            documents += len(texts)
            if tokenizer is not None and len(texts):
                encodings = tokenizer.encode_batch([t for t in texts.to_pylist()], add_special_tokens=False)
                tokens += sum(len(e.ids) for e in encodings)
    if not chars:
        return None
    return {
        "documents": documents,
        "chars": chars,
        "bytes_per_char": utf8 / chars,
        "tokens_per_char": tokens / chars if tokenizer is not None else None,
        "tokenizer": "Llama 3 (default tokenizer)" if tokenizer is not None else None,
    }


def _overview(summary: dict[str, Any], recipe: dict[str, Any], root: str, samples: dict[str, Any]) -> dict[str, Any]:
    stages = [stage for segment in summary["segments"] for stage in segment["stages"]]
    first, last = (stages[0], stages[-1]) if stages else ({}, {})
    complete = summary.get("outputs", {}).get("complete", False)
    overview = {
        "documents_in": first.get("in", 0),
        "documents_out": last.get("kept", 0),
        "chars_in": first.get("chars_in", 0),
        "chars_out": last.get("chars_kept", 0),
        "output_complete": complete,
        "last_stage": last.get("stage"),
        "wall_seconds": summary["wall_seconds"],
        "finished_at": summary.get("finished_at"),
        "refinery_version": summary.get("refinery_version"),
        "run_dir": root,
        "recipe": summary["recipe"],
        "fingerprint": summary["fingerprint"],
        "inputs": _inputs(recipe),
        "shards": summary["shards"],
    }
    for side, key in (("in", "input"), ("out", "output")):
        sample = samples.get(key)
        ratio = sample.get("tokens_per_char") if sample else None
        overview[f"tokens_{side}_estimate"] = round(overview[f"chars_{side}"] * ratio) if ratio else None
    return overview


def _guarded(default: Any, notes: list[str], compute: Any, *args: Any) -> Any:
    """``compute(*args)``, or ``default`` with a note when reading samples fails: a report never fails a finished
    run."""
    try:
        return compute(*args)
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        notes.append(f"{type(error).__name__}: {error}")
        return default


def build_report(run_dir: str) -> dict[str, Any]:
    fs, root = storage.filesystem(run_dir)
    summary = storage.read_json(fs, storage.join(root, "run.json"))
    recipe_path = storage.join(root, "recipe.json")
    recipe = storage.read_json(fs, recipe_path) if fs.exists(recipe_path) else {}
    seed = int(recipe.get("recipe", {}).get("seed", 0) or 0)
    parameters = _stage_parameters(recipe)
    funnel, rule_docs, edits = [], [], []
    notes: list[str] = []
    segments = summary["segments"]
    for position, segment in enumerate(segments):
        wanted: dict[str, list[str]] = {}
        for stage in segment["stages"]:
            rules = top_rules(stage["reasons"])
            wanted[stage["stage"]] = [rule for rule, _ in rules[:SAMPLED_RULES]]
            funnel.append(
                {
                    "segment": segment["index"],
                    "stage": stage["stage"],
                    **{k: stage[k] for k in ("in", "kept", "rejected", "errored", "chars_in", "chars_kept", "seconds")},
                    "top_rules": rules[:TOP_RULES],
                    "rules_total": len(rules),
                    "edits": edit_counts(stage),
                    "parameters": parameters.get(stage["stage"], {}),
                }
            )
        sampled = _guarded({}, notes, rule_samples, fs, root, segment, wanted, seed)
        if sampled:
            rule_docs.append({"segment": segment["index"], **sampled})
        editing = [stage["stage"] for stage in segment["stages"] if is_editing(stage)]
        if editing and position > 0:
            edits.append(
                {
                    "segment": segment["index"],
                    "stages": editing,
                    "counts": {s["stage"]: edit_counts(s) for s in segment["stages"] if s["stage"] in editing},
                    **_guarded(
                        {"files_read": 0, "edited_in_sample": 0, "documents": []},
                        notes,
                        edit_samples,
                        fs,
                        root,
                        segment,
                        segments[position - 1],
                        seed,
                    ),
                }
            )
    last_directory = segments[-1]["directory"] if segments else None
    text_samples = {}
    if segments:
        first = segments[0]["directory"]
        pairs = [(first, "kept"), (first, "rejected")]
        text_samples["input"] = _guarded(None, notes, text_sample, fs, root, pairs, seed)
        text_samples["output"] = _guarded(None, notes, text_sample, fs, root, [(last_directory, "kept")], seed)
    return {
        "recipe": summary["recipe"],
        "fingerprint": summary["fingerprint"],
        "wall_seconds": summary["wall_seconds"],
        "shards": summary["shards"],
        "accounting": summary["accounting"],
        "overview": _overview(summary, recipe, root, text_samples),
        "text_samples": text_samples,
        "funnel": funnel,
        "timing": _guarded(None, notes, run_timing, fs, root, summary),
        "report_notes": notes,
        "rule_samples": rule_docs,
        "edit_samples": edits,
        "file_errors": summary["file_errors"],
        "document_errors": _document_errors(fs, root, summary),
        "failures": summary["failures"],
        "blocked": summary.get("blocked"),
        "sections": _extra_sections(fs, root),
        "pages": linked_pages(fs, root),
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


def register_page(run_dir: str, kind: str, title: str, path: str) -> None:
    """Record that a page (``kind``: mix, classifier, ablation) was made from this run, for the report to link.

    ``path`` is where the page's HTML is: absolute, or relative to the run directory. The next report drawn
    (``refinery report RUN_DIR``, or the command that registered it) links it.
    """
    fs, root = storage.filesystem(run_dir)
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{kind}-{path}")[-120:]
    storage.write_json_atomic(
        fs, storage.join(root, PAGES_DIR, f"{slug}.json"), {"kind": kind, "title": title, "path": str(path)}
    )


def linked_pages(fs: Any, root: str) -> list[dict[str, str]]:
    """The pages registered for this run whose HTML still exists, by kind and title."""
    pages = []
    for path in sorted(fs.glob(storage.join(root, PAGES_DIR, "*.json"))):
        try:
            entry = storage.read_json(fs, path)
        except ValueError:
            continue
        target = entry["path"] if entry["path"].startswith("/") else storage.join(root, entry["path"])
        if fs.exists(target):
            pages.append(entry | {"href": _relative_href(root, target)})
    return sorted(pages, key=lambda p: (p["kind"], p["title"]))


def _relative_href(root: str, target: str) -> str:
    import os.path

    if "://" in root or "://" in target:
        return target
    return os.path.relpath(target, root)


def tail_at_line(text: str, limit: int) -> str:
    """The end of ``text`` (a traceback), at most ``limit`` characters, starting at a line boundary."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    newline = cut.find("\n")
    return "…\n" + (cut[newline + 1 :] if 0 <= newline < len(cut) - 1 else cut)


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
