"""Scoring stages: the trained students applied to a corpus on Ray.

* ``quality_classifier`` (map): adds ``quality_score`` (the student's scalar: expected class for an ordinal rubric
  such as FineWeb-Edu's 0-5, P(yes) for a binary one) and rejects documents below ``min_score``
  (``quality_classifier:low_score``) when a threshold is given.
* ``quality_percentile`` (global): the same score with a threshold given as a corpus percentile. Phase
  ``scores`` scores a seeded corpus-wide sample proportional to shard size (Ray maps: row counts from the
  footers, then the documents whose id hash falls under one cutoff, ``work/sample_scores.parquet``); phase
  ``threshold`` takes the ``min_percentile`` quantile of them (``work/threshold.json``); then every shard is scored
  and documents below it are rejected (``quality_percentile:below_percentile``).
* ``domain_classifier`` (map): adds ``domain`` (web / code / math / multilingual) and ``topic`` (a knowledge
  taxonomy) from two students, so a mix can weight domains and down-sample over-represented topics.

Students load once per worker in ``setup()``; model folders are checked when the recipe is validated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, PrivateAttr, field_validator, model_validator

from refinery.classifiers.sampling import seeded_hashes
from refinery.classifiers.students.base import CONFIG, load_student, read_config, score_of
from refinery.pipelines import storage
from refinery.pipelines.documents import ID, TEXT
from refinery.pipelines.models import check_model_reference, resolve_model_path
from refinery.pipelines.stages import GlobalContext, GlobalStage, MapStage, StageResult, register_stage, split_by_mask

QUALITY_SCORE = "quality_score"
DOMAIN = "domain"
TOPIC = "topic"


def check_student(reference: str | None) -> str | None:
    """A model reference that resolves to a student folder (``student.json`` readable), else ValueError."""
    if reference is None:
        return None
    check_model_reference(reference)
    try:
        read_config(resolve_model_path(reference))
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(str(error)) from None
    return reference


def student_files(reference: str | None) -> list[str]:
    """What loading a student reads: ``student.json``, its weights (not ``eval/``, which evaluation rewrites) and a
    transformer student's encoder folder."""
    if reference is None:
        return []
    folder = resolve_model_path(reference)
    config = read_config(folder)
    files = [folder / CONFIG, folder / config.get("weights", "model.bin")]
    encoder = config.get("encoder")
    return [str(f) for f in files] + ([str(resolve_model_path(encoder))] if encoder else [])


def texts_of(batch: pa.Table) -> list[str]:
    return [t or "" for t in batch[TEXT].to_pylist()]


class _StudentScorer(MapStage):
    """Shared by the quality stages: one student, its scalar score per document."""

    model_path: str = Field(description="student folder (refinery train-classifier) or package:DIST/folder")
    column: str = Field(default=QUALITY_SCORE, pattern=r"^[a-z][a-z0-9_]*$")

    _student: Any = PrivateAttr(default=None)

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        return check_student(value)

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.float32())]

    def loaded_files(self) -> list[str]:
        return student_files(self.model_path)

    def setup(self) -> None:
        if self._student is None:
            self._student = load_student(resolve_model_path(self.model_path))

    def scores(self, texts: list[str]) -> np.ndarray:
        self.setup()
        if not texts:
            return np.zeros(0, dtype=np.float32)
        student = self._student
        return score_of(student.task, student.classes, student.predict_proba(texts)).astype(np.float32)

    def decide(self, batch: pa.Table, threshold: float | None, rule: str) -> StageResult:
        scores = self.scores(texts_of(batch))
        keep = np.ones(len(scores), dtype=bool) if threshold is None else scores >= threshold
        reasons = [None if k else self.reason(rule) for k in keep]
        return split_by_mask(batch.append_column(self.column, pa.array(scores, pa.float32())), keep, reasons)


@register_stage("quality_classifier")
class QualityClassifier(_StudentScorer):
    """Score documents with a quality student; reject below an absolute ``min_score`` (null: score only)."""

    min_score: float | None = Field(default=None, description="reject documents scoring below it; null keeps all")

    def process(self, batch: pa.Table) -> StageResult:
        return self.decide(batch, self.min_score, "low_score")


class QualityPercentileDecision(_StudentScorer):
    """The per-shard half of ``quality_percentile``: score, reject below the corpus threshold."""

    stage_name = "quality_percentile"
    threshold: float

    def process(self, batch: pa.Table) -> StageResult:
        return self.decide(batch, self.threshold, "below_percentile")


def shard_rows(path: str) -> int:
    """Phase ``scores``, step 1 (one shard): its document count, from the Parquet footer (no column is read)."""
    fs, location = storage.filesystem(path)
    with fs.open(location, "rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def sample_scores(job: dict[str, Any]) -> list[float]:
    """Phase ``scores``, step 2 (one shard): the student's scores of the shard's documents whose seeded id hash
    falls below ``job["cutoff"]``: the same fraction of every shard, so the sample is proportional to shard size."""
    fs, path = storage.filesystem(job["path"])
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle, columns=[ID, TEXT])
    hashes = seeded_hashes(table[ID].to_pylist(), job["seed"])
    rows = [row for row, value in enumerate(hashes) if value < job["cutoff"]]
    texts = table[TEXT].take(pa.array(rows, pa.int64())).to_pylist()
    scorer = QualityClassifier(model_path=job["model_path"])
    return scorer.scores([t or "" for t in texts]).tolist()


def sample_cutoff(sample_size: int, corpus_documents: int) -> int:
    """The 64-bit hash cutoff that lets through about ``sample_size`` of ``corpus_documents`` (all when fewer)."""
    if corpus_documents <= sample_size:
        return 2**64
    return int(sample_size / corpus_documents * 2**64)


@register_stage("quality_percentile")
class QualityPercentile(GlobalStage):
    """Score with a quality student and reject the documents below the corpus's ``min_percentile`` quantile.

    The quantile comes from a corpus-wide sample of about ``sample_size`` documents: every document whose seeded
    id hash is below ``sample_size / corpus documents`` of the hash range, in every shard alike, so each shard
    contributes in proportion to its size whatever the shards' order or sizes (a fixed number of documents per
    shard, or the first documents of each, biases the threshold towards small shards and the start of each).
    """

    model_path: str = Field(description="student folder (refinery train-classifier) or package:DIST/folder")
    min_percentile: float = Field(gt=0.0, lt=1.0, description="0.2 rejects the lowest-scoring 20%")
    column: str = Field(default=QUALITY_SCORE, pattern=r"^[a-z][a-z0-9_]*$")
    sample_size: int = Field(default=20_000, ge=1, description="documents scored corpus-wide for the threshold")

    @field_validator("model_path")
    @classmethod
    def _model_exists(cls, value: str) -> str:
        return check_student(value)

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(self.column, pa.float32())]

    def loaded_files(self) -> list[str]:
        return student_files(self.model_path)

    def prepare(self, context: GlobalContext) -> MapStage:
        fs, work = storage.filesystem(context.work_dir)
        scores_path = storage.join(work, "sample_scores.parquet")
        if not context.phase_done("scores"):
            paths = [context.input_path(name) for name in context.shard_names]
            corpus_documents = sum(context.map(shard_rows, paths))
            cutoff = sample_cutoff(self.sample_size, corpus_documents)
            jobs = [
                {"path": path, "cutoff": cutoff, "seed": context.seed, "model_path": self.model_path} for path in paths
            ]
            values = [v for shard in context.map(sample_scores, jobs) for v in shard]
            table = pa.table({"score": pa.array(values, pa.float32())})
            table = table.replace_schema_metadata({"corpus_documents": str(corpus_documents)})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, **storage.PARQUET_OPTIONS)
            storage.write_bytes_atomic(fs, scores_path, sink.getvalue().to_pybytes())
            context.mark_phase_done("scores")
        threshold_path = storage.join(work, "threshold.json")
        if not context.phase_done("threshold"):
            with fs.open(scores_path, "rb") as handle:
                table = pq.read_table(handle)
            values = table["score"].to_numpy()
            threshold = float(np.quantile(values, self.min_percentile)) if len(values) else float("-inf")
            record = {
                "threshold": threshold,
                "min_percentile": self.min_percentile,
                "sampled_documents": len(values),
                "corpus_documents": int((table.schema.metadata or {}).get(b"corpus_documents", b"0")),
            }
            storage.write_json_atomic(fs, threshold_path, record)
            context.mark_phase_done("threshold")
        threshold = storage.read_json(fs, threshold_path)["threshold"]
        return QualityPercentileDecision(model_path=self.model_path, column=self.column, threshold=threshold)


@register_stage("domain_classifier")
class DomainClassifier(MapStage):
    """Add ``domain`` and ``topic`` from two multi-class students (either may be left out; not both)."""

    domain_model_path: str | None = Field(default=None, description="student trained on the domain prompt")
    topic_model_path: str | None = Field(default=None, description="student trained on the topic prompt")

    _students: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("domain_model_path", "topic_model_path")
    @classmethod
    def _model_exists(cls, value: str | None) -> str | None:
        return check_student(value)

    @model_validator(mode="after")
    def _one_model(self) -> DomainClassifier:
        if self.domain_model_path is None and self.topic_model_path is None:
            raise ValueError("give domain_model_path, topic_model_path or both")
        return self

    def _paths(self) -> dict[str, str]:
        paths = {DOMAIN: self.domain_model_path, TOPIC: self.topic_model_path}
        return {column: path for column, path in paths.items() if path is not None}

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(column, pa.string()) for column in self._paths()]

    def loaded_files(self) -> list[str]:
        return [file for path in self._paths().values() for file in student_files(path)]

    def setup(self) -> None:
        for column, path in self._paths().items():
            if column not in self._students:
                self._students[column] = load_student(resolve_model_path(path))

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        texts = texts_of(batch)
        for column, student in self._students.items():
            labels = student.predict_proba(texts).argmax(axis=1) if texts else np.zeros(0, dtype=np.int64)
            batch = batch.append_column(column, pa.array([student.classes[i] for i in labels], pa.string()))
        return split_by_mask(batch, np.ones(batch.num_rows, dtype=bool), [None] * batch.num_rows)
