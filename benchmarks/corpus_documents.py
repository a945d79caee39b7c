"""Real documents for benchmarks: every document of the sample corpus (or any WARC/JSONL/Parquet folder),
extracted once with Refinery's readers and cached as Parquet so contenders are timed on text alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
FORMATS = {"warc": "*.warc.gz", "jsonl": "*.jsonl*", "parquet": "*.parquet"}


def load_documents(corpus: Path = REPO / "sample_corpus", cache_dir: Path = Path("/tmp/refinery-bench")) -> pa.Table:
    """id, text, source, url of every document ingest keeps, in a fixed order."""
    from refinery.pipelines.readers import READERS
    from refinery.pipelines.recipe import InputSpec
    from refinery.pipelines.shards import Shard

    files = [(fmt, p) for fmt, pattern in FORMATS.items() for p in sorted((corpus / fmt).glob(pattern))]
    key = hashlib.sha256("".join(f"{p}:{p.stat().st_size}" for _, p in files).encode()).hexdigest()[:12]
    cached = cache_dir / f"documents-{key}.parquet"
    if cached.exists():
        return pq.read_table(cached)
    tables = []
    for fmt, path in files:
        source = path.name.split("-")[0]
        spec = InputSpec(name=source, format=fmt, paths=[str(path)])
        tables.extend(batch.kept for batch in READERS[fmt](Shard(source, str(path), path.name), spec, 1000))
    documents = pa.concat_tables(tables).select(["id", "text", "source", "url"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(documents, cached)
    return documents
