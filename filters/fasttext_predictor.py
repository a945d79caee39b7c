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
    KSUB,
    FastTextModel,
    Matrix,
    huffman_tree,
    kernel_unsupported_reason,
    read_model,
    word_table,
)


def expanded_rows(matrix: Matrix) -> np.ndarray:
    """A quantized matrix's rows as their centroid values, float32[rows, cols] (a dense matrix as it is).

    Row ``i``, sub-vector ``m`` is ``get_centroids(m, codes[i * nsubq + m])`` (the last sub-vector ``lastdsub``
    wide): copies, so every value is exactly what ``addcode``/``mulcode`` read.
    """
    if not matrix.quantized:
        return np.ascontiguousarray(matrix.dense, dtype=np.float32)
    pq = matrix.pq
    codes = matrix.codes.reshape(matrix.rows, pq.nsubq).astype(np.int64)
    out = np.empty((matrix.rows, matrix.cols), dtype=np.float32)
    for m in range(pq.nsubq):
        if m == pq.nsubq - 1:
            width, base = pq.lastdsub, m * KSUB * pq.dsub + codes[:, m] * pq.lastdsub
        else:
            width, base = pq.dsub, (m * KSUB + codes[:, m]) * pq.dsub
        out[:, m * pq.dsub : m * pq.dsub + width] = pq.centroids[base[:, None] + np.arange(width)]
    return out


def row_norms(matrix: Matrix) -> np.ndarray:
    """Each row's quantized norm (``npq_->get_centroids(0, norm_codes_[i])[0]``), float32 ones without ``qnorm``."""
    if matrix.norm_codes is None:
        return np.ones(matrix.rows, dtype=np.float32)
    npq = matrix.norm_pq
    return npq.centroids[matrix.norm_codes.astype(np.int64) * npq.lastdsub].astype(np.float32)


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
    from refinery.filters.fasttext_kernels import vocabulary_rows

    blob = np.frombuffer(b"".join(model.words), dtype=np.uint8).copy()
    starts = np.zeros(len(model.words) + 1, dtype=np.int64)
    starts[1:] = np.cumsum([len(word) for word in model.words])
    eos_id = model.words.index(EOS) if EOS in model.words else -1
    prune_mode, prune_map = _prune_args(model)
    bucket = max(model.bucket, 1)
    vocab_starts, vocab_rows = vocabulary_rows(
        blob, starts, model.entry_types, eos_id, model.minn, model.maxn, bucket, model.nwords, prune_mode, prune_map
    )
    # addcode adds norm * centroid, one float32 product per value: the same products, computed once here
    input_rows = expanded_rows(model.input)
    if model.input.norm_codes is not None:
        input_rows = input_rows * row_norms(model.input)[:, None]
    left, right = huffman_tree(model.counts[model.entry_types == 1])
    arguments = (
        blob,
        starts,
        word_table(model),
        vocab_starts,
        vocab_rows,
        eos_id if eos_id >= 0 and model.entry_types[eos_id] == 0 else -1,
        model.minn,
        model.maxn,
        bucket,
        model.nwords,
        prune_mode,
        prune_map,
        np.ascontiguousarray(input_rows, dtype=np.float32),
        model.input.quantized,  # averageRowsToVector: a quantized matrix starts from zeros, a dense one from row 0
        expanded_rows(model.output),
        row_norms(model.output),
        left,
        right,
    )
    labels = [label.decode("utf-8") for label in model.labels]
    return CompiledPredictor(labels, arguments), None
