"""The trainer's faster CPU paths compute what the plain paths compute (up to float summation order).

* attention ``sdpa``: one-document rows through ``is_causal``, the other rows cut into their documents (each
  ``is_causal`` on its own), against ``sdpa_dense`` (one dense document mask for the batch), forward and gradients;
* the chunked output projection + cross-entropy against ``lm_head`` + ``F.cross_entropy``, loss and gradients;
* the trainer with both on (the CPU default) against both off: the same losses step by step on real shards.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from training_fixtures import build_manifest, one_thread  # noqa: F401  (autouse: one torch thread)

from refinery.pipelines.models import load_tokenizer
from refinery.training.attention import attend, build_mask
from refinery.training.loss import linear_cross_entropy
from refinery.training.packing import PackConfig, Packer, tokenize_documents
from refinery.training.trainer import CPU_LOSS_CHUNK_ROWS, Trainer, TrainingError, preset, train


@pytest.fixture(scope="module")
def document_ids(real_documents) -> torch.Tensor:
    """``(6, 96)`` document ids packed from real documents: some rows one document (a long page's fragment), others
    several (short documents), as the packer emits them."""
    texts = real_documents.column("text").to_pylist()[::7][:60]
    tokenizer = load_tokenizer()
    lengths = [40, 300, 25, 18, 30, 200, 12, 9, 31, 400]  # tokens kept per document: long pages and short ones
    documents = [d[:n] for d, n in zip(tokenize_documents(texts, tokenizer), lengths, strict=False)]
    packer = Packer(PackConfig(seq_len=96))
    packer.add(documents)
    return torch.from_numpy(packer.take(6).document_ids)


def _qkv(batch: int, length: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, 4, length, 16), (batch, 2, length, 16), (batch, 2, length, 16)]
    return [torch.randn(s, generator=generator).requires_grad_(True) for s in shapes]


def _attention_and_grads(document_ids: torch.Tensor, backend: str) -> list[torch.Tensor]:
    q, k, v = _qkv(*document_ids.shape)
    out = attend(q, k, v, build_mask(document_ids, backend))  # type: ignore[arg-type]
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a loss that weighs every output differently
    (out * weights).sum().backward()
    return [out.detach(), q.grad, k.grad, v.grad]


def test_split_attention_equals_one_dense_document_mask(document_ids):
    one_document = document_ids.amax(dim=1) == 0
    assert one_document.any() and not one_document.all()  # both kinds of row: the split path runs
    mask = build_mask(document_ids, "sdpa")
    assert mask.mask is None  # no mask: one-document rows are causal, other rows are cut into their documents
    multi = torch.nonzero(~one_document).flatten().tolist()
    assert sorted({row for row, _, _ in mask.segments}) == multi
    for row in multi:  # the documents of a row tile it, each one document id
        spans = [(start, end) for r, start, end in mask.segments if r == row]
        assert spans[0][0] == 0 and spans[-1][1] == document_ids.shape[1]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert [len(set(document_ids[row, a:b].tolist())) for a, b in spans] == [1] * len(spans)
        assert len(spans) == int(document_ids[row].max()) + 1
    for fast, dense in zip(
        _attention_and_grads(document_ids, "sdpa"), _attention_and_grads(document_ids, "sdpa_dense"), strict=True
    ):
        torch.testing.assert_close(fast, dense, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", ["single", "multi"])
def test_split_attention_when_every_row_is_of_one_kind(document_ids, rows):
    one_document = document_ids.amax(dim=1) == 0
    ids = document_ids[one_document if rows == "single" else ~one_document]
    mask = build_mask(ids, "sdpa")
    assert (mask.order is None) == (rows == "single")  # all one-document rows: a single causal call
    for fast, dense in zip(_attention_and_grads(ids, "sdpa"), _attention_and_grads(ids, "sdpa_dense"), strict=True):
        torch.testing.assert_close(fast, dense, rtol=1e-5, atol=1e-6)


def test_split_attention_keeps_documents_apart(document_ids):
    """Not vacuous: attention without the document mask differs on the multi-document rows."""
    multi = document_ids.amax(dim=1) > 0
    fast = _attention_and_grads(document_ids, "sdpa")[0]
    causal = _attention_and_grads(document_ids, "causal")[0]
    torch.testing.assert_close(fast[~multi], causal[~multi], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fast[multi], causal[multi], atol=1e-3)


def _loss_and_grads(chunk_rows: int, reduction: str) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 100, 24, generator=generator).requires_grad_(True)  # 300 tokens: not a multiple of 64
    weight = (0.3 * torch.randn(500, 24, generator=generator)).requires_grad_(True)
    labels = torch.randint(0, 500, (3, 100), generator=generator)
    labels[:, ::7] = -100  # ignored tokens, as at document ends and on padding
    loss = linear_cross_entropy(hidden, weight, labels, chunk_rows, reduction)
    (loss * 0.37).backward()
    return [loss.detach(), hidden.grad, weight.grad]


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_chunked_loss_equals_the_plain_loss(reduction):
    plain = _loss_and_grads(0, reduction)
    chunked = _loss_and_grads(64, reduction)
    for a, b in zip(chunked, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert plain[2].abs().sum() > 0 and plain[1].abs().sum() > 0


def test_chunked_loss_without_gradients_is_the_same_number():
    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(130, 8, generator=generator).requires_grad_(True)  # as in evaluation: parameters that
    weight = torch.randn(50, 8, generator=generator).requires_grad_(True)  # require gradients, under no_grad
    labels = torch.randint(0, 50, (130,), generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(
            linear_cross_entropy(hidden, weight, labels, 32), linear_cross_entropy(hidden, weight, labels, None)
        )
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(hidden, weight, labels, 32, "none")


@pytest.fixture(scope="module")
def manifest(real_documents, tmp_path_factory) -> Path:
    return build_manifest(real_documents, tmp_path_factory.mktemp("manifest"))


def test_trainer_fast_paths_give_the_plain_paths_losses(manifest, tmp_path):
    """Four steps of ``tiny`` on real shards (1,024-token micro-batches: four loss chunks, rows of one and of several
    documents), then the held-out losses: the CPU defaults against the plain paths."""
    runs = {}
    for name, overrides in {"fast": {}, "plain": {"backend": "sdpa_dense", "loss_chunk_rows": 0}}.items():
        trainer = Trainer(manifest, tmp_path / name, preset("tiny", token_budget=4 * 2048, **overrides))
        runs[name] = (trainer, [trainer.train_step()["loss"] for _ in range(4)], trainer.evaluate())
    fast, plain = runs["fast"], runs["plain"]
    assert (fast[0].backend, fast[0].loss_chunk_rows) == ("sdpa", CPU_LOSS_CHUNK_ROWS)
    assert (plain[0].backend, plain[0].loss_chunk_rows) == ("sdpa_dense", 0)
    assert plain[1][-1] < plain[1][0] - 0.1  # the model learns: the comparison is of trained steps
    torch.testing.assert_close(torch.tensor(fast[1]), torch.tensor(plain[1]), rtol=1e-5, atol=1e-5)
    assert fast[2].keys() == plain[2].keys()
    for bucket in plain[2]:
        assert fast[2][bucket] == pytest.approx(plain[2][bucket], rel=1e-5)


def test_a_run_started_before_the_new_field_still_resumes(manifest, tmp_path):
    """``loss_chunk_rows`` is a new TrainConfig field: a run whose config.json predates it resumes (the field's
    default is what it ran with), and a run of another value of a field still refuses."""
    output = tmp_path / "run"
    config = preset("tiny", seq_len=64, micro_batch=2, grad_accum=1, token_budget=4 * 128, eval_sequences=2)
    assert not train(manifest, output, config, stop_after_steps=2)["finished"]
    record = json.loads((output / "config.json").read_text())
    del record["train"]["loss_chunk_rows"]
    (output / "config.json").write_text(json.dumps({**record, "train": {**record["train"], "lr": 1.0}}))
    with pytest.raises(TrainingError, match="another configuration"):
        train(manifest, output, config, resume=True)
    (output / "config.json").write_text(json.dumps(record))
    resumed = train(manifest, output, config, resume=True)
    assert resumed["finished"] and resumed["steps"] == 4
