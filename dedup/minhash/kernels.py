"""The compiled loops of the ``signatures`` phase (numba, prebuilt wheels; compiled once and cached on disk).

Profiling the NumPy version showed two thirds of the time in building per-byte and per-shingle index arrays
(``repeat``, ``arange``, gathers) that exist only to vectorise three loops: hashing words, hashing shingles and
keeping per-bin minima. Each loop here makes one pass and allocates nothing per element. The arithmetic is the
one the module docstrings of :mod:`.words` and :mod:`.signatures` define (64-bit wrap-around, the splitmix64
finaliser of :func:`refinery.pipelines.partitions.splitmix64`); ``tests/test_minhash_recall.py`` checks the
results against a plain NumPy transcription.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SPACE = np.uint8(32)
EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_PROBE_STEP = np.uint64(0x100000001B3)


@njit(cache=True, inline="always")
def mix(z: np.uint64) -> np.uint64:
    """splitmix64 finaliser of one value (the same bijection as ``partitions.splitmix64``)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def word_spans(mapped: np.ndarray, offsets: np.ndarray, keys: np.ndarray) -> tuple:
    """(start, length, hash, document, has a byte ≥ 128) of every run of non-space bytes, per document.

    The hash is ``mix(sum(keys[min(j, len(keys) - 1)] * byte[j]) ^ length * GOLDEN)``.
    """
    documents = len(offsets) - 1
    capacity = 0  # a counting pass first: exact-size outputs (a bound like len/2 would cost ~17 bytes per byte)
    for d in range(documents):
        inside = False
        for i in range(offsets[d], offsets[d + 1]):
            word = mapped[i] != SPACE
            capacity += word and not inside
            inside = word
    starts = np.empty(capacity, np.int64)
    lengths = np.empty(capacity, np.int64)
    hashes = np.empty(capacity, np.uint64)
    owner = np.empty(capacity, np.int64)
    high = np.empty(capacity, np.bool_)
    last_key = len(keys) - 1
    count = 0
    for d in range(documents):
        i, end = offsets[d], offsets[d + 1]
        while i < end:
            if mapped[i] == SPACE:
                i += 1
                continue
            start = i
            acc = np.uint64(0)
            any_high = False
            while i < end and mapped[i] != SPACE:
                byte = mapped[i]
                any_high |= byte >= 128
                acc += keys[min(i - start, last_key)] * np.uint64(byte)
                i += 1
            length = i - start
            starts[count], lengths[count], owner[count], high[count] = start, length, d, any_high
            hashes[count] = mix(acc ^ (np.uint64(length) * GOLDEN))
            count += 1
    return starts, lengths, hashes, owner, high


@njit(cache=True)
def _densify(row: np.ndarray, scratch: np.ndarray) -> None:
    """Optimal densification: an empty bin takes the value of the first filled bin of its fixed probe sequence."""
    bins = len(row)
    scratch[:] = row
    for col in range(bins):
        if scratch[col] != EMPTY:
            continue
        attempt = np.uint64(1)
        while True:
            probe = ((mix(np.uint64(col) * _PROBE_STEP + attempt) >> np.uint64(32)) * np.uint64(bins)) >> np.uint64(32)
            value = scratch[np.int64(probe)]
            if value != EMPTY:
                row[col] = value
                break
            attempt += np.uint64(1)


@njit(cache=True)
def shingle_sketches(
    words: np.ndarray,
    counts: np.ndarray,
    ngram: int,
    seed: np.uint64,
    position: np.ndarray,
    verify_salt: np.uint64,
    lsh_bins: int,
    verify_bins: int,
) -> tuple:
    """Per document: its shingle hashes folded into a ``lsh_bins`` and a ``verify_bins`` one-permutation sketch.

    A shingle's hash is ``mix(sum(word[j] * position[j]) ^ seed)`` over its ``ngram`` words (a document with
    fewer words is one shingle of all of them); the LSH sketch bins it by its high 32 bits, the verification
    sketch bins ``mix(hash ^ verify_salt)`` the same way. Both are densified; documents with no word stay EMPTY.
    """
    documents = len(counts)
    lsh = np.full((documents, lsh_bins), EMPTY, np.uint64)
    verify = np.full((documents, verify_bins), EMPTY, np.uint64)
    scratch_lsh = np.empty(lsh_bins, np.uint64)
    scratch_verify = np.empty(verify_bins, np.uint64)
    first = 0
    for d in range(documents):
        n = counts[d]
        if n == 0:
            continue
        shingles = n - ngram + 1 if n >= ngram else 1
        width = ngram if n >= ngram else n
        for s in range(shingles):
            acc = np.uint64(0)
            for j in range(width):
                acc += words[first + s + j] * position[j]
            h = mix(acc ^ seed)
            b = np.int64(((h >> np.uint64(32)) * np.uint64(lsh_bins)) >> np.uint64(32))
            if h < lsh[d, b]:
                lsh[d, b] = h
            v = mix(h ^ verify_salt)
            b = np.int64(((v >> np.uint64(32)) * np.uint64(verify_bins)) >> np.uint64(32))
            if v < verify[d, b]:
                verify[d, b] = v
        _densify(lsh[d], scratch_lsh)
        _densify(verify[d], scratch_verify)
        first += n
    return lsh, verify
