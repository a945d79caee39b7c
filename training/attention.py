"""Document-masked causal attention, exact on every path: a token attends to earlier tokens of its own document only.

Paths (``backend``):

* ``flex`` — FlexAttention with a block-causal document mask (``create_block_mask`` once per batch, shared by
  every layer; fully masked tiles are skipped, so a packed batch costs about what its documents cost alone). The
  GPU default. On CPU, torch 2.13 runs FlexAttention forward only (no backward), so it serves the equality test
  and evaluation there, never training.
* ``sdpa`` — ``scaled_dot_product_attention`` with a boolean ``(B, 1, L, L)`` block-causal mask built from the
  document ids. Trains on CPU; memory grows with ``L²`` (fine for the CPU sequence lengths of ``tiny``/``proxy``).
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

Backend = Literal["flex", "sdpa", "causal"]


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
    """What one batch's layers share: the backend and its mask object (BlockMask, boolean tensor or nothing)."""

    backend: Backend
    mask: Any = None


def build_mask(document_ids: torch.Tensor, backend: Backend) -> AttentionMask:
    """The block-causal document mask for ``document_ids`` of shape ``(B, L)`` in the form ``backend`` needs."""
    if backend == "causal":
        return AttentionMask("causal")
    if backend == "sdpa":
        length = document_ids.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
        same = document_ids[:, :, None] == document_ids[:, None, :]
        return AttentionMask("sdpa", (same & causal)[:, None])
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
    if mask.backend == "causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.mask, enable_gqa=True)
