"""GPU check: the ``1b`` shape at 8,192 tokens in bf16 — training tokens/s and MFU of the document-masked step.

One command on a CUDA machine: ``python benchmarks/gpu_train.py`` (about 2–3 minutes, most of it compiling
FlexAttention once). It needs no data and no network: the batch is random token ids with document lengths drawn
from a fixed seeded distribution (log-normal, median ~500 tokens, like filtered web pages).

Rows (same model shape, fp32 master weights, bf16 autocast, fused AdamW, one sequence of 8,192 tokens per step,
no activation checkpointing, no ``torch.compile`` of the model — exactly what ``refinery train`` runs):

* ``refinery masked (flex)`` — Refinery's step: block-causal document mask through compiled FlexAttention, the
  BlockMask built every step from the batch's document ids (its cost is in the time);
* ``refinery masked, 1 doc`` — the same with one document filling the sequence: the mask's pure overhead;
* ``refinery causal (sdpa)`` — target (a): the same model, plain causal SDPA, no document mask;
* ``transformers Llama sdpa`` — target (b): ``LlamaForCausalLM`` with ``attn_implementation="sdpa"``, causal.

MFU counts model FLOPs per token as ``6·N + 6·layers·d·L`` (N: every matmul weight, the output projection
included; the attention term for causal attention at L = 8,192) against ``--peak-tflops`` (989 TFLOP/s: H100/H200
SXM dense bf16). The same count is used for every row, so a document mask that skips work shows as speed, not as
a different FLOP count. Before timing, a small fp32 model checks on the GPU that FlexAttention's packed logits
equal each document's logits alone (the exactness claim, on the CUDA path).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import time

import numpy as np
import torch
import torch.nn.functional as F

from refinery.training.attention import build_mask
from refinery.training.model import SIZES, Decoder

SEQ_LEN = 8192


def document_ids(seq_len: int, seed: int, single: bool = False, median: float = 500) -> torch.Tensor:
    """Document ids ``(1, seq_len)`` from seeded log-normal lengths (one document when ``single``)."""
    if single:
        return torch.zeros(1, seq_len, dtype=torch.long)
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(mean=np.log(median), sigma=1.0, size=seq_len), 16, seq_len).astype(int)
    ends = np.cumsum(lengths)
    ids = np.searchsorted(ends, np.arange(seq_len), side="right")
    return torch.from_numpy(ids)[None]


def positions_for(docs: torch.Tensor) -> torch.Tensor:
    """Positions restarting at every document (what the packer emits)."""
    index = torch.arange(docs.shape[1], device=docs.device)
    change = torch.ones_like(docs[0], dtype=torch.bool)
    change[1:] = docs[0, 1:] != docs[0, :-1]
    starts = torch.cummax(torch.where(change, index, torch.zeros_like(index)), dim=0).values
    return (index - starts)[None]


def check_exactness(device: torch.device) -> float:
    """Max |packed − alone| of a small fp32 model's logits through compiled FlexAttention on the GPU."""
    torch.manual_seed(0)
    model = Decoder(dataclasses.replace(SIZES["tiny"], vocab_size=4096, n_layers=2)).to(device).eval()
    docs = document_ids(1024, seed=1, median=100).to(device)
    tokens = torch.randint(0, 4096, (1, 1024), device=device)
    worst = 0.0
    with torch.no_grad():
        together = model(tokens, positions_for(docs), docs, backend="flex")
        bounds = [*torch.nonzero(torch.diff(docs[0], prepend=docs[0, :1] - 1)).flatten().tolist(), 1024]
        for a, b in itertools.pairwise(bounds):
            if b - a < 2:
                continue
            alone = model(tokens[:, a:b], backend="flex")
            worst = max(worst, (together[:, a:b] - alone).abs().max().item())
    return worst


def flops_per_token(model: torch.nn.Module, config) -> float:
    matmul = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed" not in n)
    if config.tie_embeddings or not any("lm_head" in n for n, _ in model.named_parameters()):
        matmul += config.vocab_size * config.d_model  # the output projection (tied to the embedding)
    return 6 * matmul + 6 * config.n_layers * config.d_model * SEQ_LEN


def time_steps(step, warmup: int, steps: int) -> float:
    """Seconds per step after ``warmup`` untimed steps (CUDA-synchronised)."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def run_refinery(config, backend: str, single: bool, warmup: int, steps: int, device) -> tuple[float, float, float]:
    torch.manual_seed(0)
    with torch.device(device):
        model = Decoder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    docs = document_ids(SEQ_LEN, seed=0, single=single).to(device)
    positions = positions_for(docs)
    tokens = torch.randint(0, config.vocab_size, (1, SEQ_LEN), device=device)
    labels = torch.roll(tokens, -1, dims=1)

    def step():
        mask = build_mask(docs, backend)  # built each step, as the trainer does
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(tokens, labels, positions, mask, reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = time_steps(step, warmup, steps)
    flops = flops_per_token(model, config)
    memory = torch.cuda.max_memory_allocated() / 2**30
    return seconds, flops, memory


def run_transformers(config, warmup: int, steps: int, device) -> tuple[float, float, float]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    llama_config = LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.d_model, intermediate_size=config.ffn_dim,
        num_hidden_layers=config.n_layers, num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_kv_heads, rope_theta=config.rope_theta, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=config.tie_embeddings, max_position_embeddings=SEQ_LEN,
        attn_implementation="sdpa", use_cache=False,
    )  # fmt: skip
    with torch.device(device):
        model = LlamaForCausalLM(llama_config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    tokens = torch.randint(0, config.vocab_size, (1, SEQ_LEN), device=device)
    labels = torch.roll(tokens, -1, dims=1)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=tokens, use_cache=False).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = time_steps(step, warmup, steps)
    with torch.device("meta"):
        reference = Decoder(config)  # the same FLOP count as the Refinery rows
    flops = flops_per_token(reference, config)
    memory = torch.cuda.max_memory_allocated() / 2**30
    return seconds, flops, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1b", choices=sorted(SIZES))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_train.py needs a CUDA GPU (this machine has none)")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    print(f"exactness on CUDA (flex, fp32): max |packed - alone| = {check_exactness(device):.2e}", flush=True)

    config = SIZES[args.size]
    docs = document_ids(SEQ_LEN, seed=0)
    shape = f"d={config.d_model} layers={config.n_layers} heads={config.n_heads}/{config.n_kv_heads}"
    print(f"{args.size}: {shape} vocab={config.vocab_size}; 1 x {SEQ_LEN} tokens, {int(docs.max()) + 1} documents")
    rows = {}
    plan = [
        ("refinery masked (flex)", lambda: run_refinery(config, "flex", False, args.warmup, args.steps, device)),
        ("refinery masked, 1 doc", lambda: run_refinery(config, "flex", True, args.warmup, args.steps, device)),
        ("refinery causal (sdpa)", lambda: run_refinery(config, "causal", False, args.warmup, args.steps, device)),
        ("transformers Llama sdpa", lambda: run_transformers(config, args.warmup, args.steps, device)),
    ]
    for name, run in plan:
        torch.cuda.reset_peak_memory_stats()
        try:
            seconds, flops, memory = run()
        except torch.OutOfMemoryError as error:  # report and go on: the other rows still mean something
            print(f"{name}: out of memory ({error})", flush=True)
            continue
        finally:
            gc.collect()
            torch.cuda.empty_cache()
        rows[name] = (SEQ_LEN / seconds, flops, memory, seconds)
        print(f"  {name}: {seconds * 1000:.0f} ms/step ({time.perf_counter() - started:.0f} s so far)", flush=True)

    print(f"\n{'step':<26}{'tokens/s':>10}{'ms/step':>9}{'TFLOP/s':>9}{'MFU':>7}{'x causal':>10}{'x HF':>7}{'GiB':>7}")
    causal = rows.get("refinery causal (sdpa)", (None,))[0]
    hf = rows.get("transformers Llama sdpa", (None,))[0]
    for name, (rate, flops, memory, seconds) in rows.items():
        tflops = rate * flops / 1e12
        vs_causal = f"{rate / causal:>10.3f}" if causal else f"{'-':>10}"
        vs_hf = f"{rate / hf:>7.3f}" if hf else f"{'-':>7}"
        row = f"{name:<26}{rate:>10,.0f}{seconds * 1000:>9.0f}{tflops:>9.1f}{tflops / args.peak_tflops:>7.1%}"
        print(row + f"{vs_causal}{vs_hf}{memory:>7.1f}")
    print("targets: refinery masked >= 0.95 x causal, >= 1.00 x transformers; "
          f"MFU = model FLOPs (6N + 6·layers·d·L) / {args.peak_tflops:.0f} TFLOP/s; "
          f"total {time.perf_counter() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
