"""The documents behind the numbers: a few rejected documents per rule and before/after snippets of edits.

Every read is bounded, so the report of a billion-document run costs what a small one does: per segment at most
``MAX_FILES`` rejected files are opened (chosen with a seeded shuffle) and of each only its first row group is
read, with only the columns the page shows. Samples are chosen with ``random.Random(seed)``, so the same run
draws the same documents every time the report is redrawn. Texts are cut to ``TEXT_LIMIT`` characters (an
ellipsis marks the cut), so the page stays a few MB whatever the corpus.

Edits (line dedup, line-level heuristics, PII masking) leave the kept document changed; its text before the
edit is the previous segment's kept file of the same shard, read the same bounded way and joined by ``id``.
"""

from __future__ import annotations

import difflib
import random
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import DATE, ID, REASON, SOURCE, TEXT, URL

#: Rejected files opened per segment, rows shown per rule, characters shown per document.
MAX_FILES = 4
PER_RULE = 3
TEXT_LIMIT = 400
#: Edited documents shown per segment, and characters of context around an edit.
PER_EDIT_SEGMENT = 3
CONTEXT = 120
#: Counters that say a stage edits kept documents (and by how much).
EDIT_COUNTERS = ("lines_removed", "chars_removed")
EDIT_SUFFIX = "_masked"
#: Columns every document has; any other column a rejected row carries is a value a stage recorded.
BASE_COLUMNS = {ID, TEXT, SOURCE, URL, DATE, REASON}
#: Columns too large or too opaque to print beside a document.
HIDDEN_COLUMNS = {"embedding"}


def _first_row_group(fs: Any, path: str, wanted: list[str]) -> pa.Table:
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        if parquet.metadata.num_row_groups == 0:
            return pa.table({})
        columns = [c for c in wanted if c in parquet.schema_arrow.names]
        return parquet.read_row_group(0, columns=columns)


def _files(fs: Any, root: str, directory: str, kind: str) -> list[str]:
    paths = fs.glob(storage.join(root, directory, kind, "*.parquet"))
    return sorted(p for p in paths if not storage.is_temporary(p))


def _value_columns(fs: Any, path: str) -> list[str]:
    with fs.open(path, "rb") as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
    return [n for n in names if n not in BASE_COLUMNS and n not in HIDDEN_COLUMNS]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:80]


def rule_samples(
    fs: Any, root: str, segment: dict[str, Any], top_rules: dict[str, list[str]], seed: int
) -> dict[str, dict[str, Any]]:
    """``{reason: {"documents": [...], "read_rows": n}}`` for the listed rules of one segment.

    ``top_rules`` maps a stage name to its rule reasons (``stage:rule``). Each document is
    ``{id, source, url, text, values}``; ``values`` holds the columns the stages recorded on it (a language
    score, a duplicate's cluster), the measured value where a stage records one.
    """
    wanted_reasons = {reason for reasons in top_rules.values() for reason in reasons}
    files = _files(fs, root, segment["directory"], "rejected")
    if not files or not wanted_reasons:
        return {}
    rng = random.Random(f"{seed}:{segment['index']}")
    chosen = sorted(rng.sample(files, min(MAX_FILES, len(files))))
    pools: dict[str, list[dict[str, Any]]] = {reason: [] for reason in wanted_reasons}
    read_rows = 0
    for path in chosen:
        values = _value_columns(fs, path)
        table = _first_row_group(fs, path, [ID, SOURCE, URL, REASON, TEXT, *values])
        read_rows += table.num_rows
        if REASON not in table.column_names:
            continue
        reasons = table.column(REASON).to_pylist()
        rows = [i for i, reason in enumerate(reasons) if reason in pools]
        if not rows:
            continue
        subset = table.take(pa.array(rows, pa.int64())).to_pylist()
        for row in subset:
            pools[row[REASON]].append(
                {
                    "id": row.get(ID),
                    "source": row.get(SOURCE),
                    "url": row.get(URL),
                    "chars": len(row.get(TEXT) or ""),
                    "text": row.get(TEXT) or "",
                    "values": {k: _format_value(row[k]) for k in values if row.get(k) is not None},
                }
            )
    samples = {}
    for reason, pool in sorted(pools.items()):
        picked = rng.sample(pool, min(PER_RULE, len(pool))) if pool else []
        for document in picked:
            document["text"] = _truncate(document["text"], TEXT_LIMIT)
        samples[reason] = {"documents": picked, "found": len(pool)}
    return {"files_read": len(chosen), "rows_read": read_rows, "rules": samples}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def is_editing(stage: dict[str, Any]) -> bool:
    """True when the stage edited kept documents in this run (it counted removed lines or masked spans)."""
    counters = stage.get("counters", {})
    return any(counters.get(k, 0) > 0 for k in EDIT_COUNTERS) or any(
        k.endswith(EDIT_SUFFIX) and v > 0 for k, v in counters.items()
    )


def edit_counts(stage: dict[str, Any]) -> dict[str, int]:
    """The stage's edit counters (lines and characters removed, spans masked by kind)."""
    counters = stage.get("counters", {})
    return {k: v for k, v in counters.items() if k in EDIT_COUNTERS or k.endswith(EDIT_SUFFIX)}


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings."""
    limit = min(len(a), len(b))
    index = 0
    while index < limit and a[index] == b[index]:
        index += 1
    return index


def edit_snippet(before: str, after: str) -> dict[str, Any]:
    """The first changed region of a document, with ``CONTEXT`` characters around it, before and after.

    Lines are compared first (fast on long documents), then the first changed block is narrowed to the characters
    that differ. Returned as fragments ``[(kind, text)]`` (``same``, ``removed``, ``added``), so the page can
    strike removed text through and highlight what replaced it (a mask such as ``<EMAIL>``).
    """
    before_lines, after_lines = before.splitlines(keepends=True), after.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)
    opcodes = [op for op in matcher.get_opcodes() if op[0] != "equal"]
    if not opcodes:
        return {"fragments": [], "changes": 0}
    _, i1, i2, j1, j2 = opcodes[0]
    old, new = "".join(before_lines[i1:i2]), "".join(after_lines[j1:j2])
    prefix = _common_prefix(old, new)
    suffix = _common_prefix(old[prefix:][::-1], new[prefix:][::-1])
    lead = "".join(before_lines[:i1]) + old[:prefix]
    trail = old[len(old) - suffix :] + "".join(before_lines[i2:])
    removed, added = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if len(removed) > 2 * CONTEXT:
        removed = removed[:CONTEXT] + " … " + removed[-CONTEXT // 2 :]
    fragments = [
        ("same", ("…" if len(lead) > CONTEXT else "") + lead[-CONTEXT:]),
        ("removed", removed),
        ("added", added[: 2 * CONTEXT]),
        ("same", trail[:CONTEXT] + ("…" if len(trail) > CONTEXT else "")),
    ]
    return {"fragments": [f for f in fragments if f[1]], "changes": len(opcodes)}


def edit_samples(fs: Any, root: str, segment: dict[str, Any], previous: dict[str, Any], seed: int) -> dict[str, Any]:
    """A few kept documents this segment edited, each as a before/after snippet (bounded reads, seeded choice)."""
    kept = _files(fs, root, segment["directory"], "kept")
    rng = random.Random(f"{seed}:edits:{segment['index']}")
    order = list(kept)
    rng.shuffle(order)
    found: list[dict[str, Any]] = []
    files_read = 0
    for path in order[:MAX_FILES]:
        name = path.rsplit("/", 1)[-1]
        before_path = storage.join(root, previous["directory"], "kept", name)
        if not fs.exists(before_path):
            continue
        files_read += 1
        after = _first_row_group(fs, path, [ID, TEXT])
        before = _first_row_group(fs, before_path, [ID, TEXT])
        if not after.num_rows or not before.num_rows:
            continue
        before_text = dict(zip(before.column(ID).to_pylist(), before.column(TEXT).to_pylist(), strict=True))
        for doc_id, text in zip(after.column(ID).to_pylist(), after.column(TEXT).to_pylist(), strict=True):
            original = before_text.get(doc_id)
            if original is not None and original != text:
                found.append({"id": doc_id, "before": original, "after": text or ""})
        if len(found) >= 20 * PER_EDIT_SEGMENT:
            break
    picked = sorted(rng.sample(found, min(PER_EDIT_SEGMENT, len(found))), key=lambda d: d["id"])
    return {
        "files_read": files_read,
        "edited_in_sample": len(found),
        "documents": [
            {
                "id": d["id"],
                "chars_before": len(d["before"]),
                "chars_after": len(d["after"]),
                **edit_snippet(d["before"], d["after"]),
            }
            for d in picked
        ],
    }
