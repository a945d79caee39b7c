"""Training data from a manifest: shards in a seeded order, tokenized in batches, packed; a position to resume from.

The shard writer already wrote the weighted, shuffled mix (each bucket's documents repeated by its ``epochs`` and
spread over the shards), so the trainer honours the bucket weights by reading every shard. It reads them in a
permutation drawn from ``(seed, epoch)`` — a budget beyond one pass over the manifest starts a new epoch with a
new order — and every row group in order. The position (epoch, shard, row group, row) and the packer's buffer are
the whole state: :meth:`ManifestStream.state` / :meth:`ManifestStream.load_state` make a resumed run read exactly
the sequences an uninterrupted one would.

Held-out sets (``heldout`` in the manifest, one per bucket) are packed the same way, the last sequence padded.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from refinery.pipelines.manifest import Manifest
from refinery.training.packing import PackConfig, PackedBatch, Packer, tokenize_documents


class ManifestStream:
    """An endless stream of packed sequences over a manifest's training shards."""

    def __init__(self, manifest_path: str | Path, pack: PackConfig, seed: int, tokenizer: Any, read_rows: int = 256):
        self.manifest_path = Path(manifest_path)
        self.manifest = Manifest.read(self.manifest_path)
        self.entries = self.manifest.entries(include_heldout=False)
        if not self.entries:
            raise ValueError(f"{manifest_path}: the manifest lists no training shards")
        self.bucket_column = "bucket"  # the shard writer's column; the manifest's bucket_column names its origin
        self.seed, self.tokenizer, self.read_rows = seed, tokenizer, read_rows
        self.packer = Packer(pack)
        self.epoch, self.cursor, self.row_group, self.row = 0, 0, 0, 0
        self.bucket_documents: Counter[str] = Counter()
        self._file: tuple[int, int, pq.ParquetFile] | None = None
        self._group: tuple[tuple[int, int, int], Any] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The shard order of an epoch: a permutation drawn from ``(seed, epoch)`` alone."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.entries))

    def next_batch(self, n: int) -> PackedBatch:
        """The next ``n`` packed sequences."""
        while self.packer.ready < n:
            self._read_more()
        return self.packer.take(n)

    def _parquet(self) -> pq.ParquetFile:
        index = int(self.order(self.epoch)[self.cursor])
        if self._file is None or self._file[:2] != (self.epoch, self.cursor):
            path = self.manifest.file(self.entries[index])
            self._file = (self.epoch, self.cursor, pq.ParquetFile(path))
        return self._file[2]

    def _read_more(self) -> None:
        parquet = self._parquet()
        if self.row_group >= parquet.num_row_groups:
            self._next_shard()
            return
        key = (self.epoch, self.cursor, self.row_group)
        if self._group is None or self._group[0] != key:
            columns = ["text"] + ([self.bucket_column] if self.bucket_column in parquet.schema_arrow.names else [])
            self._group = (key, parquet.read_row_group(self.row_group, columns=columns))
        table = self._group[1]
        chunk = table.slice(self.row, self.read_rows)
        self.packer.add(tokenize_documents(chunk.column("text").to_pylist(), self.tokenizer, self.packer.config))
        if self.bucket_column in chunk.column_names:
            self.bucket_documents.update(chunk.column(self.bucket_column).to_pylist())
        self.row += chunk.num_rows
        if self.row >= table.num_rows:
            self.row_group, self.row = self.row_group + 1, 0

    def _next_shard(self) -> None:
        self.cursor, self.row_group, self.row = self.cursor + 1, 0, 0
        if self.cursor == len(self.entries):
            self.epoch, self.cursor = self.epoch + 1, 0

    # -- checkpointing -------------------------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, small values): the packer's buffer, and the position and counters."""
        position = {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "row_group": self.row_group,
            "row": self.row,
            "pack_stats": self.packer.stats.as_dict(),
            "bucket_documents": dict(sorted(self.bucket_documents.items())),
        }
        return self.packer.state(), position

    def load_state(self, arrays: dict[str, np.ndarray], position: dict[str, Any]) -> None:
        self.epoch, self.cursor = position["epoch"], position["cursor"]
        self.row_group, self.row = position["row_group"], position["row"]
        self.bucket_documents = Counter(position.get("bucket_documents", {}))
        self.packer.load_state(arrays, position["pack_stats"])


def heldout_batches(
    manifest_path: str | Path, pack: PackConfig, tokenizer: Any, max_sequences: int | None
) -> dict[str, PackedBatch]:
    """Per bucket, its held-out documents packed (last sequence padded), at most ``max_sequences`` sequences."""
    manifest_path = Path(manifest_path)
    manifest = Manifest.read(manifest_path)
    out: dict[str, PackedBatch] = {}
    for entry in manifest.entries(include_heldout=True):
        if entry.bucket is None:
            continue
        packer = Packer(pack)
        parquet = pq.ParquetFile(manifest.file(entry))
        for batch in parquet.iter_batches(batch_size=512, columns=["text"]):
            packer.add(tokenize_documents(batch.column(0).to_pylist(), tokenizer, pack))
            if max_sequences is not None and packer.ready >= max_sequences:
                break
        batch = packer.finish("pad")
        if max_sequences is not None and len(batch) > max_sequences:
            batch = PackedBatch(
                *(a[:max_sequences] for a in (batch.tokens, batch.document_ids, batch.position_ids, batch.labels)),
                batch.cu_seqlens[:max_sequences],
            )
        out[entry.bucket] = batch
    return out
