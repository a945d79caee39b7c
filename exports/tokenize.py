"""Documents → one flat token array in a trainer's framing, with one Rust call per batch and no per-token Python.

The tokenizer returns one list of ids per document (that part is unavoidable); everything after is NumPy:
content ids are concatenated once, and the special tokens are placed by the documents' cumulative offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .formats import Framing


@dataclass(frozen=True)
class TokenizedBatch:
    """``tokens`` (framed, flat), ``lengths`` (framed tokens per document), ``content`` (ids without specials)."""

    tokens: np.ndarray
    lengths: np.ndarray
    content: np.ndarray


def tokenize_batch(
    tokenizer: Any, texts: list[str], framing: Framing, bos_id: int | None, eos_id: int | None, dtype: np.dtype
) -> TokenizedBatch:
    """Tokenize ``texts`` without the tokenizer's template, then frame each document as ``framing`` says."""
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    encodings = encode(texts, add_special_tokens=False) if texts else []
    content = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    flat = (
        np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])
        if encodings
        else np.zeros(0, dtype=np.int64)
    )
    lengths = content + framing.extra_tokens
    ends = np.cumsum(lengths)
    starts = ends - lengths
    limit = np.iinfo(dtype).max
    if flat.size and int(flat.max()) > limit:
        raise ValueError(f"token id {int(flat.max())} does not fit the export's {dtype} tokens")
    tokens = np.empty(int(ends[-1]) if len(ends) else 0, dtype=dtype)
    content_mask = np.ones(tokens.size, dtype=bool)
    if framing.bos:
        tokens[starts], content_mask[starts] = bos_id, False
    if framing.eos:
        tokens[ends - 1], content_mask[ends - 1] = eos_id, False
    tokens[content_mask] = flat
    return TokenizedBatch(tokens, lengths, content)
