"""How the runner hosts a global stage: phases as bounded Ray maps, phase markers, then a per-shard decision.

See :class:`refinery.pipelines.stages.GlobalStage`. The context below is what ``prepare()`` receives; the
map stage it returns is run over every shard by the ordinary shard machinery, so a global stage writes the
same kept / rejected / errors / stats / done files as a map segment and is accounted and resumed the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from refinery.pipelines import storage
from refinery.pipelines.plan import Segment
from refinery.pipelines.stages import GlobalStage, MapStage


class RayGlobalContext:
    """Phase helpers for one global segment of one run."""

    def __init__(
        self,
        segment: Segment,
        shard_names: list[str],
        run_dir: str,
        seed: int,
        batch_size: int,
        in_flight: int,
        retries: int,
    ) -> None:
        self.segment = segment
        self.segment_index = segment.index
        self.shard_names = list(shard_names)
        self.run_dir = run_dir.rstrip("/")
        self.seed = seed
        self.batch_size = batch_size
        self.work_dir = f"{self.run_dir}/{segment.directory}/work"
        self._in_flight = in_flight
        self._retries = retries
        self._fs, self._root = storage.filesystem(self.run_dir)

    def input_path(self, shard_name: str) -> str:
        return f"{self.run_dir}/segments/{self.segment_index - 1:02d}/kept/{shard_name}.parquet"

    def map(self, function: Callable[..., Any], items: list[Any]) -> list[Any]:
        import ray

        task = ray.remote(num_cpus=1, max_retries=self._retries)(function)
        results: dict[int, Any] = {}
        pending: dict[Any, int] = {}
        position = 0
        while position < len(items) or pending:
            while position < len(items) and len(pending) < self._in_flight:
                pending[task.remote(items[position])] = position
                position += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                results[pending.pop(ref)] = ray.get(ref)
        return [results[i] for i in range(len(items))]

    def _phase_marker(self, phase: str) -> str:
        return storage.join(self._root, self.segment.directory, "work", "_phases", f"{phase}.json")

    def phase_done(self, phase: str) -> bool:
        marker = self._phase_marker(phase)
        if not self._fs.exists(marker):
            return False
        return storage.read_json(self._fs, marker).get("fingerprint") == self.segment.fingerprint

    def mark_phase_done(self, phase: str) -> None:
        storage.write_json_atomic(self._fs, self._phase_marker(phase), {"fingerprint": self.segment.fingerprint})


def decision_segment(segment: Segment, context: RayGlobalContext) -> Segment:
    """Run the global stage's phases and return the map segment that applies its decision per shard."""
    stage = segment.stages[0]
    assert isinstance(stage, GlobalStage)
    decider = stage.prepare(context)
    if not isinstance(decider, MapStage):
        raise TypeError(f"{type(stage).__name__}.prepare() must return a MapStage, got {type(decider).__name__}")
    if decider.stage_name != stage.stage_name:
        raise ValueError(f"the decision stage of {stage.stage_name!r} must report under the same name")
    if [f.name for f in decider.added_columns()] != [f.name for f in stage.added_columns()]:
        raise ValueError(f"the decision stage of {stage.stage_name!r} must add the columns the stage declares")
    return Segment(segment.index, "global", (decider,), segment.input_schema, segment.recipe_fingerprint)
