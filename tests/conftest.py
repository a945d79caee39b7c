"""Shared fixtures: one embedded Ray per test session, and real documents from the bundled sample corpus."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_corpus"


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    assert SAMPLE.is_dir(), "the sample corpus ships in the repository (sample_corpus/)"
    return SAMPLE


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for the whole session, started as ``refinery run`` starts it (the lighter head of
    ``start_embedded_head``); 2 CPUs like the CI machine."""
    import ray

    from refinery.pipelines.ray_session import start_embedded_head

    head = None
    if not ray.is_initialized():
        head = start_embedded_head(2)
        ray.init(address=head.address, logging_level="WARNING")
    yield ray
    ray.shutdown()
    if head is not None:
        head.kill_all_processes(check_alive=False, allow_graceful=True)


def _read_all(paths: list[Path], fmt: str, source: str) -> pa.Table:
    from refinery.pipelines.readers import READERS
    from refinery.pipelines.recipe import InputSpec
    from refinery.pipelines.shards import Shard

    spec = InputSpec(name=source, format=fmt, paths=[str(p) for p in paths])
    tables = []
    for path in paths:
        shard = Shard(source=source, path=str(path), key=path.name)
        tables.extend(batch.kept for batch in READERS[fmt](shard, spec, 500))
    return pa.concat_tables(tables)


@pytest.fixture(scope="session")
def real_documents(sample_corpus: Path) -> pa.Table:
    """Real extracted documents from the first shard of every sample source, with ``lang``/``lang_score``.

    Columns: id, text, source, url, date, lang, lang_score. English documentation pages, Debian handbook
    pages in several languages, Debian copyright files and changelogs.
    """
    from refinery.filters.language_id import FastTextLanguageId

    parts = []
    for first in sorted(sample_corpus.glob("warc/*-00000.warc.gz")):
        parts.append(_read_all([first], "warc", first.name.split("-")[0]))
    for first in sorted(sample_corpus.glob("jsonl/*-00000.jsonl*")):
        parts.append(_read_all([first], "jsonl", first.name.split("-")[0]))
    for first in sorted(sample_corpus.glob("parquet/*-00000.parquet")):
        parts.append(_read_all([first], "parquet", first.name.split("-")[0]))
    documents = pa.concat_tables(parts)
    return FastTextLanguageId(min_score=0.0).process(documents).kept
