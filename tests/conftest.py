"""Shared fixtures: one embedded Ray per test session, and real documents from the bundled sample corpus."""

from __future__ import annotations

import os
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
    """One embedded Ray for the whole session (starting Ray costs ~5 s); 2 CPUs like the CI machine."""
    import ray

    from refinery.pipelines.ray_session import embedded_temp_dir

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, _temp_dir=embedded_temp_dir(), logging_level="WARNING"
        )
    yield ray
    ray.shutdown()


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
