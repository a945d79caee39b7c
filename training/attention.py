"""Document-masked causal attention, exact on every path: a token attends to earlier tokens of its own document only.

Paths (``backend``):

* ``flex`` — FlexAttention with a block-causal document mask (``create_block_mask`` once per batch, shared by
  every layer; fully masked tiles are skipped, so a packed batch costs about what its documents cost alone). The
  GPU default. On CPU, torch 2.13 runs FlexAttention forward only (no backward), so it serves the equality test
  and evaluation there, never training.
* ``sdpa`` — ``scaled_dot_product_attention``, the exact path that trains on CPU, with no mask at all: the rows
  of a batch that hold one document (one segment: ``document_ids`` all 0) are one call with ``is_causal=True``
  (for one document the document mask *is* the causal mask, and the kernel skips the upper triangle); a row of
  several documents is cut at its document boundaries and each document is one ``is_causal`` call on its own
  slice, so no work is spent on pairs of tokens the mask would discard. On the proxy preset's CPU batches (long
  documentation pages, 512-token rows) about 70% of rows hold one document and most others two.
* ``sdpa_dense`` — the same attention with one dense ``(B, 1, L, L)`` mask for every row (the form ``sdpa`` had
  before): the reference the tests and ``benchmarks/proxy_bench.py`` compare ``sdpa`` against.
* ``causal`` — plain causal SDPA with no document mask: not exact for packed documents; kept as the speed baseline
  of ``benchmarks/gpu_train.py`` (the speed a document mask should not lose).

:func:`build_mask` is called once per batch; :func:`attend` once per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
import torch.nn.functional as F

Backend = Literal["flex", "sdpa", "sdpa_dense", "causal"]


def flex_available() -> bool:
    """FlexAttention imports (torch >= 2.5); whether it can train depends on the device (CUDA: yes, CPU: no)."""
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def default_backend(device: torch.device | str) -> Backend:
    """``flex`` on CUDA when importable, else ``sdpa`` (the exact path that trains on CPU)."""
    return "flex" if torch.device(device).type == "cuda" and flex_available() else "sdpa"


@dataclass
class AttentionMask:
    """What one batch's layers share: the backend and its mask object (BlockMask, boolean tensor or nothing).

    For ``sdpa``: ``single`` the rows of one document, ``segments`` the ``(row, start, end)`` documents of the other
    rows in batch order, and ``order`` the permutation that puts ``[single rows..., other rows...]`` back in batch
    order (``None`` when every row holds one document).
    """

    backend: Backend
    mask: Any = None
    single: torch.Tensor | None = None
    segments: list[tuple[int, int, int]] | None = None
    order: torch.Tensor | None = None


def _document_causal(document_ids: torch.Tensor) -> torch.Tensor:
    """The boolean ``(B, 1, L, L)`` block-causal mask: same document, key not after query."""
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return (same & causal)[:, None]


def _split_rows(document_ids: torch.Tensor) -> AttentionMask:
    """Rows of one document (ids all 0: the packer numbers segments 0, 1, ... per row) apart from the others, whose
    documents are listed as ``(row, start, end)``."""
    one_document = document_ids.amax(dim=1) == 0
    if bool(one_document.all()):
        return AttentionMask("sdpa")
    single = torch.nonzero(one_document).flatten()
    multi = torch.nonzero(~one_document).flatten()
    ids = document_ids[multi].cpu()
    change = torch.ones_like(ids, dtype=torch.bool)
    change[:, 1:] = ids[:, 1:] != ids[:, :-1]
    segments = []
    for row, starts in zip(multi.tolist(), (torch.nonzero(c).flatten().tolist() for c in change), strict=True):
        ends = [*starts[1:], ids.shape[1]]
        segments.extend((row, start, end) for start, end in zip(starts, ends, strict=True))
    order = torch.argsort(torch.cat([single, multi]))
    return AttentionMask("sdpa", None, single, segments, order)


def build_mask(document_ids: torch.Tensor, backend: Backend) -> AttentionMask:
    """The block-causal document mask for ``document_ids`` of shape ``(B, L)`` in the form ``backend`` needs."""
    if backend == "causal":
        return AttentionMask("causal")
    if backend == "sdpa":
        return _split_rows(document_ids)
    if backend == "sdpa_dense":
        return AttentionMask("sdpa_dense", _document_causal(document_ids))
    if backend == "flex":
        from torch.nn.attention.flex_attention import create_block_mask

        docs = document_ids

        def document_causal(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (docs[b, q_idx] == docs[b, kv_idx])

        batch, length = document_ids.shape
        block = create_block_mask(
            document_causal, B=batch, H=None, Q_LEN=length, KV_LEN=length, device=document_ids.device
        )
        return AttentionMask("flex", block)
    raise ValueError(f"unknown attention backend {backend!r}")


@lru_cache(maxsize=2)
def _compiled_flex(device_type: str):
    """FlexAttention compiled once per process on CUDA (the uncompiled form is a slow reference implementation)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False) if device_type == "cuda" else flex_attention


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """Attention of ``q (B, H, L, D)`` over ``k, v (B, H_kv, L, D)`` (grouped-query: ``H`` a multiple of ``H_kv``)."""
    if mask.backend == "flex":
        return _compiled_flex(q.device.type)(q, k, v, block_mask=mask.mask, enable_gqa=True)
    if mask.backend == "causal" or (mask.backend == "sdpa" and mask.order is None):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if mask.backend == "sdpa_dense":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.mask, enable_gqa=True)
    return _attend_documents(q, k, v, mask)


def _attend_documents(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
    """``sdpa`` with rows of several documents: one-document rows in one causal call, every other document alone."""
    rows = []
    if len(mask.single):
        single = mask.single
        rows.append(F.scaled_dot_product_attention(q[single], k[single], v[single], is_causal=True, enable_gqa=True))
    pieces: list[torch.Tensor] = []
    for index, (row, start, end) in enumerate(mask.segments):
        part = slice(start, end)
        pieces.append(
            F.scaled_dot_product_attention(
                q[row : row + 1, :, part], k[row : row + 1, :, part], v[row : row + 1, :, part],
                is_causal=True, enable_gqa=True,
            )
        )  # fmt: skip
        last_of_row = index + 1 == len(mask.segments) or mask.segments[index + 1][0] != row
        if last_of_row:
            rows.append(torch.cat(pieces, dim=2))
            pieces = []
    return torch.cat(rows).index_select(0, mask.order)
