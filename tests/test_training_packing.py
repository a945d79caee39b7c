"""Packing invariants on real documents: every token once, boundaries right, positions, labels, tail counted."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from refinery.pipelines.models import load_tokenizer
from refinery.training.packing import BOS_ID, EOS_ID, IGNORE_INDEX, PackConfig, Packer, tokenize_documents


@pytest.fixture(scope="module")
def documents(real_documents) -> list[np.ndarray]:
    texts = real_documents.column("text").to_pylist()[::7][:60]
    return tokenize_documents(texts, load_tokenizer())


def _segments(batch, row: int) -> list[np.ndarray]:
    """The non-padding segments of one packed sequence, from its cu_seqlens."""
    cu = batch.cu_seqlens[row]
    return [batch.tokens[row, a:b] for a, b in itertools.pairwise(cu)]


def _check_structure(batch, config: PackConfig) -> None:
    """cu_seqlens, document ids, positions and labels agree with each other in every sequence."""
    for row in range(len(batch)):
        cu = batch.cu_seqlens[row]
        assert cu[0] == 0 and cu[-1] == config.seq_len and np.all(np.diff(cu) > 0)
        ids = np.repeat(np.arange(len(cu) - 1), np.diff(cu))
        np.testing.assert_array_equal(batch.document_ids[row], ids)
        for a, b in itertools.pairwise(cu):
            np.testing.assert_array_equal(batch.position_ids[row, a:b], np.arange(b - a))
            labels = batch.labels[row, a:b]
            assert labels[-1] == IGNORE_INDEX  # never across a boundary
            if not np.all(labels == IGNORE_INDEX):  # a document piece: labels are its next tokens
                np.testing.assert_array_equal(labels[:-1], batch.tokens[row, a + 1 : b])


def test_tokenized_documents_carry_begin_and_end_of_text(documents):
    assert all(d[0] == BOS_ID and d[-1] == EOS_ID for d in documents)
    assert all(np.count_nonzero(d == BOS_ID) == 1 for d in documents)


@pytest.mark.parametrize("seq_len", [64, 1000])
def test_carry_every_token_exactly_once(documents, seq_len):
    config = PackConfig(seq_len=seq_len)
    packer = Packer(config)
    for start in range(0, len(documents), 16):  # several add() calls: state crosses batches
        packer.add(documents[start : start + 16])
    batches = [packer.take(3), packer.take()]
    assert packer.ready == 0
    batches.append(packer.finish("pad"))
    emitted = np.concatenate([b.tokens.reshape(-1) for b in batches])
    pad = packer.stats.padded_tokens
    assert pad < seq_len
    flat = np.concatenate(documents)
    np.testing.assert_array_equal(emitted[: len(flat)], flat)  # in order, once, nothing missing
    assert len(emitted) == len(flat) + pad
    for batch in batches:
        _check_structure(batch, config)
    stats = packer.stats
    assert stats.document_tokens == stats.emitted_document_tokens == len(flat)
    assert stats.dropped_tokens == 0 and stats.sequences * seq_len == len(emitted)
    # each sequence boundary that falls inside a document cuts it: one more segment per cut
    ends = np.cumsum([len(d) for d in documents])
    cuts = np.setdiff1d(np.arange(seq_len, ends[-1], seq_len), ends)
    pieces = sum(len(b.cu_seqlens[r]) - 1 for b in batches for r in range(len(b)))
    assert pieces == len(documents) + len(cuts) + (1 if pad else 0)
    starts = ends - [len(d) for d in documents]
    assert stats.split_documents == int(np.count_nonzero(starts // seq_len != (ends - 1) // seq_len))


def test_documents_rebuilt_from_segments(documents):
    """Walking the segments of the sequences in order rebuilds every document (fragments joined)."""
    packer = Packer(PackConfig(seq_len=128))
    packer.add(documents)
    batch = packer.finish("pad")
    rebuilt, current = [], []
    for row in range(len(batch)):
        for segment in _segments(batch, row):
            if len(rebuilt) == len(documents):
                break  # the padding after the last document
            current.append(segment)
            if segment[-1] == EOS_ID:
                rebuilt.append(np.concatenate(current))
                current = []
    assert len(rebuilt) == len(documents)
    for got, want in zip(rebuilt, documents, strict=True):
        np.testing.assert_array_equal(got, want)


def test_pad_policy_keeps_short_documents_whole(documents):
    config = PackConfig(seq_len=512, overflow="pad")
    packer = Packer(config)
    packer.add(documents)
    batch = packer.finish("pad")
    _check_structure(batch, config)
    stats = packer.stats
    # a document no longer than a sequence lies inside one sequence: it starts with BOS and ends with EOS
    whole = [d for d in documents if len(d) <= config.seq_len]
    starts = [s for r in range(len(batch)) for s in _segments(batch, r) if s[0] == BOS_ID and s[-1] == EOS_ID]
    assert len(starts) >= len(whole)
    assert stats.emitted_document_tokens == stats.document_tokens
    assert stats.padded_tokens > 0 and stats.dropped_tokens == 0
    assert batch.tokens.size == stats.document_tokens + stats.padded_tokens
    assert stats.split_documents == sum(len(d) > config.seq_len for d in documents)


def test_drop_policy_counts_every_dropped_token(documents):
    config = PackConfig(seq_len=256, overflow="drop")
    packer = Packer(config)
    packer.add(documents)
    batch = packer.finish("drop")
    _check_structure(batch, config)
    stats = packer.stats
    assert stats.dropped_tokens > 0 and stats.padded_tokens == 0
    assert stats.document_tokens == stats.emitted_document_tokens + stats.dropped_tokens
    assert batch.tokens.size == stats.emitted_document_tokens


def test_finish_drop_counts_the_tail(documents):
    packer = Packer(PackConfig(seq_len=100))
    packer.add(documents)
    total = packer.stats.document_tokens
    batch = packer.finish("drop")
    assert packer.stats.dropped_tokens == total % 100
    assert batch.tokens.size == total - total % 100


def test_positions_continue_when_reset_is_off(documents):
    packer = Packer(PackConfig(seq_len=64, reset_positions=False))
    packer.add(documents[:5])
    batch = packer.take()
    np.testing.assert_array_equal(batch.position_ids, np.broadcast_to(np.arange(64), batch.tokens.shape))


def test_state_round_trip_gives_the_same_sequences(documents):
    config = PackConfig(seq_len=96)
    a = Packer(config)
    a.add(documents[:20])
    a.take(5)
    b = Packer(config)
    b.load_state(a.state(), a.stats.as_dict())
    for packer in (a, b):
        packer.add(documents[20:40])
    first, second = a.finish("pad"), b.finish("pad")
    for name in ("tokens", "document_ids", "position_ids", "labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert a.stats == b.stats
