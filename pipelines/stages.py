"""The stage contract and the registry that turns recipe names into stage objects.

A stage is a pydantic model: its parameters are typed fields, validated before the run starts, so a wrong key
or value fails with the stage's name and the field. Two kinds exist (see ``docs/architecture.md``):

* :class:`MapStage` decides each document from the document alone. Consecutive map stages are fused into one
  segment and run once per input shard.
* :class:`GlobalStage` needs the whole corpus (dedup, percentile thresholds, the mix). It ends a segment and
  runs as phases over shard files.

Stages are found by name only: a recipe can never name a module, a class or any other code. Stage modules
register themselves with :func:`register_stage`; :func:`stage_registry` imports the stage packages
(``refinery.filters``, ``refinery.dedup``, ``refinery.classifiers``, ``refinery.mixes``) once, so a new
stage needs no edit to a central list. Stage modules must import heavy libraries inside ``setup()``, not at
module level, so that validating a recipe stays cheap.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute
from pydantic import BaseModel, ConfigDict

from refinery.pipelines.documents import ERROR, REASON, TEXT
from refinery.pipelines.executor import Resources

STAGE_PACKAGES = ("refinery.filters", "refinery.dedup", "refinery.classifiers", "refinery.mixes")


class Stage(BaseModel):
    """Base of every stage: parameters are fields, unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The name a recipe uses for this stage; also the first half of every ``stage:rule`` reason it gives.
    stage_name: ClassVar[str] = ""
    kind: ClassVar[Literal["map", "global"]] = "map"

    def added_columns(self) -> list[pa.Field]:
        """The flat columns this stage adds to kept documents (declared so output schemas are fixed)."""
        return []

    def resources(self) -> Resources:
        """What one shard task running this stage holds: CPUs, GPUs, memory (a GPU encoder asks for a GPU).

        A fused segment asks for the largest amount of each that any of its stages asks for
        (:meth:`Resources.combine`); the executor honours all three.
        """
        return Resources()

    def reason(self, rule: str) -> str:
        """The ``stage:rule`` string recorded on a rejected row."""
        return f"{self.stage_name}:{rule}"


@dataclass(frozen=True)
class ShardInfo:
    """Which shard a map stage's next batches come from, told before the first batch (``begin_shard``).

    ``key``: the shard's name in the run (``SOURCE--FILE``, unique, the name of its output files); ``source``:
    the recipe input it comes from; ``position``: its index in the run's sorted shard list (what every
    per-shard decision list is keyed by); ``input_sha256``: the sha256 of the file the segment reads (the
    previous segment's kept file), or None for the first segment, which reads the raw input.
    """

    key: str
    source: str
    position: int
    input_sha256: str | None = None


@dataclass
class StageResult:
    """What a map stage returns for one batch: every input row is in exactly one of the three tables.

    ``rejected`` carries a ``reason`` column, ``errored`` an ``error`` column. ``counters`` holds additive
    numbers a stage wants reported (for line-level edits: ``lines_removed``, ``chars_removed``).
    """

    kept: pa.Table
    rejected: pa.Table
    errored: pa.Table | None = None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def num_errored(self) -> int:
        return 0 if self.errored is None else self.errored.num_rows


class MapStage(Stage):
    """A stage whose decision needs only the document itself (filters, scorers, annotators)."""

    kind: ClassVar[Literal["map", "global"]] = "map"

    def setup(self) -> None:
        """Load models and other heavy state. Called once per worker process before the first batch."""

    def begin_shard(self, shard: ShardInfo) -> None:
        """Called by the shard task before the first batch of every shard: a stage that decides per shard (a
        dedup decision list) loads that shard's data here instead of finding the shard from the documents."""

    def process(self, batch: pa.Table) -> StageResult:
        """Decide a whole batch at once; return kept rows (with added columns) and rejected rows."""
        raise NotImplementedError(f"{type(self).__name__} must implement process()")


class GlobalStage(Stage):
    """A stage that needs the whole corpus; it ends a segment and runs as phases over shard files.

    ``prepare(context)`` runs the corpus-wide phases (each a map over shards through ``context.map``, writing
    its results under ``context.work_dir`` and marking completion with ``context.phase_done`` /
    ``context.mark_phase_done`` so a resumed run skips them) and returns a :class:`MapStage` that applies the
    decision to one shard at a time (a drop list, a reference distribution, a threshold). The runner then runs
    that map stage over every shard exactly like a map segment, so outputs, accounting and per-shard resume
    are the same for every stage. No phase may hold the whole corpus in one process.
    """

    kind: ClassVar[Literal["map", "global"]] = "global"

    def prepare(self, context: GlobalContext) -> MapStage:
        raise NotImplementedError(f"{type(self).__name__} must implement prepare()")


class GlobalContext(Protocol):
    """What the runner gives a global stage (implemented in ``refinery.pipelines.global_runner``)."""

    segment_index: int
    shard_names: list[str]
    seed: int
    batch_size: int
    work_dir: str

    def input_path(self, shard_name: str) -> str:
        """The Parquet file (fsspec path) holding the shard's documents as this segment receives them."""
        ...

    def map(self, function: Callable[..., Any], items: list[Any]) -> list[Any]:
        """Run ``function(item)`` for every item as Ray tasks; results come back in item order."""
        ...

    def phase_done(self, phase: str) -> bool:
        """The phase's marker matches this segment and these exact inputs, and its recorded outputs are intact."""
        ...

    def mark_phase_done(self, phase: str, outputs: list[str] | None = None) -> None:
        """Mark a phase done; ``outputs`` (files or folders relative to ``work_dir``) are recorded and checked."""
        ...


def split_by_mask(
    batch: pa.Table,
    keep: np.ndarray | pa.Array | pa.ChunkedArray,
    reasons: list[str | None] | pa.Array | pa.ChunkedArray,
) -> StageResult:
    """Split ``batch`` into kept rows (``keep`` true) and rejected rows labelled with ``reasons``.

    ``reasons`` is aligned with ``batch``; entries for kept rows are ignored.
    """
    if isinstance(keep, pa.ChunkedArray | pa.Array):
        keep = keep.to_numpy(zero_copy_only=False)
    keep_array = pa.array(np.asarray(keep, dtype=bool))
    kept = batch.filter(keep_array)
    reject_mask = pa.compute.invert(keep_array)
    rejected = batch.filter(reject_mask)
    reason_array = reasons if isinstance(reasons, pa.Array | pa.ChunkedArray) else pa.array(list(reasons), pa.string())
    rejected = rejected.append_column(REASON, reason_array.filter(reject_mask).cast(pa.string()))
    return StageResult(kept=kept, rejected=rejected)


def split_edited(
    batch: pa.Table,
    edited_text: list[str] | pa.Array,
    keep: np.ndarray,
    reasons: list[str | None],
) -> StageResult:
    """Like :func:`split_by_mask` for stages that edit text (line removals): kept rows carry ``edited_text``,
    rejected rows carry the document exactly as it entered the stage, so every rejection can be audited or
    undone (a rejected row never holds the emptied text)."""
    keep = np.asarray(keep, dtype=bool)
    original = batch.column(TEXT)
    edited = edited_text if isinstance(edited_text, pa.Array) else pa.array(edited_text, original.type)
    chosen = pa.compute.if_else(pa.array(keep), edited.cast(original.type), original)
    return split_by_mask(batch.set_column(batch.schema.get_field_index(TEXT), TEXT, chosen), keep, reasons)


def with_error(rows: pa.Table, message: str) -> pa.Table:
    """``rows`` with an ``error`` column holding ``message`` on every row."""
    return rows.append_column(ERROR, pa.array([message] * rows.num_rows, pa.large_string()))


_REGISTRY: dict[str, type[Stage]] = {}
_LOADED = False


def register_stage(name: str):
    """Class decorator: make a stage available to recipes under ``name``."""

    def decorate(cls: type[Stage]) -> type[Stage]:
        if not issubclass(cls, MapStage | GlobalStage):
            raise TypeError(f"{cls.__name__} must subclass MapStage or GlobalStage")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"stage name {name!r} is taken by {existing.__module__}.{existing.__name__}")
        cls.stage_name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def stage_registry() -> dict[str, type[Stage]]:
    """All registered stages by recipe name (imports the stage packages on first use)."""
    global _LOADED
    if not _LOADED:
        for package_name in STAGE_PACKAGES:
            package = importlib.import_module(package_name)
            for module in pkgutil.iter_modules(package.__path__):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{package_name}.{module.name}")
        _LOADED = True
    return dict(_REGISTRY)
