"""A fastText model's top-1 prediction for whole Arrow string arrays, through the compiled kernel.

:class:`CompiledPredictor` holds a model's arrays in the form :func:`~refinery.filters.fasttext_kernels.predict_top1`
takes them and runs it chunk by chunk over an Arrow array's own offsets and bytes: no Python string per document.
:func:`compiled_predictor` returns ``None`` (with the reason) for a model the kernel does not reproduce exactly;
the caller then keeps ``fasttext``'s ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.filters.fasttext_model import (
    EOS,
    FastTextModel,
    Matrix,
    huffman_tree,
    kernel_unsupported_reason,
    read_model,
    word_table,
)

_NO_CODES = np.zeros(0, dtype=np.uint8)
_NO_FLOATS = np.zeros(0, dtype=np.float32)
_NO_DENSE = np.zeros((0, 0), dtype=np.float32)


def _matrix_args(matrix: Matrix) -> tuple:
    """(dense, codes, centroids, nsubq, dsub, lastdsub, norm_codes, norm_centroids) for the kernel."""
    if not matrix.quantized:
        return (np.ascontiguousarray(matrix.dense), _NO_CODES, _NO_FLOATS, 0, 0, 0, _NO_CODES, _NO_FLOATS)
    pq = matrix.pq
    norm_codes = matrix.norm_codes if matrix.norm_codes is not None else _NO_CODES
    norm_centroids = matrix.norm_pq.centroids if matrix.norm_pq is not None else _NO_FLOATS
    return (_NO_DENSE, matrix.codes, pq.centroids, pq.nsubq, pq.dsub, pq.lastdsub, norm_codes, norm_centroids)


def _prune_args(model: FastTextModel) -> tuple[int, np.ndarray]:
    """``pushHash``'s three cases: no pruning (-1), everything pruned (0), a bucket -> row map (1)."""
    from refinery.filters.fasttext_kernels import PRUNE_ALL, PRUNE_MAP, PRUNE_NONE

    if model.pruneidx_size < 0:
        return PRUNE_NONE, np.zeros(0, dtype=np.int32)
    if model.pruneidx_size == 0:
        return PRUNE_ALL, np.zeros(0, dtype=np.int32)
    mapping = np.full(model.bucket, -1, dtype=np.int32)
    mapping[np.fromiter(model.pruneidx.keys(), dtype=np.int64)] = np.fromiter(model.pruneidx.values(), np.int32)
    return PRUNE_MAP, mapping


@dataclass(frozen=True)
class CompiledPredictor:
    """Everything the kernel needs, built once per worker from the model file."""

    labels: list[str]  # label strings as fastText returns them (with their prefix)
    arguments: tuple  # predict_top1's model arguments, in order

    def predict(self, texts: pa.Array | pa.ChunkedArray, max_chars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label index or -1, float32 probability, NaN flag) per text; nulls read as empty texts."""
        from refinery.filters.fasttext_kernels import predict_top1

        chunks = texts.chunks if isinstance(texts, pa.ChunkedArray) else [texts]
        results = [predict_top1(*_utf8_buffers(chunk), max_chars, *self.arguments) for chunk in chunks if len(chunk)]
        if not results:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, bool)
        return tuple(np.concatenate(parts) for parts in zip(*results, strict=True))


def _utf8_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The bytes and (int64) offsets of a string array, nulls filled with empty strings, slice offset applied."""
    if chunk.null_count:
        chunk = pc.fill_null(chunk, "")
    if pa.types.is_string(chunk.type):
        offset_type = np.int32
    elif pa.types.is_large_string(chunk.type):
        offset_type = np.int64
    else:
        raise TypeError(f"language ID reads string columns, got {chunk.type}")
    _validity, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return data, offsets.astype(np.int64)


def compiled_predictor(path: str | Path) -> tuple[CompiledPredictor | None, str | None]:
    """The compiled predictor for the model at ``path``, or ``(None, reason)`` when the kernel does not cover it."""
    try:
        model = read_model(path)
    except (ValueError, OSError) as error:
        return None, f"model file not read by the kernel's reader: {error}"
    reason = kernel_unsupported_reason(model)
    if reason is not None:
        return None, reason
    blob = np.frombuffer(b"".join(model.words), dtype=np.uint8).copy()
    starts = np.zeros(len(model.words) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(word) for word in model.words])
    table = word_table(model)
    eos_id = model.words.index(EOS) if EOS in model.words else -1
    if eos_id >= 0 and model.entry_types[eos_id] != 0:
        eos_id = -1  # "</s>" stored as a label: getLine adds no row for it
    prune_mode, prune_map = _prune_args(model)
    left, right = huffman_tree(model.counts[model.entry_types == 1])
    arguments = (
        blob,
        starts,
        table,
        model.entry_types,
        model.nwords,
        eos_id,
        model.minn,
        model.maxn,
        max(model.bucket, 1),
        prune_mode,
        prune_map,
        *_matrix_args(model.input),
        *_matrix_args(model.output),
        left,
        right,
        model.dim,
    )
    labels = [label.decode("utf-8") for label in model.labels]
    return CompiledPredictor(labels, arguments), None
