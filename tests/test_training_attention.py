"""Document masking is exact: a document's logits packed among others equal its logits alone, on every path here."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from refinery.pipelines.models import load_tokenizer
from refinery.training.attention import build_mask, flex_available
from refinery.training.model import SIZES, Decoder, rope_tables, to_llama_state_dict
from refinery.training.packing import PackConfig, Packer, tokenize_documents

VOCAB = 2048  # a reduced output layer keeps the test fast; ids are folded into it
PATHS = ["sdpa", "sdpa_dense"] + (["flex"] if flex_available() else [])


@pytest.fixture(scope="module")
def model() -> Decoder:
    torch.manual_seed(0)
    config = dataclasses.replace(SIZES["tiny"], vocab_size=VOCAB, n_layers=3)
    return Decoder(config).eval()


@pytest.fixture(scope="module")
def packed(real_documents):
    """One 256-token sequence holding several real documents (the shortest ones of a sample)."""
    texts = sorted(real_documents.column("text").to_pylist()[::13][:40], key=len)[:8]
    documents = [d[:70] for d in tokenize_documents(texts, load_tokenizer())]
    packer = Packer(PackConfig(seq_len=256))
    packer.add(documents)
    batch = packer.take(1)
    assert len(batch) == 1 and len(batch.cu_seqlens[0]) >= 5  # several documents share the sequence
    return batch


def _tensors(batch):
    return [
        torch.from_numpy(a % VOCAB if a is batch.tokens else a)
        for a in (batch.tokens, batch.position_ids, batch.document_ids)
    ]


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("backend", PATHS)
def test_packed_logits_equal_logits_alone(model, packed, backend):
    tokens, positions, documents = _tensors(packed)
    with torch.no_grad():
        together = model(tokens, positions, documents, backend=backend)
        cu = packed.cu_seqlens[0]
        for a, b in itertools.pairwise(cu):
            alone = model(tokens[:, a:b], backend=backend)  # positions 0.., one document
            torch.testing.assert_close(together[:, a:b], alone, rtol=1e-4, atol=1e-4)


def test_without_the_document_mask_logits_differ(model, packed):
    """The equality above is not vacuous: plain causal attention lets later documents see earlier ones."""
    tokens, positions, documents = _tensors(packed)
    with torch.no_grad():
        causal = model(tokens, positions, documents, backend="causal")
        masked = model(tokens, positions, documents, backend="sdpa")
    cu = packed.cu_seqlens[0]
    assert torch.allclose(causal[:, : cu[1]], masked[:, : cu[1]], atol=1e-5)  # the first document sees nothing else
    assert not torch.allclose(causal[:, cu[1] :], masked[:, cu[1] :], atol=1e-3)


def test_sdpa_path_trains_and_gradients_stay_inside_documents(model, packed):
    """Backward works on CPU, and the loss of one document has no gradient through another document's tokens."""
    tokens, positions, documents = _tensors(packed)
    cu = packed.cu_seqlens[0]
    embeddings = model.embed_tokens(tokens).detach().requires_grad_(True)
    mask = build_mask(documents, "sdpa")
    hidden = embeddings
    cos_sin = rope_tables(positions, model.config.head_dim, model.config.rope_theta)
    for layer in model.layers:
        hidden = layer(hidden, *cos_sin, mask)
    hidden[:, cu[1] : cu[2]].sum().backward()  # the second document only
    grad = embeddings.grad.abs().sum(-1)[0]
    assert grad[cu[1] : cu[2]].min() > 0
    assert grad[: cu[1]].max() == 0 and grad[cu[2] :].max() == 0


def test_decoder_matches_transformers_llama(model):
    """Same weights in transformers' LlamaForCausalLM give the same logits: the architecture is Llama's."""
    from transformers import LlamaConfig, LlamaForCausalLM

    c = model.config
    config = LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.d_model, intermediate_size=c.ffn_dim, num_hidden_layers=c.n_layers,
        num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads, rope_theta=c.rope_theta,
        rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings, max_position_embeddings=1024,
        attn_implementation="sdpa",
    )  # fmt: skip
    llama = LlamaForCausalLM(config).eval()
    missing, unexpected = llama.load_state_dict(to_llama_state_dict(model), strict=False)
    assert not unexpected and all("lm_head" in k or "rotary" in k for k in missing)
    llama.tie_weights()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, VOCAB, (2, 48)))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), llama(ids).logits, rtol=1e-4, atol=1e-4)
