"""Documents of a run's output to label: stratified by source and language, seeded, of a given size.

A run's output is the kept shards its ``run.json`` lists. Small runs may keep fewer documents than a label set
needs, and a quality teacher should also see what the filters threw away: ``include_rejected`` adds the rejected
shards of every segment. Strata are (source, lang); each gets a share of ``size`` proportional to its size
(largest remainders, at least one document per stratum while ``size`` allows), and inside a stratum documents
are taken in the order of a seeded hash of their id, so the sample depends only on the run, the size and the seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines.documents import ID, SOURCE, TEXT

LANG = "lang"
ORIGIN = "origin"
COLUMNS = (ID, TEXT, SOURCE, LANG)


def run_files(run_dir: str | Path, include_rejected: bool = False) -> list[tuple[str, Path]]:
    """(origin, file) pairs: the run's final kept shards and, if asked, every segment's rejected shards."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())
    files = [("kept", run_dir / relative) for relative in summary["outputs"]["kept"]]
    if include_rejected:
        files += [("rejected", path) for path in sorted(run_dir.glob("segments/*/rejected/*.parquet"))]
    return files


def read_documents(files: list[tuple[str, Path]]) -> pa.Table:
    """id, text, source, lang (``unknown`` when absent) and origin (kept/rejected) of every listed file."""
    parts = []
    for origin, path in files:
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in COLUMNS if c in names])
        if LANG not in table.column_names:
            table = table.append_column(LANG, pa.nulls(table.num_rows, pa.string()))
        table = table.select(list(COLUMNS)).cast(
            pa.schema([(ID, pa.string()), (TEXT, pa.large_string()), (SOURCE, pa.string()), (LANG, pa.string())])
        )
        parts.append(table.append_column(ORIGIN, pa.array([origin] * table.num_rows, pa.string())))
    table = pa.concat_tables(parts)
    return table.set_column(3, LANG, pc.fill_null(table[LANG], "unknown"))


def allocate(counts: list[int], size: int) -> list[int]:
    """Per-stratum sample sizes: proportional, largest remainders, at least one per stratum when possible."""
    counts_array = np.asarray(counts, dtype=np.int64)
    total = int(counts_array.sum())
    if size >= total:
        return counts
    quotas = counts_array * size / total
    shares = np.floor(quotas).astype(np.int64)
    if size >= len(counts):
        shares = np.maximum(shares, 1)
    order = sorted(range(len(counts)), key=lambda i: (-(quotas[i] - np.floor(quotas[i])), i))
    for i in order:
        if shares.sum() >= size:
            break
        if shares[i] < counts[i]:
            shares[i] += 1
    while shares.sum() > size:  # the minimum of one per stratum overshot: take back from the largest shares
        shares[int(np.argmax(shares - (shares <= 1) * total))] -= 1
    return np.minimum(shares, counts_array).astype(int).tolist()


def seeded_rank(ids: list[str], seed: int) -> list[str]:
    """Ids ordered by a seeded hash: a reproducible shuffle independent of file order."""
    return sorted(ids, key=lambda i: hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest())


def stratified_sample(table: pa.Table, size: int, seed: int = 0) -> pa.Table:
    """``size`` rows of ``table`` stratified by (source, lang); rows ordered by id hash (stable)."""
    table = table.filter(pc.greater(pc.utf8_length(pc.fill_null(table[TEXT], "")), 0))
    sources, langs, ids = (table[c].to_pylist() for c in (SOURCE, LANG, ID))
    strata: dict[tuple[str, str], list[str]] = {}
    for source, lang, doc_id in zip(sources, langs, ids, strict=True):
        strata.setdefault((source, lang), []).append(doc_id)
    keys = sorted(strata)
    shares = allocate([len(strata[k]) for k in keys], size)
    chosen: list[str] = []
    for key, share in zip(keys, shares, strict=True):
        chosen.extend(seeded_rank(strata[key], seed)[:share])
    chosen = seeded_rank(chosen, seed)
    position = {doc_id: i for i, doc_id in enumerate(chosen)}
    picked = table.filter(pc.is_in(table[ID], pa.array(chosen, pa.string())))
    order = np.argsort([position[i] for i in picked[ID].to_pylist()], kind="stable")
    return picked.take(pa.array(order))


def sample_run(run_dir: str | Path, size: int, seed: int = 0, include_rejected: bool = False) -> pa.Table:
    """A stratified sample of a run's output (see the module docstring)."""
    return stratified_sample(read_documents(run_files(run_dir, include_rejected)), size, seed)
