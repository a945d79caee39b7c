"""Document-masked causal attention, exact on every path: a token attends to earlier tokens of its own document only.

Paths (``backend``):

* ``flex`` — FlexAttention with a block-causal document mask (``create_block_mask`` once per batch, shared by
  every layer; fully masked tiles are skipped, so a packed batch costs about what its documents cost alone). The
  GPU default. On CPU, torch 2.13 runs FlexAttention forward only (no backward), so it serves the equality test
  and evaluation there, never training.
* ``sdpa`` — ``scaled_dot_product_attention``, the exact path that trains on CPU, with the mask only where it is
  needed: the rows of a batch that hold one document (one segment: ``document_ids`` all 0) are one call with
  ``is_causal=True`` (the kernel skips the upper triangle and reads no mask); only the rows holding several
  documents get a boolean ``(b, 1, L, L)`` block-causal mask. For a one-document row the document mask *is* the
  causal mask, so the result is the same function; on the proxy preset's CPU batches (long documentation pages,
  512-token rows) most rows hold one document. Memory of the mask grows with ``L²`` (fine at CPU lengths).
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

    For ``sdpa``: ``mask`` is the boolean mask of the rows ``multi`` (several documents) only, ``single`` the rows of
    one document, and ``order`` the permutation that puts ``[single..., multi...]`` back in batch order (``None``
    when every row is of one kind).
    """

    backend: Backend
    mask: Any = None
    single: torch.Tensor | None = None
    multi: torch.Tensor | None = None
    order: torch.Tensor | None = None


def _document_causal(document_ids: torch.Tensor) -> torch.Tensor:
    """The boolean ``(B, 1, L, L)`` block-causal mask: same document, key not after query."""
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return (same & causal)[:, None]


def _split_rows(document_ids: torch.Tensor) -> AttentionMask:
    """Rows of one document (ids all 0: the packer numbers segments 0, 1, ... per row) against the others."""
    one_document = document_ids.amax(dim=1) == 0
    single = torch.nonzero(one_document).flatten()
    multi = torch.nonzero(~one_document).flatten()
    if len(multi) == 0:
        return AttentionMask("sdpa")
    if len(single) == 0:
        return AttentionMask("sdpa", _document_causal(document_ids))
    order = torch.argsort(torch.cat([single, multi]))
    return AttentionMask("sdpa", _document_causal(document_ids[multi]), single, multi, order)


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
    if mask.backend == "causal" or (mask.backend == "sdpa" and mask.mask is None):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if mask.order is None:  # sdpa_dense, or sdpa with every row of several documents
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.mask, enable_gqa=True)
    single, multi = mask.single, mask.multi
    alone = F.scaled_dot_product_attention(q[single], k[single], v[single], is_causal=True, enable_gqa=True)
    packed = F.scaled_dot_product_attention(q[multi], k[multi], v[multi], attn_mask=mask.mask, enable_gqa=True)
    return torch.cat([alone, packed]).index_select(0, mask.order)
