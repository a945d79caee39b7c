"""Where an ablation's documents come from: the run's output, and each stage's rejected documents.

A run writes, per segment, the documents each stage rejected *as they entered that stage*, with a ``reason``
``stage:rule`` (docs/architecture.md §2). Putting a stage's decisions back therefore means adding its rejected rows
to the run's final output: exactly what the corpus would hold had that stage kept everything, up to what later
stages would have done to those documents (they never saw them). Text edits (line dedup, PII masking) of kept
documents are not undone; a variant names the stages whose *rejections* it puts back.

``unfiltered`` is every document that left ingest: the final output plus every stage's rejections except
ingest's own (pages with no text, non-HTML records), each as it was when it left the pipeline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Columns read from every file: what training and the held-out bookkeeping need, nothing else.
DUPLICATE_COLUMNS = ("url_duplicate_of", "exact_duplicate_of", "minhash_duplicate_of", "semantic_duplicate_of")


class AblationInputError(ValueError):
    """The run directory cannot be ablated as asked (unfinished run, unknown stage)."""


@dataclass(frozen=True)
class RunView:
    """The finished run's final kept files and, per stage, the rejected files that may hold its rejections."""

    run_dir: Path
    fingerprint: str
    kept: list[Path]
    stage_segments: dict[str, int]
    tokenizer: str | None

    def rejected_files(self, stage: str) -> list[Path]:
        segment = self.stage_segments[stage]
        return sorted((self.run_dir / "segments" / f"{segment:02d}" / "rejected").glob("*.parquet"))


def open_run(run_dir: str | Path) -> RunView:
    """The run's ``run.json``: refused unless the run finished with its books balanced."""
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError) as error:
        raise AblationInputError(f"{run_dir}: not a finished Refinery run ({error})") from None
    outputs = summary.get("outputs") or {}
    if not outputs.get("complete") or not summary.get("accounting", {}).get("ok"):
        raise AblationInputError(f"{run_dir}: the run is unfinished or failed its accounting; finish it first")
    stage_segments: dict[str, int] = {}
    for segment in summary["segments"]:
        for stage in segment["stages"]:
            stage_segments.setdefault(stage["stage"], segment["index"])
    try:
        recipe = json.loads((run_dir / "recipe.json").read_text()).get("recipe", {})
    except (OSError, ValueError):
        recipe = {}
    tokenizer = None  # the recipe's token_count tokenizer, if the run counted tokens
    for stage in recipe.get("stages", []):
        if isinstance(stage, dict) and stage.get("stage") == "token_count":
            tokenizer = stage.get("tokenizer")
    return RunView(
        run_dir=run_dir,
        fingerprint=str(summary.get("fingerprint", "")),
        kept=[run_dir / relative for relative in outputs["kept"]],
        stage_segments=stage_segments,
        tokenizer=tokenizer,
    )


def check_stages(view: RunView, stages: list[str]) -> None:
    unknown = sorted(set(stages) - set(view.stage_segments))
    if unknown:
        raise AblationInputError(f"stages {unknown} are not in this run; it ran: {', '.join(view.stage_segments)}")
    if "ingest" in stages:
        raise AblationInputError("ingest cannot be ablated: its rejections hold no text to train on")


def _read(path: Path, bucket_column: str) -> pa.Table:
    schema = pq.read_schema(path)
    names = ["id", "text", bucket_column, "reason", *DUPLICATE_COLUMNS]
    table = pq.read_table(path, columns=[n for n in names if n in schema.names])
    if bucket_column not in table.column_names:
        raise AblationInputError(f"{path}: no column {bucket_column!r} to bucket the held-out targets by")
    columns = {
        "id": table.column("id").cast(pa.string()),
        "text": table.column("text").cast(pa.large_string()),
        "bucket": table.column(bucket_column).cast(pa.string()),
    }
    duplicates = [table.column(c).cast(pa.string()) for c in DUPLICATE_COLUMNS if c in table.column_names]
    columns["duplicate_of"] = pc.coalesce(*duplicates) if duplicates else pa.nulls(table.num_rows, pa.string())
    return pa.table(columns)


def kept_documents(view: RunView, bucket_column: str) -> pa.Table:
    """The run's final output (id, text, bucket, duplicate_of, and ``stage`` null: nobody rejected them)."""
    table = pa.concat_tables([_read(p, bucket_column) for p in view.kept]) if view.kept else _empty()
    return table.append_column("stage", pa.nulls(table.num_rows, pa.string()))


def rejected_documents(view: RunView, stages: list[str], bucket_column: str) -> pa.Table:
    """Rows that ``stages`` rejected (reason ``stage:...``), read from the stages' segments, with their ``stage``."""
    parts = []
    for segment in sorted({view.stage_segments[s] for s in stages}):
        wanted = [s for s in stages if view.stage_segments[s] == segment]
        folder = view.run_dir / "segments" / f"{segment:02d}" / "rejected"
        for path in sorted(folder.glob("*.parquet")):
            table = pq.read_table(path, columns=["reason"])
            stage_of = pc.list_element(pc.split_pattern(table.column("reason"), ":", max_splits=1), 0)
            mask = pc.is_in(stage_of, value_set=pa.array(wanted))
            if pc.any(mask).as_py():
                rows = _read(path, bucket_column).filter(mask)
                parts.append(rows.append_column("stage", stage_of.filter(mask).cast(pa.string())))
    if parts:
        return pa.concat_tables(parts)
    return _empty().append_column("stage", pa.array([], pa.string()))


def _empty() -> pa.Table:
    return pa.table(
        {
            "id": pa.array([], pa.string()),
            "text": pa.array([], pa.large_string()),
            "bucket": pa.array([], pa.string()),
            "duplicate_of": pa.array([], pa.string()),
        }
    )
