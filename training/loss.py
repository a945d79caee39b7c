"""The output projection and the next-token loss in one pass over row chunks, so the ``tokens × vocabulary`` logits
never exist whole.

Why: profiled on one CPU core (``proxy`` preset: 2,048 tokens a micro-batch, 16,384 output ids, 128 wide), the
plain ``lm_head`` + ``cross_entropy`` spent more time outside its three matrix products than in them. The
``2,048 × 16,384`` float32 logits (134 MB) and their gradient are allocated fresh every micro-batch (above glibc's
largest ``mmap`` threshold, so every page faults in again), ``log_softmax`` and its backward stream them through
memory, and the loss's backward fills another zeroed tensor of that size. Cut into chunks of ``chunk_rows`` tokens
(a few MB, cache-sized), the same arithmetic runs on data that stays in cache and is never page-faulted again.

What it computes, per chunk, in one reused float32 buffer: ``logits = h · Wᵀ``; the loss of each labelled token is
``-log_softmax(logits)[label] = log Σ exp(logits − max) − (logits[label] − max)`` (log-softmax's own arithmetic);
the gradient of the summed loss with respect to the logits is
``softmax − onehot(label)`` on labelled rows and 0 on ignored ones (``-100``), so ``∂h = g · W`` and
``∂W += gᵀ · h`` are computed in the forward pass (no second projection) and only scaled by the incoming gradient
in the backward pass. Same three matrix products as the plain path; the summed loss and both gradients equal the
plain path's up to float summation order (``tests/test_training_cpu_paths.py`` checks both).

Under ``torch.no_grad`` (evaluation) only the loss is computed: no gradient products. The trainer uses it on CPU by
default (``TrainConfig.loss_chunk_rows``); on CUDA the plain path stays the default because it runs in bf16
autocast there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _chunked(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_rows: int,
    want_hidden: bool,
    want_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The summed loss, and the gradients asked for (of the summed loss), chunk by chunk."""
    grad_hidden = torch.empty_like(hidden) if want_hidden else None
    grad_weight = torch.zeros_like(weight) if want_weight else None
    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    # one float32 buffer for every chunk's logits, then its probabilities, then its gradient (all in place)
    rows_at_once = min(chunk_rows, hidden.shape[0])
    buffer = torch.empty(rows_at_once, weight.shape[0], dtype=torch.float32, device=hidden.device)
    direct = hidden.dtype == weight.dtype == torch.float32
    for start in range(0, hidden.shape[0], chunk_rows):
        rows = slice(start, start + chunk_rows)
        h, y = hidden[rows], labels[rows]
        logits = buffer[: h.shape[0]]
        if direct:
            torch.mm(h, weight.T, out=logits)
        else:
            logits.copy_(h @ weight.T)
        labelled = y != IGNORE_INDEX
        target = torch.where(labelled, y, 0)[:, None]
        # -log_softmax(x)[y] = log(sum(exp(x - max))) - (x[y] - max): log_softmax's own arithmetic
        logits.sub_(logits.amax(dim=1, keepdim=True))
        picked = logits.gather(1, target).squeeze(1)
        sums = logits.exp_().sum(dim=1, keepdim=True)
        total += torch.where(labelled, sums.squeeze(1).log() - picked, 0.0).sum()
        if not (want_hidden or want_weight):
            continue
        grad = logits.div_(sums)  # softmax
        grad.scatter_add_(1, target, torch.full_like(picked, -1.0)[:, None])
        grad.mul_(labelled[:, None])
        grad = grad if direct else grad.to(weight.dtype)
        if grad_hidden is not None:
            torch.mm(grad, weight, out=grad_hidden[rows])
        if grad_weight is not None:
            grad_weight.addmm_(grad.T, h)
    return total, grad_hidden, grad_weight


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.T`` against ``labels``, gradients formed chunk by chunk."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk_rows: int):
        total, grad_hidden, grad_weight = _chunked(
            hidden, weight, labels, chunk_rows, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            None if grad_hidden is None else grad_hidden * grad_output,
            None if grad_weight is None else grad_weight * grad_output,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk_rows: int | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Cross-entropy of the logits ``hidden @ weight.T`` (``hidden (..., d)``, ``weight (V, d)``, ``labels (...)``,
    ``-100`` ignored): ``reduction`` ``sum`` or ``mean`` over labelled tokens.

    ``chunk_rows`` None or 0: the plain path (whole logits, ``F.cross_entropy``); otherwise chunks of that many
    tokens (see the module docstring).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be sum or mean, got {reduction!r}")
    hidden, labels = hidden.flatten(0, -2), labels.flatten()
    if not chunk_rows:
        logits = hidden @ weight.T
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction=reduction)
    if chunk_rows < 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        total = _ChunkedLinearCrossEntropy.apply(hidden, weight, labels, int(chunk_rows))
    else:  # evaluation: the loss only (an autograd Function would be told its inputs need gradients)
        total = _chunked(hidden, weight, labels, int(chunk_rows), False, False)[0]
    if reduction == "mean":
        return total / (labels != IGNORE_INDEX).sum()
    return total
