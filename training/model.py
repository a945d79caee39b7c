"""A compact Llama-style decoder: RMSNorm, SwiGLU, RoPE (θ = 500,000), grouped-query attention, tied or untied
embeddings; attention goes through :mod:`refinery.training.attention` so packed documents never see each other.

Named sizes (:data:`SIZES`); the vocabulary size is set per run (:mod:`refinery.training.vocab`): ``150m`` and
``1b`` keep the full 128,256-token Llama 3 vocabulary, ``tiny`` and ``proxy`` use a compact map onto the ids the
manifest holds, because a ``128,256 × d`` output layer would dominate their cost on CPU.

* ``tiny`` — tests: 0.1M parameters outside the embedding; trains in seconds on a CPU core.
* ``proxy`` — the mix optimizer's proxy (RegMix-style small model): 1.2M parameters outside the embedding.
* ``150m`` — 12 layers, d = 768 (160M with the tied full-vocabulary embedding).
* ``1b`` — the Llama 3.2 1B shape: 16 layers, d = 2,048, 32 query / 8 KV heads, FFN 8,192, tied (1.24B).

The weight layout and RoPE convention (rotate-half) follow transformers' ``LlamaForCausalLM``, so a state dict
maps one-to-one onto it (:func:`to_llama_state_dict`; the tests check the logits agree).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from refinery.training.attention import AttentionMask, attend, build_mask
from refinery.training.loss import linear_cross_entropy

VOCAB_SIZE = 128256


@dataclass(frozen=True)
class ModelConfig:
    """The shape of the decoder; ``ffn_dim`` is SwiGLU's hidden width."""

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int = VOCAB_SIZE
    rope_theta: float = 500_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def as_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192),
    "proxy": ModelConfig(d_model=128, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=384),
    "150m": ModelConfig(d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, ffn_dim=1536),
    "1b": ModelConfig(d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, ffn_dim=8192),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32 (bf16 mean squares lose precision), return in the input dtype
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_tables(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape ``(B, 1, L, head_dim)`` for the given positions (computed in float32)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=position_ids.device, dtype=torch.float32) / head_dim)
    angles = position_ids.float()[..., None] * inv_freq
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d, hd = config.d_model, config.head_dim
        self.q_proj = nn.Linear(d, config.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.o_proj = nn.Linear(config.n_heads * hd, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        batch, length, _ = x.shape
        hd = self.config.head_dim
        q = self.q_proj(x).view(batch, length, self.config.n_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.config.n_kv_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.config.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.ffn_dim, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.ffn_dim, bias=False)
        self.down_proj = nn.Linear(config.ffn_dim, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Decoder(nn.Module):
    """The decoder; :meth:`forward` returns logits, :meth:`loss` the mean next-token loss over labelled tokens."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, init_std); residual output projections scaled by 1/sqrt(2·layers) (GPT-2 / OLMo practice)."""
        std = self.config.init_std
        for name, param in self.named_parameters():
            if param.dim() == 2:
                scale = (
                    1 / math.sqrt(2 * self.config.n_layers)
                    if name.endswith(("o_proj.weight", "down_proj.weight"))
                    else 1
                )
                nn.init.normal_(param, mean=0.0, std=std * scale)

    def hidden_states(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        cos, sin = rope_tables(position_ids, self.config.head_dim, self.config.rope_theta)
        x = self.embed_tokens(input_ids)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        backend: str = "sdpa",
        mask: AttentionMask | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, L, vocab)``; ``document_ids`` (``(B, L)``) enable the document mask (one document if None)."""
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        if mask is None:
            if document_ids is None:
                document_ids = torch.zeros_like(input_ids)
            mask = build_mask(document_ids, backend)  # type: ignore[arg-type]
        return self.lm_head(self.hidden_states(input_ids, position_ids, mask))

    def loss(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor,
        mask: AttentionMask,
        reduction: str = "sum",
        chunk_rows: int | None = None,
    ) -> torch.Tensor:
        """Cross-entropy of the labelled tokens (``-100`` ignored), summed by default so gradient accumulation can
        divide by the exact number of labelled tokens of the whole step.

        ``chunk_rows``: project and score that many tokens at a time (:mod:`refinery.training.loss`; the same loss
        and gradients up to float summation order, without the whole ``tokens × vocabulary`` logits); None or 0:
        the plain ``lm_head`` + ``cross_entropy``."""
        hidden = self.hidden_states(input_ids, position_ids, mask)
        return linear_cross_entropy(hidden, self.lm_head.weight, labels, chunk_rows, reduction)


def count_parameters(model: Decoder, embedding: bool = True) -> int:
    """Unique parameters (a tied output projection counted once); ``embedding=False`` leaves the vocabulary out."""
    seen = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    return total if embedding else total - model.embed_tokens.weight.numel()


def to_llama_state_dict(model: Decoder) -> dict[str, torch.Tensor]:
    """The state dict under ``LlamaForCausalLM``'s names (``model.layers.0.self_attn.q_proj.weight``, ...)."""
    out = {}
    for name, tensor in model.state_dict().items():
        out[name if name.startswith("lm_head") else f"model.{name}"] = tensor
    return out
