"""Planted-mix recovery: does the mix optimizer find a known optimum?

Buckets with clearly different text (the five sources of the bundled sample: Python and PostgreSQL manuals, the
multilingual Debian handbook, copyright files, changelogs), and a target set drawn as a *known* mixture of them
(token shares ``--planted``) from documents that never enter the run. The optimizer is pointed at that target
alone (``targets.sets``; bucket targets off) and runs at two or three proxy budgets; at each we report how far
the chosen weights are from the planted mixture (L1 distance, Spearman rank correlation), next to the natural
and the uniform mix's distances. A fit-and-search machinery that works lands closer to the planted mix than
natural and uniform do, and closer as proxies learn more; one that does not is visible here, separately from
corpus size (cross-entropy on a target is minimised by training on the target's own distribution, so the planted
mixture is the optimum up to what a small proxy can tell apart).

One command::

    .venv/bin/python benchmarks/mix_recovery.py [--budgets 49152,196608] [--config proxy] [--candidates 32]
        [--seeds 0,1,2] [--work /tmp/refinery-bench/mix_recovery]

``--small`` is the setting the tests run (tiny proxies, four candidates, one seed). Results print as a table and
land in ``WORK/mix_recovery.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_corpus"
SOURCES = {  # bucket -> (format, glob)
    "python_docs": ("warc", "warc/python_docs-*.warc.gz"),
    "postgresql_docs": ("warc", "warc/postgresql_docs-*.warc.gz"),
    "debian_handbook": ("warc", "warc/debian_handbook-*.warc.gz"),
    "debian_copyright": ("jsonl", "jsonl/debian_copyright-*.jsonl.zst"),
    "debian_changelog": ("parquet", "parquet/debian_changelog-*.parquet"),
}
PLANTED = {"python_docs": 0.5, "postgresql_docs": 0.3, "debian_changelog": 0.2}
TARGET_FRACTION = 0.15  # of each source's documents, never in the run
CHUNK_CHARS = 1500  # target pieces (about 400 tokens)


def extract(source: str, fmt: str, pattern: str) -> pa.Table:
    """The source's documents as ingest extracts them (id, text, url)."""
    from refinery.pipelines.readers import READERS
    from refinery.pipelines.recipe import InputSpec
    from refinery.pipelines.shards import Shard

    paths = sorted(SAMPLE.glob(pattern))
    spec = InputSpec(name=source, format=fmt, paths=[str(p) for p in paths])
    parts = []
    for path in paths:
        shard = Shard(source=source, path=str(path), key=path.name)
        parts.extend(batch.kept.select(["id", "text"]) for batch in READERS[fmt](shard, spec, 500))
    return pa.concat_tables(parts)


def split_sources(work: Path) -> dict[str, pa.Table]:
    """Write each source's run input (``inputs/SOURCE.parquet``); return its target candidates (never in the run)."""
    from refinery.mixes.shard_index import seeded_keys

    candidates = {}
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    for source, (fmt, pattern) in SOURCES.items():
        table = extract(source, fmt, pattern)
        keys = seeded_keys(table.column("id").to_pylist(), "mix-recovery-target")
        held = keys < np.uint64(int(TARGET_FRACTION * 2**64))
        pq.write_table(table.filter(pa.array(~held)), work / "inputs" / f"{source}.parquet")
        candidates[source] = table.filter(pa.array(held))
    return candidates


def chunked(table: pa.Table, max_chars: int = CHUNK_CHARS) -> pa.Table:
    """Documents cut at paragraph boundaries into pieces of at most about ``max_chars``: fine-grained token shares,
    and a target the scored sequences cover evenly instead of a handful of long manuals."""
    ids, texts = [], []
    for doc_id, text in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True):
        piece, index = "", 0
        for paragraph in text.split("\n\n"):
            if piece and len(piece) + len(paragraph) > max_chars:
                ids.append(f"{doc_id}#{index}")
                texts.append(piece)
                piece, index = "", index + 1
            piece = f"{piece}\n\n{paragraph}" if piece else paragraph[: max_chars * 2]
        if piece.strip():
            ids.append(f"{doc_id}#{index}")
            texts.append(piece)
    return pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.large_string())})


def plant_target(candidates: dict[str, pa.Table], planted: dict[str, float], path: Path, tokens: int) -> dict:
    """The target: each planted source's candidates in seeded order until its token share of ``tokens`` is met,
    rows shuffled (the trainer scores the first sequences, which must sample the whole mixture)."""
    from refinery.mixes.shard_index import seeded_keys
    from refinery.mixes.token_count import cached_tokenizer, count_tokens
    from refinery.pipelines.models import DEFAULT_TOKENIZER

    tokenizer = cached_tokenizer(DEFAULT_TOKENIZER)
    parts, realised = [], {}
    for source, share in sorted(planted.items()):
        table = chunked(candidates[source])
        order = np.argsort(seeded_keys(table.column("id").to_pylist(), "mix-recovery-order"), kind="stable")
        table = table.take(pa.array(order))
        counts = count_tokens(tokenizer, table.column("text")).astype(np.int64)
        quota = share * tokens
        take = int(np.searchsorted(np.cumsum(counts), quota)) + 1
        if counts.sum() < quota:
            raise SystemExit(f"{source}: {counts.sum()} candidate tokens, the planted share needs {quota:.0f}")
        chosen = table.slice(0, take).append_column("n_tokens", pa.array(counts[:take], pa.int32()))
        parts.append(chosen.append_column("bucket", pa.array([source] * take, pa.string())))
        realised[source] = int(counts[:take].sum())
    target = pa.concat_tables(parts)
    shuffle = np.argsort(seeded_keys(target.column("id").to_pylist(), "mix-recovery-shuffle"), kind="stable")
    pq.write_table(target.take(pa.array(shuffle)), path)
    total = sum(realised.values())
    return {"documents": target.num_rows, "tokens": total, "shares": {k: v / total for k, v in realised.items()}}


def build_run(work: Path, num_cpus: int) -> Path:
    """The run over the non-target documents: length filter and token counts, buckets by source."""
    from refinery.pipelines.recipe import parse_recipe
    from refinery.pipelines.runner import run_recipe

    run = work / "run"
    if (run / "run.json").exists():
        return run
    recipe = {
        "name": "mix_recovery",
        "output_dir": str(run),
        "batch_size": 500,
        "inputs": [{"name": s, "format": "parquet", "paths": [str(work / "inputs" / f"{s}.parquet")]} for s in SOURCES],
        "stages": [{"stage": "length", "min_chars": 200, "max_chars": 20_000}, {"stage": "token_count"}],
        "ray": {"num_cpus": num_cpus},
    }
    assert run_recipe(parse_recipe(recipe, work), show_progress=False).ok
    return run


def distances(weights: dict[str, float], planted: dict[str, float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    names = sorted(SOURCES)
    a = np.array([weights.get(n, 0.0) for n in names])
    b = np.array([planted.get(n, 0.0) for n in names])
    rho = float(spearmanr(a, b).statistic) if np.ptp(a) > 0 else None  # uniform has no ranking
    return {"l1": float(np.abs(a - b).sum()), "spearman": rho}


def recover(work: Path, planted: dict[str, float], target: Path, budget: int, args: argparse.Namespace) -> dict:
    """One optimisation at ``budget`` tokens per proxy against the planted target; distances of each mix."""
    from refinery.mixes.optimizer.optimize import optimize

    config = {
        "name": f"recovery_{budget}",
        "buckets": {"column": "source", "max_epochs": 16, "heldout_fraction": 0.05, "heldout_max_documents": 20},
        "candidates": {"count": args.candidates, "concentrations": [0.5, 2.0]},
        "proxy": {"config": args.config, "token_budget": budget, "eval_sequences": args.eval_sequences},
        "targets": {"buckets": False, "quality": None, "sets": {"planted": str(target)}},
        "validation": {"heldout_mixes": args.heldout_mixes, "seeds": args.seeds},
        "output": {"total_tokens": 50 * budget},  # the chosen mix as shards (a proxy-sized total rounds buckets to 0)
        "ray": {"num_cpus": args.num_cpus},
    }
    report = optimize(work / "run", config, work / f"budget-{budget}", progress=not args.quiet)
    mixes = report["comparison"]["mixes"]
    rows = {label: distances(mixes[label], planted) for label in ("natural", "uniform")}
    rows["chosen"] = distances(report["chosen"]["weights"], planted)
    summary = report["comparison"]["summary"]
    return {
        "budget": budget,
        "weights": {"chosen": report["chosen"]["weights"], **{k: mixes[k] for k in ("natural", "uniform")}},
        "distances": rows,
        "fit": {k: report["fit"][k] for k in ("family", "cv_spearman")},
        "comparison": summary,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/refinery-bench/mix_recovery"))
    parser.add_argument("--budgets", default="49152,196608")
    parser.add_argument("--config", default="proxy")
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--heldout-mixes", type=int, default=4)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eval-sequences", type=int, default=16)
    parser.add_argument("--target-tokens", type=int, default=None, help="default: what the proxies score")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--small", action="store_true", help="the tests' setting: tiny, 4 candidates, one seed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.small:
        args.budgets, args.config, args.candidates, args.heldout_mixes, args.seeds = "16384", "tiny", 4, 0, "0"
        args.eval_sequences = 16
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    candidates = split_sources(work)
    from refinery.training.trainer import preset

    scored = args.eval_sequences * preset(args.config).seq_len  # the trainer scores this many target tokens
    target = plant_target(candidates, PLANTED, work / "target.parquet", args.target_tokens or scored)
    build_run(work, args.num_cpus or 2)
    results = [recover(work, PLANTED, work / "target.parquet", int(b), args) for b in args.budgets.split(",")]
    out = {"planted": PLANTED, "target": target, "results": results}
    (work / "mix_recovery.json").write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(f"planted: {PLANTED} (target: {target['documents']} documents, {target['tokens']:,} tokens)")
    print(f"{'budget':>9} {'mix':<8} {'L1':>6} {'Spearman':>9}")
    for result in results:
        for label in ("chosen", "natural", "uniform"):
            d = result["distances"][label]
            rho = "-" if d["spearman"] is None else f"{d['spearman']:.3f}"
            print(f"{result['budget']:>9} {label:<8} {d['l1']:>6.3f} {rho:>9}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
