"""A manifest whose training shards hold no documents is refused at once (it used to make the stream spin forever).

Seen beyond the sample: a 2,048-token proxy mix of buckets whose documents are longer than their share wrote an
empty shard, and the proxy's trainer looped in ``ManifestStream.next_batch`` without end.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.pipelines.manifest import FORMAT, FORMAT_VERSION, write_manifest
from refinery.pipelines.models import DEFAULT_TOKENIZER, file_sha256, tokenizer_file
from refinery.pipelines.storage import file_digest
from refinery.training.data import ManifestStream
from refinery.training.packing import PackConfig


def test_a_manifest_without_documents_is_refused(tmp_path: Path):
    (tmp_path / "shards").mkdir()
    shard = tmp_path / "shards" / "part-00000.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.large_string()), "bucket": pa.array([], pa.string())}), shard)
    size, digest = file_digest(shard)
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": {"reference": DEFAULT_TOKENIZER, "sha256": file_sha256(tokenizer_file(DEFAULT_TOKENIZER))},
        "buckets": {},
        "shards": [{"path": "shards/part-00000.parquet", "rows": 0, "tokens": 0, "bytes": size, "sha256": digest}],
        "heldout": {},
    }
    manifest = write_manifest(tmp_path, data)
    with pytest.raises(ValueError, match="hold no documents"):
        ManifestStream(manifest, PackConfig(seq_len=16), seed=0, tokenizer=None)
