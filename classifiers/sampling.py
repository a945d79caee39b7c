"""Documents of a run's output to label: stratified by source and language, seeded, of a given size.

A run's output is the kept shards its ``run.json`` lists. Small runs may keep fewer documents than a label set
needs, and a quality teacher should also see what the filters threw away: ``include_rejected`` adds the rejected
shards of every segment. Strata are (source, lang); each gets a share of ``size`` proportional to its size
(largest remainders, at least one document per stratum while ``size`` allows), and inside a stratum documents
are taken in the order of a seeded hash of their id, so the sample depends only on the run, the size and the seed.

The sample is drawn inside per-shard tasks, and the driver only ever holds counts, a bounded list of candidate
ids and the sample itself (a run of any size costs the driver the same):

1. ``count_strata`` (every shard; reads ``id``, ``source``, ``lang``, never ``text``): documents per stratum.
2. The driver allocates each stratum's share and a hash cutoff that lets through about ``1.25 × share + 32`` of
   its documents; ``stratum_candidates`` (every shard, the same three columns) returns the ids below it with
   their hash. The driver keeps the ``share`` smallest hashes of each stratum (the cutoff is raised and the step
   repeated for a stratum in the rare case it let through too few).
3. ``read_sampled`` (only the shards that hold a sampled id) reads those rows' text, clipped to ``store_chars``.

A shard's contribution is therefore proportional to its size, and no shard without a sampled document has its
text read. Stratum sizes count every document; a sampled document whose text turns out empty is replaced by the
next one in its stratum's hash order (the old in-memory sampler left empty texts out of the counts too, which
needed every shard's text; on runs without empty texts both give the same sample).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.pipelines import storage
from refinery.pipelines.documents import ID, SOURCE, TEXT

LANG = "lang"
ORIGIN = "origin"
COLUMNS = (ID, TEXT, SOURCE, LANG)
KEY_COLUMNS = (ID, SOURCE, LANG)
UNKNOWN = "unknown"
#: Candidates let through per stratum: ``CANDIDATE_FACTOR × share + CANDIDATE_SLACK`` in expectation.
CANDIDATE_FACTOR = 1.25
CANDIDATE_SLACK = 32
HASH_RANGE = 2**64
SAMPLE_SCHEMA = pa.schema(
    [
        (ID, pa.string()),
        (TEXT, pa.large_string()),
        (SOURCE, pa.string()),
        (LANG, pa.string()),
        (ORIGIN, pa.string()),
    ]
)

MapFunction = Callable[[Callable[[Any], Any], list[Any]], list[Any]]


def run_files(run_dir: str | Path, include_rejected: bool = False) -> list[tuple[str, Path]]:
    """(origin, file) pairs: the run's final kept shards and, if asked, every segment's rejected shards."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())
    files = [("kept", run_dir / relative) for relative in summary["outputs"]["kept"]]
    if include_rejected:
        files += [("rejected", path) for path in sorted(run_dir.glob("segments/*/rejected/*.parquet"))]
    return files


def read_columns(path: str, columns: list[str]) -> pa.Table:
    """The named columns of one shard (those it has). Every Parquet read of the sampler goes through here."""
    fs, location = storage.filesystem(path)
    with fs.open(location, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        return parquet.read(columns=present)


def seeded_hashes(ids: list[str], seed: int) -> list[int]:
    """A seeded 64-bit hash per id (big-endian blake2b): the order documents are taken in inside a stratum."""
    return [int.from_bytes(hashlib.blake2b(f"{seed}\x00{i}".encode(), digest_size=8).digest(), "big") for i in ids]


def _keys(table: pa.Table) -> tuple[list[str], list[str], list[str]]:
    """ids, sources and languages (``unknown`` where a shard has no ``lang`` or a null one)."""
    ids = table[ID].to_pylist()
    sources = table[SOURCE].to_pylist()
    langs = pc.fill_null(table[LANG], UNKNOWN).to_pylist() if LANG in table.column_names else [UNKNOWN] * len(ids)
    return ids, sources, langs


def count_strata(job: dict[str, Any]) -> dict[str, int]:
    """Task 1 (one shard): documents per stratum, keyed ``source\\x00lang``; reads no text."""
    table = read_columns(job["path"], list(KEY_COLUMNS))
    counts: dict[str, int] = {}
    _, sources, langs = _keys(table)
    for source, lang in zip(sources, langs, strict=True):
        key = f"{source}\x00{lang}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def stratum_candidates(job: dict[str, Any]) -> pa.Table:
    """Task 2 (one shard): ids whose seeded hash is below their stratum's cutoff (``job["cutoffs"]``)."""
    table = read_columns(job["path"], list(KEY_COLUMNS))
    ids, sources, langs = _keys(table)
    hashes = seeded_hashes(ids, job["seed"])
    cutoffs = job["cutoffs"]
    rows = [
        row
        for row, (source, lang) in enumerate(zip(sources, langs, strict=True))
        if hashes[row] < cutoffs.get(f"{source}\x00{lang}", 0)
    ]
    return pa.table(
        {
            ID: pa.array([ids[r] for r in rows], pa.string()),
            "stratum": pa.array([f"{sources[r]}\x00{langs[r]}" for r in rows], pa.string()),
            "hash": pa.array([hashes[r] for r in rows], pa.uint64()),
            "file": pa.array([job["index"]] * len(rows), pa.int32()),
        }
    )


def read_sampled(job: dict[str, Any]) -> pa.Table:
    """Task 3 (a shard holding sampled ids): those rows with their text clipped to ``store_chars``."""
    table = read_columns(job["path"], list(COLUMNS))
    table = table.filter(pc.is_in(table[ID], pa.array(job["ids"], pa.string())))
    ids, sources, langs = _keys(table)
    text = pc.fill_null(table[TEXT].cast(pa.large_string()), "")
    if job.get("store_chars") is not None:
        text = pc.utf8_slice_codeunits(text, 0, job["store_chars"])
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            text,
            pa.array(sources, pa.string()),
            pa.array(langs, pa.string()),
            pa.array([job["origin"]] * table.num_rows, pa.string()),
        ],
        schema=SAMPLE_SCHEMA,
    )


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
    """``size`` rows of an in-memory ``table`` stratified by (source, lang); rows ordered by id hash (stable).

    The same rule as :func:`sample_run` for a table already in memory (tests, small sets); rows with empty text
    are left out first.
    """
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
    return _in_rank_order(table, chosen, seed)


def _in_rank_order(table: pa.Table, chosen: list[str], seed: int) -> pa.Table:
    chosen = seeded_rank(chosen, seed)
    position = {doc_id: i for i, doc_id in enumerate(chosen)}
    picked = table.filter(pc.is_in(table[ID], pa.array(chosen, pa.string())))
    order = np.argsort([position[i] for i in picked[ID].to_pylist()], kind="stable")
    return picked.take(pa.array(order, pa.int64()))


def parallel_map(function: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """The per-shard tasks as Ray tasks, through the spine's executor (one CPU each, bounded in flight)."""
    from refinery.pipelines.executor import Resources, map_tasks

    return map_tasks(function, items, resources=Resources(cpus=1), description=f"label: {function.__name__}")


def _cutoff(share: int, count: int, factor: float) -> int:
    """The hash below which about ``factor × share + slack`` of a stratum's ``count`` documents fall."""
    if share <= 0:
        return 0
    fraction = (factor * share + CANDIDATE_SLACK) / count
    return HASH_RANGE if fraction >= 1 else int(fraction * HASH_RANGE)


def sample_run(
    run_dir: str | Path,
    size: int,
    seed: int = 0,
    include_rejected: bool = False,
    store_chars: int | None = None,
    map_function: MapFunction = parallel_map,
) -> pa.Table:
    """A stratified sample of a run's output, drawn in per-shard tasks (see the module docstring).

    Columns id, text (clipped to ``store_chars``), source, lang, origin; rows in seeded-hash order.
    """
    files = run_files(run_dir, include_rejected)
    paths = [str(path) for _, path in files]
    totals: dict[str, int] = {}
    for counts in map_function(count_strata, [{"path": p} for p in paths]):
        for key, count in counts.items():
            totals[key] = totals.get(key, 0) + count
    keys = sorted(totals, key=lambda k: tuple(k.split("\x00")))
    shares = dict(zip(keys, allocate([totals[k] for k in keys], size), strict=True))
    factors = dict.fromkeys(keys, CANDIDATE_FACTOR)
    excluded: set[str] = set()  # sampled ids whose text was empty
    fetched: dict[str, pa.Table] = {}  # id → its row, once read
    candidates: dict[str, pa.Table] = {}
    while True:
        stale = [k for k in keys if k not in candidates]
        if stale:
            cutoffs = {k: _cutoff(shares[k], totals[k], factors[k]) for k in stale}
            jobs = [{"path": p, "index": i, "seed": seed, "cutoffs": cutoffs} for i, p in enumerate(paths)]
            found = pa.concat_tables(map_function(stratum_candidates, jobs))
            for key in stale:
                candidates[key] = found.filter(pc.equal(found["stratum"], key))
        chosen: list[tuple[str, int]] = []
        short = []
        for key in keys:
            table = candidates[key]
            if excluded:
                table = table.filter(pc.invert(pc.is_in(table[ID], pa.array(sorted(excluded), pa.string()))))
            table = table.sort_by([("hash", "ascending")])
            available = totals[key] - len(excluded & set(candidates[key][ID].to_pylist()))
            want = min(shares[key], available)
            if table.num_rows < want:
                if _cutoff(shares[key], totals[key], factors[key]) >= HASH_RANGE:
                    raise ValueError(f"{run_dir}: stratum {key!r} changed while it was sampled (ids not unique?)")
                short.append(key)
                continue
            chosen.extend(zip(table[ID].to_pylist()[:want], table["file"].to_pylist()[:want], strict=True))
        if short:
            for key in short:
                factors[key] *= 4
                del candidates[key]
            continue
        missing: dict[int, list[str]] = {}
        for doc_id, file in chosen:
            if doc_id not in fetched:
                missing.setdefault(file, []).append(doc_id)
        if not missing:
            break
        jobs = [
            {"path": paths[f], "ids": sorted(ids), "origin": files[f][0], "store_chars": store_chars}
            for f, ids in sorted(missing.items())
        ]
        for rows in map_function(read_sampled, jobs):
            for row in range(rows.num_rows):
                one = rows.slice(row, 1)
                fetched[one[ID][0].as_py()] = one
                if not one[TEXT][0].as_py():
                    excluded.add(one[ID][0].as_py())
        if not any(doc_id in excluded for doc_id, _ in chosen):
            break
    sample = [fetched[doc_id] for doc_id, _ in chosen if doc_id in fetched]
    table = pa.concat_tables(sample) if sample else SAMPLE_SCHEMA.empty_table()
    return _in_rank_order(table, [doc_id for doc_id, _ in chosen], seed)
