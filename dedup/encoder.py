"""Sentence embeddings from a local transformers encoder: mean pooling, L2-normalised, length-sorted batches.

One :class:`TextEncoder` per worker process (the model loads once); ``encode`` turns a list of texts into an
``(n, dim)`` float32 matrix whose rows are unit vectors in input order. It computes what sentence-transformers'
``encode(..., normalize_embeddings=True)`` computes for a mean-pooling model (all-MiniLM-L6-v2 and most
sentence encoders), without depending on sentence-transformers:

* tokenize with the model's own fast tokenizer, truncating to ``max_tokens`` (special tokens included, as
  sentence-transformers' ``max_seq_length`` does);
* sort the documents by token count and cut batches from that order, so each batch is padded only to its own
  longest document (web documents vary from a few to thousands of tokens: unsorted batches waste most of the
  compute on padding); rows are put back in input order before returning;
* mean of the last hidden states over the attention mask, computed in float32, then L2 normalisation;
* ``torch.inference_mode`` (no autograd bookkeeping); on a GPU the weights run in bfloat16.

Long documents are clipped to ``max_tokens * CHARS_PER_TOKEN_BOUND`` characters before tokenizing (tokenizing a
1 MB page only to keep its first 256 tokens costs more than the model). The clip never changes the result:
when the last kept token ends near the clip, the document is tokenized again in full (see
:meth:`TextEncoder._tokenize`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from refinery.pipelines.models import DEFAULT_ENCODER, load_encoder, resolve_model_path

#: Characters kept per allowed token before tokenizing. Real text averages 4-5 characters per token; 32 leaves
#: room for long words, URLs and code. A document whose kept tokens reach into the last ``CLIP_MARGIN``
#: characters of the clip is re-tokenized in full, so the bound is a speed-up, never an approximation.
CHARS_PER_TOKEN_BOUND = 32
#: Longer than any word a WordPiece/BPE pre-tokenizer turns into tokens of its own (BERT maps words over 100
#: characters to one ``[UNK]``), so a token ending before this margin cannot have been cut by the clip.
CLIP_MARGIN = 128


def encoder_dimension(model_path: str = DEFAULT_ENCODER) -> int:
    """The embedding width (``hidden_size`` of the model's ``config.json``), read without loading weights.

    Stages declare their output columns before the run starts, so the width must be known at validation time.
    """
    folder = resolve_model_path(model_path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_path}: no config.json in {folder} (expected a transformers model folder)")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for key in ("hidden_size", "d_model", "dim"):
        if isinstance(config.get(key), int):
            return int(config[key])
    raise ValueError(f"{model_path}: config.json has no hidden_size")


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when this process sees a GPU, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but this worker sees no GPU (torch.cuda.is_available())")
    return device


class TextEncoder:
    """A transformers encoder loaded once per worker; ``encode`` gives unit-norm float32 rows in input order."""

    def __init__(
        self, model_path: str = DEFAULT_ENCODER, max_tokens: int = 256, device: str = "auto", batch_size: int = 64
    ) -> None:
        import torch

        if max_tokens < 2:
            raise ValueError("max_tokens must leave room for the special tokens (>= 2)")
        self.model_path = model_path
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # one "Loading weights" bar per worker clutters run logs
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer, self.model = load_encoder(model_path, device=self.device, dtype=dtype)
        model_limit = getattr(self.model.config, "max_position_embeddings", None) or max_tokens
        self.max_tokens = int(min(max_tokens, model_limit))
        self.dim: int = int(self.model.config.hidden_size)
        self._pad_id = int(self.tokenizer.pad_token_id or 0)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_tokens`` with special tokens, exactly as an unclipped text."""
        limit = self.max_tokens * CHARS_PER_TOKEN_BOUND
        texts = [t or "" for t in texts]
        options = {"truncation": True, "max_length": self.max_tokens, "return_token_type_ids": False}
        ids: list[list[int]] = [[] for _ in texts]
        short = [i for i, text in enumerate(texts) if len(text) <= limit]
        clipped = [i for i, text in enumerate(texts) if len(text) > limit]
        if short:
            rows = self.tokenizer([texts[i] for i in short], return_attention_mask=False, **options)["input_ids"]
            for i, row in zip(short, rows, strict=True):
                ids[i] = row
        if clipped:  # offsets only here: building them in Python costs more than tokenizing
            encoded = self.tokenizer(
                [texts[i][:limit] for i in clipped], return_offsets_mapping=True, return_attention_mask=False, **options
            )
            redo = []
            for i, row, spans in zip(clipped, encoded["input_ids"], encoded["offset_mapping"], strict=True):
                ids[i] = row
                if max(end for _, end in spans) > limit - CLIP_MARGIN:
                    redo.append(i)
            if redo:
                full = self.tokenizer([texts[i] for i in redo], return_attention_mask=False, **options)["input_ids"]
                for i, row in zip(redo, full, strict=True):
                    ids[i] = row
        return ids

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, each row L2-normalised, rows in the order of ``texts``."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._tokenize(list(texts))
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: a batch too big for memory fails at once
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chosen = order[start : start + self.batch_size]
                out[chosen] = self._forward([ids[i] for i in chosen], int(lengths[chosen].max()))
        return out

    def _forward(self, rows: list[list[int]], width: int) -> np.ndarray:
        """Mean-pooled, normalised embeddings of one batch padded to ``width`` tokens."""
        import torch

        input_ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        ids_t = torch.from_numpy(input_ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        hidden = self.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.float()
        weights = mask_t.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy().astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """What produced the embeddings (recorded by callers that save them)."""
        return {"model_path": self.model_path, "max_tokens": self.max_tokens, "dim": self.dim, "device": self.device}
