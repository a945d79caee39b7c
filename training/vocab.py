"""Vocabulary for the small sizes: the full Llama 3 ids, or a compact map onto the ids the data actually holds.

Measured here (2 shared CPU cores, ``tiny``, 2,048 tokens a step): with the full 128,256-token output layer a step
ran at ~180 tokens/s, almost all of it the ``tokens × 128,256`` logits and their gradient; with 8,192 output ids,
~2,800 tokens/s. A proxy model that must train on CPU therefore uses a **compact vocabulary**: the Llama 3 ids that
occur in the manifest's files (training shards and held-out sets), counted once before training.

* When the data holds at most ``max_size`` distinct ids, the map is exact: every id keeps its own row, and the loss
  is the true next-token loss with the softmax restricted to ids that occur (ids that never occur would get
  vanishing probability anyway).
* Otherwise the ``max_size - 1`` most frequent ids keep their rows (ties by id, so the map is deterministic) and
  the rest share one ``rare`` row; the share of tokens mapped there is reported (``rare_fraction``).

Comparability: losses of two runs are comparable when they use the same vocabulary. The mix optimizer compares many
manifests drawn from one pool; it should build one vocabulary over all of them (:func:`build_vocabulary` accepts
several manifests) and pass it to every run (``train_on_manifest(..., vocabulary=...)``). ``150m`` and ``1b`` use the
full vocabulary (:data:`FULL`), whose logits cost is small next to the rest of those models.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.manifest import Manifest
from refinery.training.model import VOCAB_SIZE
from refinery.training.packing import BOS_ID, EOS_ID, PackConfig, tokenize_documents


@dataclass(frozen=True)
class Vocabulary:
    """``ids``: the Llama 3 ids that keep a row, ascending; ``rare``: whether one extra row takes every other id.

    ``ids is None`` means the full vocabulary (identity map).
    """

    ids: np.ndarray | None = None
    rare: bool = False
    rare_fraction: float = 0.0

    @property
    def size(self) -> int:
        return VOCAB_SIZE if self.ids is None else len(self.ids) + int(self.rare)

    def table(self) -> np.ndarray | None:
        """Lookup table Llama 3 id → row (``None`` for the full vocabulary)."""
        if self.ids is None:
            return None
        table = np.full(VOCAB_SIZE, len(self.ids) if self.rare else -1, dtype=np.int64)
        table[self.ids] = np.arange(len(self.ids))
        return table

    def encode(self, tokens: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
        """Map token ids (and labels: ``-100`` stays ``-100``) onto rows."""
        if self.ids is None:
            return tokens
        table = self.table() if table is None else table
        out = np.where(tokens >= 0, table[np.clip(tokens, 0, None)], tokens)
        if (out < -100).any() or ((out < 0) & (out != -100)).any():
            raise ValueError("a token id outside the compact vocabulary (and no rare row)")
        return out


FULL = Vocabulary()


def save_vocabulary(vocabulary: Vocabulary, path: str | Path) -> Path:
    """Write a compact vocabulary (``ids``, ``rare``, ``rare_fraction``) as safetensors; the only writer of the
    format, so the optimizer and the trainer can never disagree on it. The full vocabulary is saved as its ids."""
    from safetensors.numpy import save_file

    path = Path(path)
    ids = np.arange(VOCAB_SIZE, dtype=np.int64) if vocabulary.ids is None else vocabulary.ids
    fs, inner = storage.filesystem(str(path))
    with storage.atomic_output(fs, inner) as temporary:
        save_file(
            {
                "ids": np.asarray(ids, dtype=np.int64),
                "rare": np.array([int(vocabulary.rare)]),
                "rare_fraction": np.array([vocabulary.rare_fraction]),
            },
            temporary,
        )
    return path


def load_vocabulary(path: str | Path) -> Vocabulary:
    """A vocabulary saved by :func:`save_vocabulary`."""
    from safetensors.numpy import load_file

    saved = load_file(str(path))
    return Vocabulary(
        ids=saved["ids"].astype(np.int64), rare=bool(saved["rare"][0]), rare_fraction=float(saved["rare_fraction"][0])
    )


def _manifest_texts(manifest_path: Path, batch_rows: int) -> Iterable[list[str]]:
    manifest = Manifest.read(manifest_path)
    for entry in manifest.entries(include_heldout=True):
        parquet = pq.ParquetFile(manifest.file(entry))
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=["text"]):
            yield batch.column(0).to_pylist()


def build_vocabulary(
    manifest_paths: str | Path | Iterable[str | Path], tokenizer, max_size: int, batch_rows: int = 512
) -> Vocabulary:
    """The compact vocabulary of one or several manifests (every shard and held-out file, in manifest order)."""
    paths = [Path(manifest_paths)] if isinstance(manifest_paths, (str, Path)) else [Path(p) for p in manifest_paths]
    counts = np.zeros(VOCAB_SIZE, dtype=np.int64)
    config = PackConfig(seq_len=2)
    for path in paths:
        for texts in _manifest_texts(path, batch_rows):
            documents = tokenize_documents(texts, tokenizer, config)
            if documents:
                counts += np.bincount(np.concatenate(documents), minlength=VOCAB_SIZE)[:VOCAB_SIZE]
    counts[[BOS_ID, EOS_ID]] = np.maximum(counts[[BOS_ID, EOS_ID]], 1)
    present = np.flatnonzero(counts)
    if len(present) <= max_size:
        return Vocabulary(ids=present.astype(np.int64))
    order = np.lexsort((present, -counts[present]))  # most frequent first, ties by id
    kept = np.sort(present[order[: max_size - 1]])
    rare_tokens = counts.sum() - counts[kept].sum()
    return Vocabulary(ids=kept.astype(np.int64), rare=True, rare_fraction=float(rare_tokens / counts.sum()))
