"""How the runner hosts a global stage: phases as bounded Ray maps, phase markers, then a per-shard decision.

See :class:`refinery.pipelines.stages.GlobalStage`. The context below is what ``prepare()`` receives; the
map stage it returns is run over every shard by the ordinary shard machinery, so a global stage writes the
same kept / rejected / errors / stats / done files as a map segment and is accounted and resumed the same way.

A global stage only ever sees complete input: the runner starts it only when every shard of every earlier
segment is done (see ``runner.run_recipe``). Each phase marker records what the phase was computed from: the
segment's fingerprint, the input shards with the sha256 of their kept files (from the previous segment's
completion markers), and the size of every output file the phase declared (their checksums are recorded by
their writers and checked by their readers). A phase is reused only when all of these still match, so a phase
computed from other input, or whose files were removed or resized, is recomputed. A corrupted intermediate
found while a later phase reads it (:class:`IntermediateError`) invalidates the phase that wrote it, and
``prepare()`` is run again, recomputing just that phase.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from refinery.pipelines import storage
from refinery.pipelines.executor import map_tasks, task_cpu_seconds
from refinery.pipelines.partitions import IntermediateError, phase_of
from refinery.pipelines.plan import Segment
from refinery.pipelines.stages import GlobalStage, MapStage

#: How many times ``prepare()`` is restarted after a corrupted intermediate invalidated a phase.
MAX_PREPARE_ATTEMPTS = 3


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
        input_fingerprints: dict[str, str] | None = None,
    ) -> None:
        self.segment = segment
        self.segment_index = segment.index
        self.shard_names = sorted(shard_names)
        self.run_dir = run_dir.rstrip("/")
        self.seed = seed
        self.batch_size = batch_size
        self.work_dir = f"{self.run_dir}/{segment.directory}/work"
        self.input_fingerprints = dict(sorted((input_fingerprints or {}).items()))
        self._in_flight = in_flight
        self._retries = retries
        self._fs, self._root = storage.filesystem(self.run_dir)
        self._clock = time.perf_counter()
        self._cpu_clock = self._cpu_now()

    @staticmethod
    def _cpu_now() -> float:
        """CPU seconds so far of this driver process plus every task it ran: a phase's cost is the difference."""
        return time.process_time() + task_cpu_seconds()

    def input_path(self, shard_name: str) -> str:
        return f"{self.run_dir}/segments/{self.segment_index - 1:02d}/kept/{shard_name}.parquet"

    def map(self, function: Callable[..., Any], items: list[Any]) -> list[Any]:
        """A phase's map through the spine's executor: the run's retries, its in-flight bound, one CPU each."""
        return map_tasks(
            function,
            items,
            retries=self._retries,
            in_flight=self._in_flight,
            fault_dir=None if "://" in self.run_dir else f"{self.run_dir}/logs/faults",
        )

    # -- phase markers -------------------------------------------------------------------------------------

    def _phase_marker(self, phase: str) -> str:
        return storage.join(self._root, self.segment.directory, "work", "_phases", f"{phase}.json")

    def inputs_digest(self) -> str:
        """One hash of the input shard names and their kept files' sha256: what every phase is computed from."""
        data = json.dumps({"shards": self.shard_names, "kept_sha256": self.input_fingerprints}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()

    def _output_records(self, outputs: list[str]) -> dict[str, dict[str, Any]]:
        """Each declared output file's size, from one listing: the driver never reads the intermediates.

        Their checksums are recorded by their writers (partition indexes, ``write_checked``) and verified by their
        readers, so hashing them again here would only read the whole phase's output a second time.
        """
        base = storage.join(self._root, self.segment.directory, "work")
        records: dict[str, dict[str, Any]] = {}
        for relative in outputs:
            path = storage.join(base, relative)
            listing = self._fs.find(path, detail=True) if self._fs.isdir(path) else {path: self._fs.info(path)}
            for file, info in sorted(listing.items()):
                if not storage.is_temporary(file):
                    records[file[len(base) + 1 :]] = {"bytes": info["size"]}
        return records

    def phase_done(self, phase: str) -> bool:
        """True when the phase's marker matches this segment, these inputs, and its output files are intact.

        Output files are checked by size here (a listing); their checksums are checked by whoever reads them.
        """
        marker = self._phase_marker(phase)
        if not self._fs.exists(marker):
            return False
        try:
            recorded = storage.read_json(self._fs, marker)
        except ValueError:
            return False
        if recorded.get("fingerprint") != self.segment.fingerprint or recorded.get("inputs") != self.inputs_digest():
            return False
        base = storage.join(self._root, self.segment.directory, "work")
        for relative, record in recorded.get("outputs", {}).items():
            path = storage.join(base, relative)
            if not self._fs.exists(path) or self._fs.size(path) != record["bytes"]:
                return False
        return True

    def phase_seconds(self, field: str = "seconds") -> dict[str, float]:
        """Wall seconds (or, with ``field="cpu_seconds"``, CPU seconds) each phase took when it was computed (from
        the markers; reused phases keep theirs; markers written before CPU was recorded are left out)."""
        folder = storage.join(self._root, self.segment.directory, "work", "_phases")
        seconds: dict[str, float] = {}
        for path in sorted(self._fs.glob(storage.join(folder, "*.json"))):
            if not storage.is_temporary(path):
                recorded = storage.read_json(self._fs, path)
                if field in recorded or field == "seconds":
                    seconds[path.rsplit("/", 1)[-1][:-5]] = recorded.get(field, 0.0)
        return seconds

    def mark_phase_done(self, phase: str, outputs: list[str] | None = None) -> None:
        """Record the phase as computed from the current inputs; ``outputs`` are files or folders under work/."""
        storage.write_json_atomic(
            self._fs,
            self._phase_marker(phase),
            {
                "fingerprint": self.segment.fingerprint,
                "inputs": self.inputs_digest(),
                "input_shards": len(self.shard_names),
                "outputs": self._output_records(outputs or []),
                # the wall time since the previous phase finished (or the stage started): the phase's cost
                "seconds": round(time.perf_counter() - self._clock, 3),
                # CPU seconds of the driver and the phase's tasks over the same span (load does not stretch it)
                "cpu_seconds": round(self._cpu_now() - self._cpu_clock, 3),
            },
        )
        self._clock = time.perf_counter()
        self._cpu_clock = self._cpu_now()

    def invalidate(self, path: str) -> str | None:
        """Remove the marker of the phase whose folder holds ``path``; returns that phase's name."""
        phase = phase_of(self.work_dir, path)
        if phase is None:
            return None
        marker = self._phase_marker(phase)
        if self._fs.exists(marker):
            self._fs.rm(marker)
        return phase


def decision_segment(segment: Segment, context: RayGlobalContext) -> Segment:
    """Run the global stage's phases and return the map segment that applies its decision per shard."""
    stage = segment.stages[0]
    assert isinstance(stage, GlobalStage)
    for attempt in range(MAX_PREPARE_ATTEMPTS):
        try:
            decider = stage.prepare(context)
            break
        except IntermediateError as error:
            phase = context.invalidate(error.path)
            if phase is None or attempt == MAX_PREPARE_ATTEMPTS - 1:
                raise
            print(f"refinery: {error}; recomputing phase {phase!r} of {stage.stage_name}", flush=True)
    if not isinstance(decider, MapStage):
        raise TypeError(f"{type(stage).__name__}.prepare() must return a MapStage, got {type(decider).__name__}")
    if decider.stage_name != stage.stage_name:
        raise ValueError(f"the decision stage of {stage.stage_name!r} must report under the same name")
    if [f.name for f in decider.added_columns()] != [f.name for f in stage.added_columns()]:
        raise ValueError(f"the decision stage of {stage.stage_name!r} must add the columns the stage declares")
    # keeps the planned fields (the loaded files' digest); the run directory makes its paths run-relative
    return dataclasses.replace(segment, stages=(decider,), location=context.run_dir)
