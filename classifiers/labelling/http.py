"""A teacher behind any OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp server, Ollama, ...).

Requests go out from a thread pool (``concurrency``), each with a timeout, through a shared rate limiter
(``requests_per_second``), and are retried with exponential back-off on connection errors, timeouts, HTTP 429 and
5xx (other 4xx answers are final). Greedy decoding (``temperature: 0``). For probability-scored rubrics the request
asks for ``logprobs``/``top_logprobs``; when the server returns them the label probabilities are read from the
first generated token (the same expected-value score as the local teacher), otherwise the answer text is parsed.
Only the standard library is used (``urllib``), so the backend needs no client package.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from refinery.classifiers.labelling.prompts import Prompt
from refinery.classifiers.labelling.teacher import Answer, answer_from_probabilities, answer_from_text
from refinery.pipelines.models import DEFAULT_TOKENIZER, load_tokenizer

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RateLimiter:
    """At most ``rate`` request starts per second across threads (None: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 0.0 if not rate else 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


class HttpTeacher:
    """Labels through ``POST {base_url}/chat/completions``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        requests_per_second: float | None = None,
        max_tokens: int = 8,
        top_logprobs: int = 20,
        tokenizer: str = DEFAULT_TOKENIZER,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"http:{model}"
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.limiter = RateLimiter(requests_per_second)
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self._tokenizer_reference = tokenizer
        self._tokenizer: Any = None
        self.retries = 0

    def identity(self) -> dict[str, Any]:
        """The endpoint and served model, the stand-in tokenizer's digest (it cuts the documents), decoding."""
        from refinery.pipelines.file_digests import path_digest
        from refinery.pipelines.models import tokenizer_file

        return {
            "backend": "http",
            "base_url": self.base_url,
            "model": self.model,
            "tokenizer_sha256": path_digest(tokenizer_file(self._tokenizer_reference)),
            "max_tokens": self.max_tokens,
            "top_logprobs": self.top_logprobs,
        }

    def truncate(self, texts: list[str], max_tokens: int) -> list[str]:
        """The server's tokenizer is unknown here: cut with a stand-in (the Llama 3 tokenizer by default)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._tokenizer_reference)
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [
            text if len(e.ids) <= max_tokens else text[: e.offsets[max_tokens - 1][1]]
            for text, e in zip(texts, encodings, strict=True)
        ]

    def label(self, prompt: Prompt, texts: list[str]) -> list[Answer]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda text: self.label_one(prompt, text), texts))

    def label_one(self, prompt: Prompt, text: str) -> Answer:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages(text),
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        if prompt.scoring == "probabilities":
            body |= {"logprobs": True, "top_logprobs": self.top_logprobs}
        try:
            response = self.post("/chat/completions", body)
            choice = response["choices"][0]
            content = choice["message"].get("content") or ""
        except Exception as error:
            return Answer(None, None, "", f"{type(error).__name__}: {error}")
        probabilities = label_probabilities(prompt, choice.get("logprobs"))
        if probabilities is not None:
            return answer_from_probabilities(prompt, probabilities, content)
        return answer_from_text(prompt, content)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries: exponential back-off (``backoff_s * 2**attempt``) on transient failures."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            self.limiter.wait()
            request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                    return json.loads(reply.read())
            except urllib.error.HTTPError as error:
                if error.code not in RETRYABLE_STATUS or attempt == self.max_retries:
                    raise RuntimeError(f"HTTP {error.code}: {error.read()[:200]!r}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == self.max_retries:
                    raise
            self.retries += 1
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")


def label_probabilities(prompt: Prompt, logprobs: dict[str, Any] | None) -> list[float] | None:
    """Label probabilities from the first generated token's ``top_logprobs`` (None when absent or no label is
    among them). A server token counts for a label when, stripped, it is a prefix of exactly one answer."""
    if prompt.scoring != "probabilities" or not logprobs or not logprobs.get("content"):
        return None
    probabilities = [0.0] * len(prompt.labels)
    for entry in logprobs["content"][0].get("top_logprobs", []):
        token = entry["token"].strip()
        if not token:
            continue
        matches = [i for i, answer in enumerate(prompt.answer_tokens) if answer.startswith(token)]
        if len(matches) == 1:
            probabilities[matches[0]] += math.exp(entry["logprob"])
    return probabilities if sum(probabilities) > 0 else None
