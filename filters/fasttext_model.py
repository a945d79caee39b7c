"""Read a fastText ``.bin`` / ``.ftz`` model file into NumPy arrays for the compiled predictor.

This mirrors fastText's own loader (``FastText::loadModel`` in ``src/fasttext.cc``, ``Args::load``,
``Dictionary::load``, ``DenseMatrix::load``, ``QuantMatrix::load``, ``ProductQuantizer::load``) field by field,
so that :mod:`refinery.filters.fasttext_kernels` can run the same inference over Arrow buffers without a Python
string per document. It also rebuilds the two structures fastText derives at load time: the dictionary's
open-addressing word table (``word2int_``) and the hierarchical-softmax Huffman tree (``buildTree`` in
``src/loss.cc``).

:func:`kernel_unsupported_reason` names what the compiled predictor does not implement (anything but a supervised,
hierarchical-softmax, unigram model); callers then keep fastText's own ``predict``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 793712314
VERSION = 12
KSUB = 256  # ProductQuantizer::ksub_ (8 bits per code)
LOSS_HS, LOSS_NS, LOSS_SOFTMAX, LOSS_OVA = 1, 2, 3, 4
MODEL_SUP = 3
LABEL_PREFIX = b"__label__"  # Args::label; not stored in the file, so always the default when loaded
EOS = b"</s>"
WORD, LABEL = 0, 1


@dataclass(frozen=True)
class ProductQuantizer:
    """``ProductQuantizer``: ``nsubq`` sub-vectors of ``dsub`` floats (the last one ``lastdsub``), 256 centroids."""

    dim: int
    nsubq: int
    dsub: int
    lastdsub: int
    centroids: np.ndarray  # float32[dim * 256]


@dataclass(frozen=True)
class Matrix:
    """A dense matrix, or a quantized one (``QuantMatrix``): codes per row, optional quantized row norms."""

    rows: int
    cols: int
    dense: np.ndarray | None  # float32[rows, cols] when not quantized
    codes: np.ndarray | None = None  # uint8[rows * nsubq]
    pq: ProductQuantizer | None = None
    norm_codes: np.ndarray | None = None  # uint8[rows] when qnorm
    norm_pq: ProductQuantizer | None = None

    @property
    def quantized(self) -> bool:
        return self.dense is None


@dataclass(frozen=True)
class FastTextModel:
    """Everything fastText keeps in memory for supervised prediction, as arrays."""

    version: int
    dim: int
    word_ngrams: int
    loss: int
    model: int
    bucket: int
    minn: int
    maxn: int
    nwords: int
    nlabels: int
    words: list[bytes]  # dictionary entries in id order (words first, then labels)
    entry_types: np.ndarray  # int8[size]
    counts: np.ndarray  # int64[size]
    pruneidx_size: int
    pruneidx: dict[int, int]
    input: Matrix
    output: Matrix

    @property
    def labels(self) -> list[bytes]:
        return self.words[self.nwords :]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("fastText model file ends early")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def one(self, fmt: str) -> int | float | bool:
        return self.take(fmt)[0]

    def array(self, dtype: type, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if count < 0 or self.pos + size > len(self.data):
            raise ValueError("fastText model file ends early")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos).copy()
        self.pos += size
        return out

    def cstring(self) -> bytes:
        end = self.data.index(b"\0", self.pos)
        word = self.data[self.pos : end]
        self.pos = end + 1
        return word


def _read_pq(reader: _Reader) -> ProductQuantizer:
    dim, nsubq, dsub, lastdsub = reader.take("<4i")
    return ProductQuantizer(dim, nsubq, dsub, lastdsub, reader.array(np.float32, dim * KSUB))


def _read_matrix(reader: _Reader, quantized: bool) -> Matrix:
    if not quantized:
        rows, cols = reader.take("<2q")
        return Matrix(rows, cols, reader.array(np.float32, rows * cols).reshape(rows, cols))
    qnorm = bool(reader.one("<?"))
    rows, cols = reader.take("<2q")
    codesize = reader.one("<i")
    codes = reader.array(np.uint8, codesize)
    pq = _read_pq(reader)
    norm_codes = norm_pq = None
    if qnorm:
        norm_codes = reader.array(np.uint8, rows)
        norm_pq = _read_pq(reader)
    return Matrix(rows, cols, None, codes, pq, norm_codes, norm_pq)


def read_model(path: str | Path) -> FastTextModel:
    """Parse a fastText model file exactly as ``FastText::loadModel`` reads it."""
    reader = _Reader(Path(path).read_bytes())
    magic, version = reader.take("<2i")
    if magic != MAGIC or version > VERSION:
        raise ValueError(f"{path} is not a fastText model file (magic {magic}, version {version})")
    dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, minn, maxn, _lr_rate = reader.take("<12i")
    reader.one("<d")  # t (sampling threshold): not used for prediction
    size, nwords, nlabels = reader.take("<3i")
    _ntokens, pruneidx_size = reader.take("<2q")
    words, types, counts = [], [], []
    for _ in range(size):
        words.append(reader.cstring())
        count, entry_type = reader.take("<qb")
        counts.append(count)
        types.append(entry_type)
    pruneidx: dict[int, int] = {}
    for _ in range(max(pruneidx_size, 0)):
        first, second = reader.take("<2i")
        pruneidx[first] = second
    quant_input = bool(reader.one("<?"))
    input_matrix = _read_matrix(reader, quant_input)
    qout = bool(reader.one("<?"))
    output_matrix = _read_matrix(reader, quant_input and qout)
    return FastTextModel(
        version=version,
        dim=dim,
        word_ngrams=word_ngrams,
        loss=loss,
        model=model,
        bucket=bucket,
        minn=minn,
        maxn=maxn,
        nwords=nwords,
        nlabels=nlabels,
        words=words,
        entry_types=np.array(types, dtype=np.int8),
        counts=np.array(counts, dtype=np.int64),
        pruneidx_size=pruneidx_size,
        pruneidx=pruneidx,
        input=input_matrix,
        output=output_matrix,
    )


def kernel_unsupported_reason(model: FastTextModel) -> str | None:
    """Why the compiled predictor cannot reproduce this model's ``predict`` exactly; ``None`` when it can."""
    if model.version != VERSION:
        return f"file format version {model.version} (the kernel reads version {VERSION})"
    if model.model != MODEL_SUP:
        return "not a supervised model"
    if model.loss != LOSS_HS:
        return f"loss {model.loss} (the kernel implements hierarchical softmax only)"
    if model.word_ngrams != 1:
        return f"wordNgrams={model.word_ngrams} (the kernel implements unigram models only)"
    if model.maxn > 0 and model.bucket <= 0:
        return "character n-grams without hash buckets"
    if model.nlabels < 2 or model.output.rows != model.nlabels:
        return "output matrix does not match the labels"
    if model.input.cols != model.dim or model.output.cols != model.dim:
        return "matrix width differs from dim"
    for matrix in (model.input, model.output):
        if matrix.quantized and (matrix.pq.dim != matrix.cols or matrix.codes.size != matrix.rows * matrix.pq.nsubq):
            return "quantized matrix layout not understood"
    if model.pruneidx_size > 0 and max(model.pruneidx.values(), default=-1) + model.nwords >= model.input.rows:
        return "pruned n-gram index points past the input matrix"
    try:
        for label in model.labels:
            label.decode("utf-8")
    except UnicodeDecodeError:
        return "a label that is not UTF-8"
    return None


def word_table(model: FastTextModel) -> np.ndarray:
    """``Dictionary::word2int_``: ceil(size / 0.7) slots, FNV-1a hash, linear probing, -1 for empty."""
    size = len(model.words)
    slots = np.full(math.ceil(size / 0.7), -1, dtype=np.int32)
    for index, word in enumerate(model.words):
        slot = fnv1a(word) % slots.size
        while slots[slot] != -1 and model.words[slots[slot]] != word:
            slot = (slot + 1) % slots.size
        slots[slot] = index
    return slots


def fnv1a(word: bytes) -> int:
    """``Dictionary::hash``: 32-bit FNV-1a over *signed* chars (bytes >= 0x80 are sign-extended before the xor)."""
    h = 2166136261
    for byte in word:
        h ^= byte | 0xFFFFFF00 if byte >= 0x80 else byte
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def huffman_tree(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``HierarchicalSoftmaxLoss::buildTree``: (left, right) children of the 2n-1 nodes, -1 at leaves."""
    osz = counts.size
    left = np.full(2 * osz - 1, -1, dtype=np.int32)
    right = np.full(2 * osz - 1, -1, dtype=np.int32)
    count = np.full(2 * osz - 1, 10**15, dtype=np.int64)
    count[:osz] = counts
    leaf, node = osz - 1, osz
    for i in range(osz, 2 * osz - 1):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j] = leaf
                leaf -= 1
            else:
                mini[j] = node
                node += 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return left, right
