"""Packing: documents → fixed-length token sequences with per-document boundaries, vectorised with NumPy.

Every document becomes ``<|begin_of_text|> tokens <|end_of_text|>`` (ids 128000 / 128001 for Llama 3), tokenized
in batches by the Rust tokenizer (``encode_batch``). The packer keeps one flat buffer of *segments* (a document,
a document fragment, or padding) whose start is always the start of a sequence, and emits sequences of
``seq_len`` tokens from its front. A sequence carries:

* ``tokens`` — ``seq_len`` token ids;
* ``document_ids`` — the index of each token's segment inside the sequence (0, 1, ...); attention is allowed
  only between tokens with the same id (the document mask) and padding has ids of its own;
* ``position_ids`` — restart at 0 at every segment when ``reset_positions`` (the default; see below);
* ``labels`` — the next token inside the same segment, ``-100`` (ignored) at the last token of a segment and on
  padding, so no token is ever trained to predict across a document boundary;
* ``cu_seqlens`` — cumulative segment lengths ``[0, l0, l0+l1, ..., seq_len]`` (the flash-attention varlen form).

Overflow policy — what happens to a document that does not fit the rest of the current sequence:

* ``carry`` (default): fill the sequence with its head; the rest continues at the start of the next sequence.
  No padding and no loss: what Llama-style pre-training does.
* ``pad``: pad the current sequence (padding is counted) and start the document in the next one; a document longer
  than ``seq_len`` is still cut into ``seq_len`` pieces (counted in ``split_documents``).
* ``drop``: keep the head that fits, drop the rest and count the dropped tokens.

At the end of a stream, :meth:`Packer.finish` pads the last partial sequence or drops it, and counts either. So
nothing is ever lost silently: ``documents_tokens == emitted_document_tokens + dropped_tokens + buffered_tokens``.

Why positions restart by default: with a block-causal document mask and RoPE, a packed document then sees exactly
the inputs it would see alone (the logits-equality test relies on it), a fragment carried to the next sequence
starts like a fresh document, and RoPE angles stay within ``seq_len`` (no precision loss at large positions that
training never saw). ``reset_positions=False`` gives the classic continuous positions of plain causal packing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

BOS_ID = 128000
EOS_ID = 128001
IGNORE_INDEX = -100

Overflow = Literal["carry", "pad", "drop"]


@dataclass(frozen=True)
class PackConfig:
    """How documents become sequences (see the module docstring for the policies and the defaults' reasons)."""

    seq_len: int = 8192
    overflow: Overflow = "carry"
    reset_positions: bool = True
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    pad_id: int = EOS_ID

    def __post_init__(self) -> None:
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be at least 2, got {self.seq_len}")
        if self.overflow not in ("carry", "pad", "drop"):
            raise ValueError(f"overflow must be carry, pad or drop, got {self.overflow!r}")


@dataclass
class PackStats:
    """Counts that make every token accountable (tokens include the begin/end-of-text tokens)."""

    documents: int = 0
    document_tokens: int = 0
    sequences: int = 0
    emitted_document_tokens: int = 0
    padded_tokens: int = 0
    dropped_tokens: int = 0
    split_documents: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class PackedBatch:
    """``n`` packed sequences: int64 arrays of shape ``(n, seq_len)`` and one ``cu_seqlens`` array per sequence."""

    tokens: np.ndarray
    document_ids: np.ndarray
    position_ids: np.ndarray
    labels: np.ndarray
    cu_seqlens: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def tokenize_documents(texts: Sequence[str], tokenizer: Any, config: PackConfig = PackConfig()) -> list[np.ndarray]:
    """Each text as ``[bos] + ids + [eos]`` (int32), tokenized in one ``encode_batch`` call (Rust, all cores)."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    out = []
    for encoding in encodings:
        ids = np.empty(len(encoding.ids) + 2, dtype=np.int32)
        ids[0], ids[-1] = config.bos_id, config.eos_id
        ids[1:-1] = encoding.ids
        out.append(ids)
    return out


class Packer:
    """Streaming packer: :meth:`add` documents, :meth:`take` full sequences, :meth:`finish` the tail.

    The state (:meth:`state` / :meth:`from_state`) is two small arrays, so a trainer can checkpoint the exact data
    position and resume to the same sequences.
    """

    def __init__(self, config: PackConfig = PackConfig()):
        self.config = config
        self.stats = PackStats()
        self._tokens = np.zeros(0, dtype=np.int32)
        self._lengths = np.zeros(0, dtype=np.int64)  # segment lengths, front of buffer = start of a sequence
        self._is_pad = np.zeros(0, dtype=bool)

    # -- input ---------------------------------------------------------------------------------------------
    def add(self, documents: Sequence[np.ndarray]) -> None:
        """Append tokenized documents (each already ``[bos] ... [eos]``) under the overflow policy."""
        if not documents:
            return
        lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
        self.stats.documents += len(documents)
        self.stats.document_tokens += int(lengths.sum())
        if self.config.overflow == "carry":
            self._append(np.concatenate(documents), lengths, np.zeros(len(documents), dtype=bool))
            self.stats.split_documents += self._count_splits(lengths)
            return
        self._add_placed(documents, lengths)

    def _count_splits(self, lengths: np.ndarray) -> int:
        """Documents of ``lengths`` (just appended at the buffer's end) that cross a sequence boundary."""
        seq_len = self.config.seq_len
        ends = self.buffered_tokens - lengths.sum() + np.cumsum(lengths)
        starts = ends - lengths
        return int(np.count_nonzero(starts // seq_len != (ends - 1) // seq_len))

    def _add_placed(self, documents: Sequence[np.ndarray], lengths: np.ndarray) -> None:
        """``pad`` and ``drop``: place documents one by one (integer arithmetic; the copies stay vectorised)."""
        seq_len, pad_id = self.config.seq_len, self.config.pad_id
        parts: list[np.ndarray] = []
        seg_lengths: list[int] = []
        seg_pad: list[bool] = []
        offset = self.buffered_tokens
        for document, length in zip(documents, lengths.tolist(), strict=True):
            room = seq_len - offset % seq_len
            if length > room:
                if self.config.overflow == "drop":
                    self.stats.dropped_tokens += length - room
                    document, length = document[:room], room
                elif room < seq_len:  # pad: close the current sequence, start the document fresh
                    parts.append(np.full(room, pad_id, dtype=np.int32))
                    seg_lengths.append(room)
                    seg_pad.append(True)
                    self.stats.padded_tokens += room
                    offset += room
                if length > seq_len:
                    self.stats.split_documents += 1
            parts.append(document)
            seg_lengths.append(length)
            seg_pad.append(False)
            offset += length
        self._append(np.concatenate(parts), np.asarray(seg_lengths, dtype=np.int64), np.asarray(seg_pad))

    def _append(self, tokens: np.ndarray, lengths: np.ndarray, is_pad: np.ndarray) -> None:
        self._tokens = np.concatenate([self._tokens, tokens.astype(np.int32, copy=False)])
        self._lengths = np.concatenate([self._lengths, lengths])
        self._is_pad = np.concatenate([self._is_pad, is_pad])

    # -- output --------------------------------------------------------------------------------------------
    @property
    def buffered_tokens(self) -> int:
        return int(self._tokens.shape[0])

    @property
    def ready(self) -> int:
        """Full sequences available now."""
        return self.buffered_tokens // self.config.seq_len

    def take(self, n: int | None = None) -> PackedBatch:
        """Up to ``n`` full sequences (all available when ``None``) from the front of the buffer."""
        n = self.ready if n is None else min(n, self.ready)
        return self._emit(n)

    def finish(self, last: Literal["pad", "drop"] = "pad") -> PackedBatch:
        """Every full sequence, then the partial last one padded (``pad``) or dropped and counted (``drop``)."""
        seq_len = self.config.seq_len
        rest = self.buffered_tokens % seq_len
        if rest:
            if last == "drop":
                self.stats.dropped_tokens += int(self._tokens[-rest:].shape[0] - self._pad_in_tail(rest))
                self._truncate(self.buffered_tokens - rest)
            else:
                fill = seq_len - rest
                self._append(np.full(fill, self.config.pad_id, dtype=np.int32), np.array([fill]), np.array([True]))
                self.stats.padded_tokens += fill
        return self._emit(self.ready)

    def _pad_in_tail(self, rest: int) -> int:
        """Padding tokens among the last ``rest`` buffered tokens (they were counted as padding already)."""
        ends = np.cumsum(self._lengths)
        starts = ends - self._lengths
        cut = self.buffered_tokens - rest
        overlap = np.clip(ends - np.maximum(starts, cut), 0, None)
        return int(overlap[self._is_pad].sum())

    def _truncate(self, keep: int) -> None:
        ends = np.cumsum(self._lengths)
        n_seg = int(np.searchsorted(ends, keep, side="left")) + 1 if keep else 0
        lengths = self._lengths[:n_seg].copy()
        if n_seg:
            lengths[-1] -= int(ends[n_seg - 1] - keep)
        self._tokens, self._lengths, self._is_pad = self._tokens[:keep], lengths, self._is_pad[:n_seg]

    def _emit(self, n: int) -> PackedBatch:
        """Cut the first ``n`` sequences off the buffer and build their arrays (no Python loop over tokens)."""
        seq_len = self.config.seq_len
        total = n * seq_len
        if n == 0:
            empty = np.zeros((0, seq_len), dtype=np.int64)
            return PackedBatch(empty, empty.copy(), empty.copy(), empty.copy(), [])
        ends = np.cumsum(self._lengths)
        # segments that start inside the emitted region, cut at every sequence boundary
        n_seg = int(np.searchsorted(ends, total, side="left")) + 1
        seg_ends = np.minimum(ends[:n_seg], total)
        seg_pad = self._is_pad[:n_seg]
        cuts = np.union1d(seg_ends, np.arange(1, n + 1, dtype=np.int64) * seq_len)
        piece_starts = np.concatenate([[0], cuts[:-1]])
        piece_lengths = cuts - piece_starts
        piece_segment = np.searchsorted(seg_ends, piece_starts, side="right")
        piece_pad = seg_pad[piece_segment]
        piece_row = piece_starts // seq_len
        # index of each piece inside its row: 0, 1, ... restarting at every row
        first_in_row = np.searchsorted(piece_row, np.arange(n), side="left")
        piece_local = np.arange(len(piece_starts)) - first_in_row[piece_row]

        tokens = self._tokens[:total].astype(np.int64)
        token_piece = np.repeat(np.arange(len(piece_starts)), piece_lengths)
        document_ids = piece_local[token_piece]
        if self.config.reset_positions:
            position_ids = np.arange(total) - piece_starts[token_piece]
        else:
            position_ids = np.arange(total) % seq_len
        labels = np.full(total, IGNORE_INDEX, dtype=np.int64)
        same = token_piece[1:] == token_piece[:-1]
        labels[:-1] = np.where(same, tokens[1:], IGNORE_INDEX)
        labels[np.repeat(piece_pad, piece_lengths)] = IGNORE_INDEX
        boundaries = np.split(cuts - piece_row * seq_len, first_in_row[1:])
        cu_seqlens = [np.concatenate([[0], b]).astype(np.int32) for b in boundaries]

        document_tokens = int(piece_lengths[~piece_pad].sum())
        self.stats.emitted_document_tokens += document_tokens
        self.stats.sequences += n
        # keep the rest: the segment cut at ``total`` keeps its remainder at the front
        rest_lengths = ends[n_seg - 1 :] - total
        rest_lengths[1:] = self._lengths[n_seg:]
        keep = rest_lengths > 0
        self._lengths = rest_lengths[keep]
        self._is_pad = self._is_pad[n_seg - 1 :][keep]
        self._tokens = self._tokens[total:]
        shape = (n, seq_len)
        return PackedBatch(
            tokens.reshape(shape),
            document_ids.reshape(shape),
            position_ids.reshape(shape),
            labels.reshape(shape),
            cu_seqlens,
        )

    # -- checkpointing ---------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The buffer as arrays (for a safetensors checkpoint); counters travel as ``stats``."""
        return {
            "tokens": self._tokens.copy(),
            "lengths": self._lengths.copy(),
            "is_pad": self._is_pad.astype(np.uint8),
        }

    def load_state(self, state: dict[str, np.ndarray], stats: dict[str, int] | None = None) -> None:
        self._tokens = np.asarray(state["tokens"], dtype=np.int32)
        self._lengths = np.asarray(state["lengths"], dtype=np.int64)
        self._is_pad = np.asarray(state["is_pad"]).astype(bool)
        if stats:
            self.stats = PackStats(**stats)
