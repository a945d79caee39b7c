"""FineWeb-normalised words of a batch and their 64-bit hashes, from the raw UTF-8 bytes (NumPy + a numba loop).

The text of every document is normalised as :func:`refinery.dedup.normalise.normalise` does with ``fineweb``
and split on spaces; this module gets the same words several times faster by working on the batch's byte
buffer. ASCII documents (most web text) are normalised by one 256-entry table lookup per byte (A–Z lower-cased,
digits → ``0``, ASCII punctuation and symbols and the whitespace ``\\t\\n\\f\\r`` → space), which is exactly what
the Unicode rules do on ASCII; other documents go through the pyarrow.compute normaliser first (NFD, accents,
Unicode digits, punctuation and symbols), whose output the same byte pass then leaves unchanged.

Words are the maximal runs of non-space bytes. A word's hash is a multilinear hash of its bytes with seeded
random 64-bit keys (``sum key[j] * byte[j] mod 2**64``, a universal family: two different words of up to 4,096
bytes collide with probability at most 2**-56 over the seed), then the splitmix64 finaliser with its length.
"""

from __future__ import annotations

import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.dedup.minhash.kernels import word_spans
from refinery.dedup.normalise import normalise
from refinery.pipelines.partitions import splitmix64

KEYS = 4096
SPACE = 32


def _table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    for c in string.ascii_uppercase:
        table[ord(c)] = ord(c.lower())
    for c in string.digits:
        table[ord(c)] = ord("0")
    for c in string.punctuation + "\t\n\f\r":
        table[ord(c)] = SPACE
    return table


TABLE = _table()


def _keys(seed: int) -> np.ndarray:
    return splitmix64(np.arange(KEYS, dtype=np.uint64) + np.uint64(seed) * np.uint64(KEYS) + np.uint64(1))


def word_hashes(texts: pa.Array | pa.ChunkedArray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every normalised word in order, index of its document) for a batch of texts."""
    texts = pc.fill_null(texts, "").cast(pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64, count=len(texts) + 1, offset=texts.offset * 8)
    buffer = texts.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    mapped = TABLE[data]
    keys = _keys(seed)
    starts, lengths, hashes, document, high = word_spans(mapped, offsets, keys)
    unicode_words = np.flatnonzero(high)
    if not len(unicode_words):
        return hashes, document
    # Words with non-ASCII characters: the Unicode normaliser may change or split them (accents, "’", digits).
    spans = lengths[unicode_words]
    firsts = np.cumsum(spans) - spans
    gathered = mapped[np.repeat(starts[unicode_words], spans) + np.arange(int(spans.sum())) - np.repeat(firsts, spans)]
    words = pa.LargeStringArray.from_buffers(
        len(spans), pa.py_buffer(np.concatenate([firsts, [spans.sum()]]).astype(np.int64)), pa.py_buffer(gathered)
    )
    normalised = normalise(words, "fineweb").cast(pa.large_string())
    sub_offsets = np.frombuffer(normalised.buffers()[1], dtype=np.int64, count=len(normalised) + 1)
    sub_data = normalised.buffers()[2]
    sub_bytes = np.frombuffer(sub_data, dtype=np.uint8) if sub_data is not None else np.zeros(0, np.uint8)
    _, _, sub_hashes, sub_owner, _ = word_spans(sub_bytes[: sub_offsets[-1]], sub_offsets, keys)
    counts = np.ones(len(hashes), dtype=np.int64)
    counts[unicode_words] = np.bincount(sub_owner, minlength=len(unicode_words))
    out_start = np.cumsum(counts) - counts
    result = np.zeros(int(counts.sum()), np.uint64)
    plain = np.ones(len(hashes), dtype=bool)
    plain[unicode_words] = False
    result[out_start[plain]] = hashes[plain]
    sub_rank = np.arange(len(sub_owner)) - np.repeat(
        np.cumsum(counts[unicode_words]) - counts[unicode_words], counts[unicode_words]
    )
    result[out_start[unicode_words][sub_owner] + sub_rank] = sub_hashes
    return result, np.repeat(document, counts)
