"""Teacher labelling through the real code paths: the bundled SmolLM2 GGUF on this machine, and the same model
behind a real OpenAI-compatible HTTP server process on loopback (``refinery.classifiers.labelling.serve``).

The model loads once per module (~20 s), documents are truncated to 48 tokens to keep the forward passes short.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from refinery.classifiers.labelling import store
from refinery.classifiers.labelling.http import HttpTeacher, RateLimiter
from refinery.classifiers.labelling.local import LocalTeacher
from refinery.classifiers.labelling.prompts import Prompt, load_prompt
from refinery.classifiers.labelling.run import label_documents
from refinery.classifiers.sampling import allocate, stratified_sample

MAX_TOKENS = 48


@pytest.fixture(scope="module")
def teacher() -> LocalTeacher:
    return LocalTeacher(batch_size=4)


@pytest.fixture(scope="module")
def documents(real_documents: pa.Table) -> pa.Table:
    """Six real documents: English documentation, a copyright file, a changelog, a non-English handbook page."""
    return stratified_sample(real_documents.append_column("origin", pa.array(["kept"] * real_documents.num_rows)), 6)


@pytest.fixture(scope="module")
def server():
    """The OpenAI-compatible server as a real subprocess: wait for its READY line, kill it at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "refinery.classifiers.labelling.serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline and not line.startswith("READY"):
            line = process.stdout.readline().strip()
            if not line and process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
        assert line.startswith("READY"), "server did not come up"
        yield line.split()[1]
    finally:
        process.kill()
        process.wait(timeout=30)


def test_prompts_are_files_with_paraphrases():
    for name in ("quality", "edu", "domain", "topic"):
        prompt, paraphrase = load_prompt(name), load_prompt(f"{name}_paraphrase")
        assert paraphrase.labels == prompt.labels and paraphrase.paraphrase_of == name
        assert paraphrase.hash != prompt.hash and "{text}" in prompt.template
    edu = load_prompt("edu")
    assert edu.parse("Score: 4 points") == "4" and edu.parse("no idea") is None
    assert load_prompt("domain").parse("Code.") == "code"
    assert set(load_prompt("domain").labels) >= {"web", "code", "math", "multilingual"}


def test_stratified_sample_is_seeded_and_covers_strata(real_documents):
    table = real_documents.append_column("origin", pa.array(["kept"] * real_documents.num_rows))
    first, again = stratified_sample(table, 40, seed=1), stratified_sample(table, 40, seed=1)
    assert first.num_rows == 40 and first["id"].to_pylist() == again["id"].to_pylist()
    assert stratified_sample(table, 40, seed=2)["id"].to_pylist() != first["id"].to_pylist()
    strata = {(s, lang) for s, lang in zip(table["source"].to_pylist(), table["lang"].to_pylist(), strict=True)}
    sampled = {(s, lang) for s, lang in zip(first["source"].to_pylist(), first["lang"].to_pylist(), strict=True)}
    assert len(strata) <= 40 and sampled == strata, "every (source, language) stratum is represented"
    assert allocate([900, 90, 10], 100) == [90, 9, 1] and sum(allocate([5, 5, 5], 2)) == 2


def test_local_teacher_labels_real_documents_from_label_probabilities(teacher, documents):
    prompt = load_prompt("edu")
    texts = teacher.truncate(documents["text"].to_pylist(), MAX_TOKENS)
    answers = teacher.label(prompt, texts)
    assert len(answers) == len(texts) and all(a.error is None for a in answers)
    for answer in answers:
        assert answer.label in prompt.labels and math.isclose(sum(answer.probabilities), 1.0, rel_tol=1e-5)
        expected = sum(int(label) * p for label, p in zip(prompt.labels, answer.probabilities, strict=True))
        assert math.isclose(answer.score, expected, rel_tol=1e-6)
        assert set(json.loads(answer.raw_answer)) == set(prompt.answer_tokens)
    # the cached-prefix forward pass gives what a plain forward pass over the whole chat prompt gives
    ids = teacher.label_token_ids(prompt)
    full = teacher.tokenizer(teacher.prompt_strings(prompt, texts[:1]), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        direct = teacher.model(**full).logits[0, -1].softmax(-1)[ids]
    assert torch.allclose(direct / direct.sum(), torch.tensor(answers[0].probabilities), atol=2e-3)


def test_local_teacher_generates_and_parses_when_the_rubric_needs_it(teacher, documents, tmp_path):
    data = {**load_prompt("domain").__dict__, "name": "domain_generated", "scoring": "generation"}
    prompt = Prompt(**data)
    answers = teacher.label(prompt, teacher.truncate(documents["text"].to_pylist()[:2], MAX_TOKENS))
    for answer in answers:
        assert answer.raw_answer, "the generated text is kept"
        assert (answer.label in prompt.labels and answer.error is None) or answer.error == "unparseable"


def test_resumed_labelling_never_asks_twice(teacher, documents, tmp_path):
    prompt = load_prompt("quality")
    first = label_documents(documents, tmp_path, prompt, teacher, MAX_TOKENS, chunk_size=2, limit=4)
    assert (first["labelled"], first["cached"]) == (4, 0)
    parts = sorted((tmp_path / "labels").glob("*.parquet"))
    assert len(parts) == 2
    second = label_documents(documents, tmp_path, prompt, teacher, MAX_TOKENS, chunk_size=2)
    assert (second["labelled"], second["cached"]) == (2, 4), "only the two new documents are asked"
    fresh = LocalTeacher()  # same model: same teacher name, so the cache applies
    third = label_documents(documents, tmp_path, prompt, fresh, MAX_TOKENS, chunk_size=2)
    assert third["labelled"] == 0 and fresh._loaded is None, "nothing left to ask: the model is not even loaded"
    labels = store.read_labels(tmp_path, prompt="quality")
    assert sorted(labels["id"].to_pylist()) == sorted(documents["id"].to_pylist())
    assert set(labels["prompt_hash"].to_pylist()) == {prompt.hash}
    assert set(labels["teacher"].to_pylist()) == {teacher.name}
    assert labels.schema.names[:8] == [
        "id",
        "prompt",
        "label",
        "score",
        "teacher",
        "prompt_hash",
        "raw_answer",
        "error",
    ]


def test_http_teacher_against_a_real_openai_compatible_server(server, teacher, documents, tmp_path):
    prompt = load_prompt("quality")
    http = HttpTeacher(server, "smollm2", concurrency=2, timeout_s=300, requests_per_second=20)
    texts = teacher.truncate(documents["text"].to_pylist()[:2], MAX_TOKENS)
    remote = http.label(prompt, texts)
    local = teacher.label(prompt, texts)
    for r, lo in zip(remote, local, strict=True):
        assert r.error is None and r.probabilities is not None, "the server returned top_logprobs"
        assert r.label in prompt.labels and r.raw_answer is not None
        assert abs(r.score - lo.score) < 0.2, "same model over HTTP: nearly the same P(yes)"
    summary = label_documents(documents.slice(0, 2), tmp_path, prompt, http, MAX_TOKENS)
    assert summary["labelled"] == 2 and summary["failed"] == 0
    assert label_documents(documents.slice(0, 2), tmp_path, prompt, http, MAX_TOKENS)["labelled"] == 0


def test_http_failures_are_recorded_after_retries(tmp_path, documents):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: connection refused, a real network error
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = HttpTeacher(f"http://127.0.0.1:{port}/v1", "none", max_retries=2, backoff_s=0.01, timeout_s=2)
    summary = label_documents(documents.slice(0, 2), tmp_path, load_prompt("quality"), http, MAX_TOKENS)
    assert summary["failed"] == 2 and http.retries == 4
    labels = store.read_labels(tmp_path)
    assert labels.num_rows == 2 and pc.all(pc.is_valid(labels["error"])).as_py()
    assert all(label is None for label in labels["label"].to_pylist())


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(50.0)
    started = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - started >= 5 / 50 - 1e-3
