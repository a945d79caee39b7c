"""A teacher LLM on this machine: any causal LM folder or ``.gguf`` file, loaded through ``refinery.pipelines.models``.

Where the rubric's answers start with distinct tokens (``scoring: probabilities``), a batch is labelled in one
forward pass: the chat-formatted prompts are right-padded, the decoder's hidden state at each prompt's last
token goes through the LM head (only there: full-sequence logits of a 49k vocabulary would cost ~1 GB per batch),
and the softmax probabilities of the label tokens, renormalised, give the label (argmax) and the score (expected
value). Otherwise the teacher generates a few tokens greedily and the answer is parsed.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from refinery.classifiers.labelling.prompts import Prompt
from refinery.classifiers.labelling.teacher import Answer, answer_from_probabilities, answer_from_text
from refinery.pipelines.models import DEFAULT_TEACHER, load_causal_lm


class LocalTeacher:
    """Labels with a local causal LM; ``batch_size`` documents per forward pass."""

    def __init__(self, model_path: str = DEFAULT_TEACHER, batch_size: int = 8, max_new_tokens: int = 8) -> None:
        self.name = f"local:{model_path}"
        self.model_path = model_path
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = threading.Lock()
        self._prefix_key: tuple[int, ...] | None = None
        self._prefix_kv: Any = None

    def identity(self) -> dict[str, Any]:
        """The model file's (or folder's) sha256, not just its path: a replaced model is another teacher."""
        from refinery.pipelines.file_digests import path_digest
        from refinery.pipelines.models import resolve_model_path

        digest = path_digest(resolve_model_path(self.model_path))
        return {"backend": "local", "model_sha256": digest, "max_new_tokens": self.max_new_tokens}

    def load(self) -> tuple[Any, Any]:
        """The model loads on first use: a resumed labelling with nothing left to ask never loads it."""
        with self._load_lock:
            if self._loaded is None:
                tokenizer, model = load_causal_lm(self.model_path)
                if tokenizer.pad_token_id is None:
                    tokenizer.pad_token = tokenizer.eos_token
                self._loaded = (tokenizer, model)
        return self._loaded

    @property
    def tokenizer(self) -> Any:
        return self.load()[0]

    @property
    def model(self) -> Any:
        return self.load()[1]

    def truncate(self, texts: list[str], max_tokens: int) -> list[str]:
        """Cut each text after ``max_tokens`` teacher tokens (decoded back, so the prompt holds clean text)."""
        encoded = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [
            text if len(ids) <= max_tokens else self.tokenizer.decode(ids[:max_tokens])
            for text, ids in zip(texts, encoded, strict=True)
        ]

    def label_token_ids(self, prompt: Prompt) -> list[int] | None:
        """First token of each answer; None when two answers share it (then only generation can tell them apart)."""
        ids = [self.tokenizer.encode(token, add_special_tokens=False)[0] for token in prompt.answer_tokens]
        return ids if len(set(ids)) == len(ids) else None

    def prompt_strings(self, prompt: Prompt, texts: list[str]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(prompt.messages(text), tokenize=False, add_generation_prompt=True)
            for text in texts
        ]

    def label(self, prompt: Prompt, texts: list[str]) -> list[Answer]:
        token_ids = self.label_token_ids(prompt) if prompt.scoring == "probabilities" else None
        answers: list[Answer] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            try:
                if token_ids is not None:
                    answers.extend(self._by_probabilities(prompt, chunk, token_ids))
                else:
                    generated = self.generate(self.prompt_strings(prompt, chunk))
                    answers.extend(answer_from_text(prompt, text) for text in generated)
            except Exception as error:  # a batch that fails is recorded per document, never dropped
                answers.extend(Answer(None, None, "", f"{type(error).__name__}: {error}") for _ in chunk)
        return answers

    def prompt_pieces(self, prompt: Prompt) -> tuple[list[int], list[int]]:
        """Token ids of the chat-formatted prompt before and after the document (the prefix is shared by every
        document, so its keys and values are computed once per prompt)."""
        marker = "\x00DOCUMENT\x00"
        rendered = self.prompt_strings(prompt, [marker])[0]
        before, _, after = rendered.partition(marker)
        encode = self.tokenizer.encode
        return encode(before, add_special_tokens=False), encode(after, add_special_tokens=False)

    def _prefix_cache(self, prefix: list[int]) -> Any:
        import torch

        key = tuple(prefix)
        if self._prefix_key != key:
            with torch.inference_mode():
                output = self.model.get_decoder()(input_ids=torch.tensor([prefix]), use_cache=True)
            self._prefix_key, self._prefix_kv = key, output.past_key_values
        return copy.deepcopy(self._prefix_kv)

    def _by_probabilities(self, prompt: Prompt, texts: list[str], token_ids: list[int]) -> list[Answer]:
        """One forward pass over [cached prompt prefix] + document + prompt suffix, right-padded."""
        import torch

        before, after = self.prompt_pieces(prompt)
        documents = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = [ids + after for ids in documents]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        cache = self._prefix_cache(before)
        cache.batch_repeat_interleave(len(rows))
        positions = torch.arange(len(before), len(before) + width).unsqueeze(0).expand(len(rows), -1)
        full_mask = torch.cat([torch.ones(len(rows), len(before), dtype=mask.dtype), mask], dim=1)
        with torch.inference_mode():
            hidden = self.model.get_decoder()(
                input_ids=input_ids, attention_mask=full_mask, position_ids=positions, cache=cache
            ).last_hidden_state
            last = mask.sum(dim=1) - 1
            logits = self.model.get_output_embeddings()(hidden[torch.arange(hidden.shape[0]), last])
            probabilities = torch.softmax(logits.float(), dim=-1)[:, token_ids].tolist()
        answers = []
        for row in probabilities:
            raw = json.dumps({token: round(p, 6) for token, p in zip(prompt.answer_tokens, row, strict=True)})
            answers.append(answer_from_probabilities(prompt, row, raw))
        return answers

    def generate(self, chunk: list[str], max_new_tokens: int | None = None) -> list[str]:
        """Greedy continuations of chat-formatted prompts (left-padded so every row continues at the end)."""
        return self.generate_with_logprobs(chunk, max_new_tokens)[0]

    def generate_with_logprobs(
        self, chunk: list[str], max_new_tokens: int | None = None, top: int = 0
    ) -> tuple[list[str], list[list[tuple[str, float]]]]:
        """Greedy continuations and, when ``top`` > 0, each row's ``top`` most probable first tokens with their
        log-probabilities (from the same pass: what an OpenAI-compatible server returns as ``top_logprobs``)."""
        import torch

        self.tokenizer.padding_side = "left"
        batch = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens or self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                output_scores=top > 0,
                return_dict_in_generate=True,
            )
        new = output.sequences[:, batch["input_ids"].shape[1] :]
        texts = [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
        firsts: list[list[tuple[str, float]]] = [[] for _ in chunk]
        if top > 0:
            values, indices = torch.log_softmax(output.scores[0].float(), dim=-1).topk(top, dim=-1)
            firsts = [
                [(self.tokenizer.decode([i]), float(v)) for v, i in zip(vs, ids, strict=True)]
                for vs, ids in zip(values.tolist(), indices.tolist(), strict=True)
            ]
        return texts, firsts
