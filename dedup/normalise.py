"""Text normalisations and string hashing shared by every dedup stage, vectorised with pyarrow.compute.

``none`` leaves text as is; ``whitespace`` collapses every run of whitespace to one space and trims; ``fineweb``
is FineWeb's/datatrove's ``simplify_text`` for dedup: lower-case, accents stripped (NFD, combining marks removed),
every decimal digit replaced by ``0``, punctuation and symbols (Unicode ``P*`` and ``S*``) replaced by a space,
whitespace collapsed and trimmed. Two texts that differ only in case, accents, numbers, punctuation or spacing
normalise to the same string.

Strings are hashed with xxh3 (64- or 128-bit) through a dictionary: a batch's distinct words or lines are far
fewer than its occurrences (Zipf), so the Python call per distinct string is cheap and every occurrence gets
its hash by one NumPy gather.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

Normalisation = Literal["none", "whitespace", "fineweb"]


def normalise(texts: pa.Array | pa.ChunkedArray, mode: Normalisation) -> pa.Array | pa.ChunkedArray:
    """``texts`` after the named normalisation (nulls become empty strings)."""
    texts = pc.fill_null(texts.cast(pa.large_string()), "")
    if mode == "none":
        return texts
    if mode == "fineweb":
        texts = pc.utf8_lower(texts)
        texts = pc.utf8_normalize(texts, form="NFD")
        texts = pc.replace_substring_regex(texts, r"\p{Mn}+", "")
        texts = pc.replace_substring_regex(texts, r"\p{Nd}", "0")
        texts = pc.replace_substring_regex(texts, r"[\p{P}\p{S}]", " ")
    elif mode != "whitespace":
        raise ValueError(f"unknown normalisation {mode!r}")
    texts = pc.replace_substring_regex(texts, r"[\s\p{Z}]+", " ")
    return pc.utf8_trim_whitespace(texts)


def hash64(strings: pa.Array | pa.ChunkedArray, seed: int = 0) -> np.ndarray:
    """xxh3-64 of every string (uint64), computed once per distinct string."""
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if len(strings) == 0:
        return np.zeros(0, dtype=np.uint64)
    encoded = pc.dictionary_encode(strings)
    distinct = np.fromiter(
        (xxhash.xxh3_64_intdigest(s, seed) for s in encoded.dictionary.to_pylist()),
        dtype=np.uint64,
        count=len(encoded.dictionary),
    )
    return distinct[encoded.indices.to_numpy(zero_copy_only=False)]


def hash128(strings: pa.Array | pa.ChunkedArray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xxh3-128 of every string as two uint64 arrays (high, low)."""
    values = [xxhash.xxh3_128_intdigest(s, seed) for s in pc.fill_null(strings, "").to_pylist()]
    high = np.fromiter((v >> 64 for v in values), dtype=np.uint64, count=len(values))
    low = np.fromiter((v & 0xFFFFFFFFFFFFFFFF for v in values), dtype=np.uint64, count=len(values))
    return high, low
