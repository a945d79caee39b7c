"""Documents' ids → one flat token array in a trainer's framing.

The encoder (:mod:`refinery.exports.fast_bpe`) returns one list of ids per document; the rest is NumPy: the
content ids are flattened once, and the special tokens are placed at the documents' cumulative offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .formats import Framing


@dataclass(frozen=True)
class TokenizedBatch:
    """``tokens`` (framed, flat), ``lengths`` (framed tokens per document), ``content`` (ids without specials)."""

    tokens: np.ndarray
    lengths: np.ndarray
    content: np.ndarray


def frame_documents(
    ids: list[list[int]], framing: Framing, bos_id: int | None, eos_id: int | None, dtype: np.dtype
) -> TokenizedBatch:
    """Documents' content ids (one list each) → one flat array with each document framed as ``framing`` says."""
    content = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.concatenate([np.array(document, dtype=np.int64) for document in ids]) if ids else np.zeros(0, np.int64)
    lengths = content + framing.extra_tokens
    ends = np.cumsum(lengths)
    starts = ends - lengths
    if flat.size and int(flat.max()) > np.iinfo(dtype).max:
        raise ValueError(f"token id {int(flat.max())} does not fit the export's {dtype} tokens")
    tokens = np.empty(int(ends[-1]) if len(ends) else 0, dtype=dtype)
    content_mask = np.ones(tokens.size, dtype=bool)
    if framing.bos:
        tokens[starts], content_mask[starts] = bos_id, False
    if framing.eos:
        tokens[ends - 1], content_mask[ends - 1] = eos_id, False
    tokens[content_mask] = flat
    return TokenizedBatch(tokens, lengths, content)
