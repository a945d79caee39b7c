"""Nothing lost: per stage and per shard, ``in = kept + rejected + errored``, checked and persisted.

A :class:`StageTally` counts one stage's outcomes over a shard; :func:`check_shard` verifies a shard's stats
(each stage balances, and each stage's ``in`` is the previous stage's ``kept``); :func:`check_run` verifies a
whole run, including that each segment's first stage took in what the previous segment kept. Any mismatch
raises :class:`AccountingError`: a run whose numbers do not add up fails loudly instead of losing documents.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipelines.documents import REASON, TEXT


class AccountingError(RuntimeError):
    """Documents were lost or invented somewhere; the message says where."""


def text_chars(table: pa.Table) -> int:
    if table.num_rows == 0 or TEXT not in table.column_names:
        return 0
    total = pc.sum(pc.utf8_length(table.column(TEXT))).as_py()
    return int(total or 0)


@dataclass
class StageTally:
    """Outcome counts of one stage over one shard."""

    stage: str
    docs_in: int = 0
    kept: int = 0
    rejected: int = 0
    errored: int = 0
    chars_in: int = 0
    chars_kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)

    def add(
        self,
        kept: pa.Table,
        rejected: pa.Table,
        errored: pa.Table | None,
        chars_in: int,
        counters: dict[str, int] | None = None,
    ) -> None:
        n_errored = 0 if errored is None else errored.num_rows
        self.docs_in += kept.num_rows + rejected.num_rows + n_errored
        self.kept += kept.num_rows
        self.rejected += rejected.num_rows
        self.errored += n_errored
        self.chars_in += chars_in
        self.chars_kept += text_chars(kept)
        if rejected.num_rows:
            self.reasons.update(rejected.column(REASON).to_pylist())
        self.counters.update(counters or {})

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "in": self.docs_in,
            "kept": self.kept,
            "rejected": self.rejected,
            "errored": self.errored,
            "chars_in": self.chars_in,
            "chars_kept": self.chars_kept,
            "reasons": dict(sorted(self.reasons.items())),
            "counters": dict(sorted(self.counters.items())),
        }


def check_stage(shard: str, stage: dict[str, Any]) -> None:
    total = stage["kept"] + stage["rejected"] + stage["errored"]
    if stage["in"] != total:
        raise AccountingError(
            f"shard {shard}, stage {stage['stage']}: in={stage['in']} but kept+rejected+errored={total}"
        )
    if sum(stage["reasons"].values()) != stage["rejected"]:
        raise AccountingError(f"shard {shard}, stage {stage['stage']}: rejection reasons do not sum to rejected")


def check_shard(stats: dict[str, Any], expected_in: int | None = None) -> None:
    """Verify one shard's stats of one segment; ``expected_in``: what the previous segment kept."""
    stages = stats["stages"]
    previous_kept = expected_in
    for stage in stages:
        check_stage(stats["shard"], stage)
        if previous_kept is not None and stage["in"] != previous_kept:
            raise AccountingError(
                f"shard {stats['shard']}, stage {stage['stage']}: in={stage['in']} but the stage before kept "
                f"{previous_kept}"
            )
        previous_kept = stage["kept"]
    if stages and stats["rows"]["kept"] != stages[-1]["kept"]:
        raise AccountingError(
            f"shard {stats['shard']}: kept file has {stats['rows']['kept']} rows, stats say {stages[-1]['kept']}"
        )
    rejected = sum(stage["rejected"] for stage in stages)
    if stats["rows"]["rejected"] != rejected:
        raise AccountingError(f"shard {stats['shard']}: rejected file rows {stats['rows']['rejected']} != {rejected}")
    errored = sum(stage["errored"] for stage in stages)
    if stats["rows"]["errors"] != errored + len(stats["file_errors"]):
        raise AccountingError(f"shard {stats['shard']}: errors file rows do not match errored documents + file errors")


def check_run(stats_by_segment: list[dict[str, dict[str, Any]]]) -> None:
    """Verify every shard of every segment, chaining each segment to the one before."""
    for index, shards in enumerate(stats_by_segment):
        for name, stats in shards.items():
            expected = None
            if index > 0:
                before = stats_by_segment[index - 1].get(name)
                if before is None:
                    raise AccountingError(f"shard {name} appears in segment {index} but not in segment {index - 1}")
                expected = before["rows"]["kept"]
            check_shard(stats, expected)
