"""The planner: recipe stages → segments, and the fixed layout of a run directory.

Consecutive map stages fuse into one segment that runs once per shard (read once, apply the chain in memory,
write once). A global stage ends a segment and runs alone. Segment 0 always starts with ingest (reading the
input shards); later segments read the kept shards of the one before, under the same shard names.

Run directory::

    RUN/recipe.json                     the validated recipe and its fingerprint
    RUN/segments/NN/kept/SHARD.parquet  documents that passed the segment
    RUN/segments/NN/rejected/SHARD.parquet  rejected documents with ``reason`` (stage:rule)
    RUN/segments/NN/errors/SHARD.parquet    errored documents and unreadable files with ``error``
    RUN/segments/NN/stats/SHARD.json    per-stage accounting of the shard (deterministic)
    RUN/segments/NN/done/SHARD.json     completion marker: fingerprint, timings, node (written last)
    RUN/run.json, RUN/report.json, RUN/report.html
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from refinery.pipelines import storage
from refinery.pipelines.documents import BASE_SCHEMA, ERROR_FIELDS, REASON
from refinery.pipelines.stages import Stage

OUTPUT_KINDS = ("kept", "rejected", "errors")


@dataclass(frozen=True)
class Segment:
    """A run of fused map stages, or one global stage, with the schemas of everything it writes."""

    index: int
    kind: Literal["map", "global"]
    stages: tuple[Stage, ...]
    input_schema: pa.Schema
    recipe_fingerprint: str
    #: The run directory, for a decision segment whose stage parameters name files inside it: the fingerprint
    #: reads those paths relative to the run, so a run directory moved elsewhere keeps its fingerprints (and its
    #: completion markers stay valid when it is resumed there).
    location: str = ""

    @property
    def directory(self) -> str:
        return f"segments/{self.index:02d}"

    @property
    def reads_inputs(self) -> bool:
        """Segment 0 reads the recipe's inputs (and accounts ingest); later ones read the previous kept shards."""
        return self.index == 0

    @property
    def kept_schema(self) -> pa.Schema:
        schema = self.input_schema
        for stage in self.stages:
            for field in stage.added_columns():
                if field.name in schema.names:
                    raise ValueError(f"stage {stage.stage_name!r} adds column {field.name!r}, which already exists")
                schema = schema.append(field)
        return schema

    @property
    def rejected_schema(self) -> pa.Schema:
        return self.kept_schema.append(pa.field(REASON, pa.string()))

    @property
    def errors_schema(self) -> pa.Schema:
        """Every column nullable: a whole-file error has no document id or text."""
        schema = pa.schema([field.with_nullable(True) for field in self.kept_schema])
        for field in ERROR_FIELDS:
            schema = schema.append(field)
        return schema

    @property
    def stage_names(self) -> list[str]:
        names = ["ingest"] if self.reads_inputs else []
        return names + [stage.stage_name for stage in self.stages]

    @property
    def fingerprint(self) -> str:
        """Changes whenever anything that decides this segment's bytes changes."""
        data = {
            "recipe": self.recipe_fingerprint,
            "index": self.index,
            "stages": [{"stage": s.stage_name, **s.model_dump(mode="json")} for s in self.stages],
        }
        if self.location:
            prefix = json.dumps(self.location.rstrip("/") + "/")[1:-1]
            data["stages"] = json.loads(json.dumps(data["stages"]).replace(prefix, "RUN/"))
        return storage.fingerprint(data, 16)

    def path(self, kind: str, shard_name: str) -> str:
        suffix = "json" if kind in ("stats", "done") else "parquet"
        return f"{self.directory}/{kind}/{shard_name}.{suffix}"


def plan_segments(stages: list[Stage], recipe_fingerprint: str) -> list[Segment]:
    """Cut the ordered stages into segments: map stages fuse, each global stage stands alone."""
    groups: list[tuple[str, list[Stage]]] = [("map", [])]
    for stage in stages:
        if stage.kind == "global":
            groups.append(("global", [stage]))
            groups.append(("map", []))
        else:
            groups[-1][1].append(stage)
    groups = [group for index, group in enumerate(groups) if index == 0 or group[1]]
    segments: list[Segment] = []
    schema = BASE_SCHEMA
    for index, (kind, members) in enumerate(groups):
        segment = Segment(index, kind, tuple(members), schema, recipe_fingerprint)  # type: ignore[arg-type]
        schema = segment.kept_schema
        segments.append(segment)
    return segments
