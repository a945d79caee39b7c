"""Lines of a batch of documents as flat Arrow arrays: split, normalised hashes, and texts rebuilt without some.

A document's lines are its text split on ``\\n`` (a ``\\r`` before it is whitespace and normalises away). A line
whose normalised form is empty (blank, or only punctuation and symbols) is never counted and never removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from refinery.dedup.normalise import Normalisation, hash64, normalise


@dataclass
class Lines:
    """Every line of a batch: ``lines[i]`` belongs to document ``parent[i]``."""

    lines: pa.Array
    offsets: np.ndarray
    parent: np.ndarray
    hashes: np.ndarray
    countable: np.ndarray

    @property
    def documents(self) -> int:
        return len(self.offsets) - 1


def split_lines(texts: pa.ChunkedArray | pa.Array, normalisation: Normalisation, seed: int) -> Lines:
    """Split ``texts`` into lines and hash each normalised line (xxh3-64 seeded with ``seed``)."""
    texts = pc.fill_null(texts, "").cast(pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    lists = pc.split_pattern(texts, "\n")
    lines = lists.flatten()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    parent = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(offsets))
    normalised = normalise(lines, normalisation)
    countable = pc.greater(pc.utf8_length(normalised), 0).to_numpy(zero_copy_only=False)
    hashes = hash64(normalised, seed)
    return Lines(lines=lines, offsets=offsets, parent=parent, hashes=hashes, countable=countable)


def without_lines(lines: Lines, remove: np.ndarray) -> pa.Array:
    """The documents' texts with the lines where ``remove`` is true taken out (others joined by ``\\n``)."""
    keep = ~remove
    counts = np.bincount(lines.parent[keep], minlength=lines.documents)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kept = lines.lines.filter(pa.array(keep))
    rebuilt = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), kept)
    return pc.binary_join(rebuilt, pa.scalar("\n", pa.large_string()))
