"""The compiled signature kernels against a plain NumPy transcription of the documented hashing, bit for bit.

The reference below is the vectorised NumPy implementation the stage used before the kernels (word hashes by a
per-byte gather and ``reduceat``, shingle hashes by ``ngram`` shifted gathers, bins by ``np.minimum.at``, the
same densification probes). Real documents plus edge cases: empty, one word, fewer words than the n-gram,
non-ASCII words the Unicode normaliser splits or changes, a null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from refinery.dedup.minhash import signatures, words
from refinery.pipelines.partitions import splitmix64

EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)


def reference_word_hashes(mapped: np.ndarray, offsets: np.ndarray, keys: np.ndarray) -> np.ndarray:
    word = mapped != words.SPACE
    boundary = np.zeros(len(mapped) + 1, dtype=bool)
    boundary[offsets] = True
    previous = np.concatenate([[False], word[:-1]]) & ~boundary[:-1]
    following = np.concatenate([word[1:], [False]]) & ~boundary[1:]
    starts, ends = np.flatnonzero(word & ~previous), np.flatnonzero(word & ~following) + 1
    lengths = ends - starts
    firsts = np.cumsum(lengths) - lengths
    within = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(firsts, lengths)
    with np.errstate(over="ignore"):
        products = mapped[np.repeat(starts, lengths) + within].astype(np.uint64) * keys[np.minimum(within, 4095)]
        sums = np.add.reduceat(products, firsts) if len(firsts) else np.zeros(0, np.uint64)
        return splitmix64(sums ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))


def reference_sketch(hashes: np.ndarray, doc: np.ndarray, documents: int, bins: int) -> np.ndarray:
    bin_of = ((hashes >> np.uint64(32)) * np.uint64(bins)) >> np.uint64(32)
    flat = np.full(documents * bins, EMPTY, dtype=np.uint64)
    np.minimum.at(flat, doc * bins + bin_of.astype(np.int64), hashes)
    signature = flat.reshape(documents, bins)
    filled = np.bincount(doc, minlength=documents) > 0
    rows, cols = np.nonzero((signature == EMPTY) & filled[:, None])
    original, attempt = signature.copy(), 1
    while len(rows):
        with np.errstate(over="ignore"):
            key = cols.astype(np.uint64) * np.uint64(0x100000001B3) + np.uint64(attempt)
        probe = ((splitmix64(key) >> np.uint64(32)) * np.uint64(bins)) >> np.uint64(32)
        values = original[rows, probe.astype(np.int64)]
        found = values != EMPTY
        signature[rows[found], cols[found]] = values[found]
        rows, cols, attempt = rows[~found], cols[~found], attempt + 1
    return signature


def reference_shingles(word: np.ndarray, parent: np.ndarray, documents: int, ngram: int, seed: int) -> tuple:
    counts = np.bincount(parent, minlength=documents).astype(np.int64)
    starts = np.cumsum(counts) - counts
    per_doc = np.where(counts >= ngram, counts - ngram + 1, np.minimum(counts, 1))
    doc = np.repeat(np.arange(documents), per_doc)
    first = np.cumsum(per_doc) - per_doc
    position = np.repeat(starts, per_doc) + np.arange(int(per_doc.sum())) - np.repeat(first, per_doc)
    padded = np.concatenate([word, np.zeros(ngram, np.uint64)])
    acc = np.zeros(len(doc), np.uint64)
    with np.errstate(over="ignore"):
        for j in range(ngram):
            value = padded[position + j]
            value[counts[doc] <= j] = 0
            acc += value * signatures._POSITION[j]
    return splitmix64(acc ^ np.uint64(seed)), doc


def test_kernels_equal_the_numpy_reference(real_documents):
    texts = real_documents.column("text").to_pylist()[:300]
    texts += ["", "one", "two words", "Ünïcödé wörds’ here, 123 ½ and ＡＢＣ", "\t\n  ", None, "a b c d e f"]
    batch = pa.array(texts, pa.large_string())
    seed, ngram = 7, 5

    hashes, parent = words.word_hashes(batch, seed)
    ascii_only = pa.array([t for t in texts if t and t.isascii()], pa.large_string())
    data = np.frombuffer(ascii_only.buffers()[2], np.uint8)
    offsets = np.frombuffer(ascii_only.buffers()[1], np.int64, len(ascii_only) + 1)
    expected_ascii = reference_word_hashes(words.TABLE[data[: offsets[-1]]], offsets, words._keys(seed))
    assert np.array_equal(words.word_hashes(ascii_only, seed)[0], expected_ascii)

    lsh, verify, has = signatures.sketches(batch, ngram, seed, 108, 1024)
    shingle, doc = reference_shingles(hashes, parent, len(texts), ngram, seed)
    assert np.array_equal(has, np.bincount(doc, minlength=len(texts)) > 0)
    assert not has[texts.index("")] and not has[texts.index(None)] and has[texts.index("one")]
    assert np.array_equal(lsh, reference_sketch(shingle, doc, len(texts), 108))
    rehashed = splitmix64(shingle ^ signatures._VERIFY_SALT)
    expected_verify = reference_sketch(rehashed, doc, len(texts), 1024) & np.uint64(0xFFFF)
    assert np.array_equal(verify, expected_verify.astype(np.uint16))
