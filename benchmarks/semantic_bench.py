"""Embedding and semantic-dedup benchmark: ``embed`` against sentence-transformers, k-means, the whole stage.

One command: ``.venv/bin/python benchmarks/semantic_bench.py [--docs N]``.

* ``refinery/embed`` (:class:`refinery.dedup.encoder.TextEncoder`: length-sorted batches, character clip)
  against ``sentence-transformers/encode`` (what a user would reach for), same model (all-MiniLM-L6-v2 from
  the bundled package), same texts (the first ``--docs`` documents of the sample corpus), same batch size 64,
  256 tokens, one core each (one torch thread, pinned);
* ``refinery/kmeans`` — the k-means phase alone (faiss, spherical, 20 iterations, k = 16) on the corpus's
  embeddings;
* ``refinery/semantic_dedup-1x`` / ``-4x`` — every phase of the stage (sample, k-means, assign, similarity,
  report, the per-shard decision) in one process on one core over the corpus's embeddings split in 8 shards, and
  over 4× the corpus (three extra copies of every embedding with Gaussian noise, renormalised: near-duplicates
  at graded similarities). Docs/s and peak RSS, so memory growth with corpus size is visible.

Every contender runs in its own subprocess; embeddings of the whole corpus are computed once and cached.

``--compare-minhash RUN_DIR`` instead compares a finished ``recipes/llama3_semantic.yaml`` run with MinHash:
duplicate pairs by word-5-gram Jaccard ≥ 0.8 (rensa MinHash, 128 permutations, candidates verified with the
exact Jaccard) among the documents that entered ``semantic_dedup``; how many of those pairs SemDeDup also
flags (same cluster and cosine above 1 − ε, so one of the two is removed) and what it removes beyond them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, peak_rss_mb, pin_one_core

CACHE = Path("/tmp/refinery-bench")
CONTENDERS = (
    "refinery/embed",
    "sentence-transformers/encode",
    "refinery/kmeans-1x",
    "refinery/semantic_dedup-1x",
    "refinery/semantic_dedup-4x",
)
BATCH = 64
SHARDS = 8


def _texts(count: int) -> list[str]:
    return load_documents().column("text").to_pylist()[:count]


def _one_thread() -> None:
    import torch

    pin_one_core()
    torch.set_num_threads(1)


def _embed(count: int) -> dict[str, Any]:
    from refinery.dedup.encoder import TextEncoder

    _one_thread()
    texts = _texts(count)
    encoder = TextEncoder(device="cpu", batch_size=BATCH)
    encoder.encode(texts[:8])  # warm-up (first-call allocations), as for the other contender
    start, cpu = time.perf_counter(), time.process_time()
    vectors = encoder.encode(texts)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.save(CACHE / "bench-refinery-embed.npy", vectors)
    return {"items": len(texts), "seconds": seconds, "cpu_seconds": cpu}


def _sentence_transformers(count: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    from refinery.pipelines.models import DEFAULT_ENCODER, resolve_model_path

    _one_thread()
    texts = _texts(count)
    model = SentenceTransformer(str(resolve_model_path(DEFAULT_ENCODER)), device="cpu", local_files_only=True)
    model.encode(texts[:8], batch_size=BATCH)
    start, cpu = time.perf_counter(), time.process_time()
    vectors = model.encode(texts, batch_size=BATCH, normalize_embeddings=True)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    ours = np.load(CACHE / "bench-refinery-embed.npy")
    cosine = float(np.min(np.sum(ours * vectors, 1)))
    return {"items": len(texts), "seconds": seconds, "cpu_seconds": cpu, "min_cosine_to_refinery": cosine}


def corpus_embeddings() -> tuple[pa.Table, np.ndarray]:
    """Every document of the sample corpus with its embedding (computed once, cached)."""
    documents = load_documents()
    cached = CACHE / f"bench-embeddings-{documents.num_rows}.npy"
    if not cached.exists():
        from refinery.dedup.encoder import TextEncoder

        np.save(cached, TextEncoder(device="cpu").encode(documents.column("text").to_pylist()))
    return documents, np.load(cached)


def _copies(documents: pa.Table, vectors: np.ndarray, factor: int) -> tuple[pa.Table, np.ndarray]:
    if factor == 1:
        return documents, vectors
    rng = np.random.default_rng(0)
    tables, blocks = [documents], [vectors]
    for copy in range(1, factor):
        noisy = vectors + rng.normal(scale=rng.uniform(0.005, 0.03), size=vectors.shape).astype(np.float32)
        blocks.append(noisy / np.linalg.norm(noisy, axis=1, keepdims=True))
        ids = pa.array([f"{i}#{copy}" for i in documents.column("id").to_pylist()])
        tables.append(documents.set_column(0, documents.schema.field("id"), ids))
    return pa.concat_tables(tables), np.concatenate(blocks)


def _kmeans() -> dict[str, Any]:
    import faiss

    from refinery.dedup.semantic.kmeans import unit_rows

    pin_one_core()
    faiss.omp_set_num_threads(1)
    _, vectors = corpus_embeddings()
    sample = unit_rows(vectors.astype(np.float16))
    start, cpu = time.perf_counter(), time.process_time()
    faiss.Kmeans(sample.shape[1], 16, niter=20, seed=0, spherical=True, verbose=False).train(sample)
    return {"items": len(sample), "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


class LocalContext:
    """The global-stage context in one process: phases run in order, no markers (every phase is computed)."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.segment_index = 1
        self.shard_names = names
        self.seed = 0
        self.batch_size = 1000
        self.work_dir = str(folder / "work")
        self._folder = folder

    def input_path(self, shard_name: str) -> str:
        return str(self._folder / "kept" / f"{shard_name}.parquet")

    def map(self, function, items):
        return [function(item) for item in items]

    def phase_done(self, phase: str) -> bool:
        return False

    def mark_phase_done(self, phase: str, outputs: list[str] | None = None) -> None:
        pass


def _semantic(factor: int) -> dict[str, Any]:
    from refinery.dedup.embed import EMBEDDING, embedding_column
    from refinery.dedup.semantic import SemanticDedup

    pin_one_core()
    documents, vectors = _copies(*corpus_embeddings(), factor)
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        root = Path(folder)
        (root / "kept").mkdir()
        names = [f"shard-{i:02d}" for i in range(SHARDS)]
        bounds = np.linspace(0, documents.num_rows, SHARDS + 1).astype(int)
        for name, start, end in zip(names, bounds[:-1], bounds[1:], strict=True):
            part = documents.slice(start, end - start).select(["id", "text", "source", "url"])
            part = part.append_column(EMBEDDING, embedding_column(vectors[start:end]))
            pq.write_table(part, root / "kept" / f"{name}.parquet")
        del documents, vectors
        stage = SemanticDedup(n_clusters=16 * factor, epsilon=0.05)
        context = LocalContext(root, names)
        start, cpu = time.perf_counter(), time.process_time()
        decision = stage.prepare(context)
        phases = time.perf_counter() - start
        kept = rows = 0
        for name in names:
            for batch in pq.ParquetFile(context.input_path(name)).iter_batches(batch_size=1000):
                result = decision.process(pa.Table.from_batches([batch]))
                kept += result.kept.num_rows
                rows += batch.num_rows
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        summary = json.loads((root / "work/report/semantic_summary.json").read_text())
    removals = {str(r["epsilon"]): r["removed"] for r in summary["removals"]}
    return {
        "items": rows,
        "kept": kept,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "phase_seconds": phases,
        "removed_per_epsilon": removals,
    }


def worker(name: str, count: int) -> dict[str, Any]:
    CACHE.mkdir(parents=True, exist_ok=True)
    if name == "refinery/embed":
        result = _embed(count)
    elif name == "sentence-transformers/encode":
        result = _sentence_transformers(count)
    elif name == "refinery/kmeans-1x":
        result = _kmeans()
    else:
        result = _semantic(int(name.rsplit("-", 1)[1].rstrip("x")))
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _shingles(text: str, n: int = 5) -> set[str]:
    words = text.lower().split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def compare_minhash(run_dir: Path, epsilon: float = 0.05, jaccard: float = 0.8) -> dict[str, Any]:
    """MinHash duplicate pairs vs SemDeDup's decisions on the documents that entered semantic_dedup."""
    from rensa import RMinHash

    from refinery.dedup.embed import EMBEDDING, embedding_matrix
    from refinery.dedup.semantic.kmeans import unit_rows

    segments = sorted((run_dir / "segments").iterdir())
    semantic = next(s for s in segments if (s / "work/report/semantic_summary.json").exists())
    columns = ["id", "text", "semantic_cluster", "semantic_duplicate_of", "semantic_similarity", EMBEDDING]
    tables = [pq.read_table(p, columns=columns) for kind in ("kept", "rejected") for p in (semantic / kind).glob("*")]
    table = pa.concat_tables(tables).sort_by("id")
    ids, texts = table.column("id").to_pylist(), table.column("text").to_pylist()
    clusters = table.column("semantic_cluster").to_numpy()
    vectors = unit_rows(embedding_matrix(table.column(EMBEDDING)))
    shingles = [_shingles(t) for t in texts]
    signatures = []
    for words in shingles:
        minhash = RMinHash(num_perm=128, seed=0)
        minhash.update(sorted(words))
        signatures.append(minhash.digest())
    signatures = np.array(signatures, dtype=np.uint32)
    pairs = []
    for i in range(len(ids)):
        estimate = (signatures[i + 1 :] == signatures[i]).mean(axis=1)
        for j in (np.flatnonzero(estimate >= jaccard - 0.1) + i + 1).tolist():
            exact = len(shingles[i] & shingles[j]) / len(shingles[i] | shingles[j])
            if exact >= jaccard:
                pairs.append((i, j, exact))
    threshold = 1 - epsilon
    flagged = [(i, j) for i, j, _ in pairs if clusters[i] == clusters[j] and vectors[i] @ vectors[j] > threshold]
    in_pairs = {k for i, j, _ in pairs for k in (i, j)}
    position = {d: k for k, d in enumerate(ids)}
    duplicate_of = table.column("semantic_duplicate_of").to_pylist()
    beyond = []
    for k, target in enumerate(duplicate_of):
        if target is None:
            continue
        other = position[target]
        exact = len(shingles[k] & shingles[other]) / max(1, len(shingles[k] | shingles[other]))
        if exact < jaccard:
            beyond.append(
                {
                    "id": ids[k],
                    "duplicate_of": target,
                    "cosine": float(vectors[k] @ vectors[other]),
                    "jaccard": round(exact, 3),
                    "text": texts[k][:160],
                    "other_text": texts[other][:160],
                }
            )
    beyond.sort(key=lambda x: (x["jaccard"], x["id"]))
    return {
        "documents": len(ids),
        "minhash_pairs": len(pairs),
        "minhash_documents": len(in_pairs),
        "flagged_by_semdedup": len(flagged),
        "removed_by_semdedup": sum(d is not None for d in duplicate_of),
        "removed_beyond_minhash": len(beyond),
        "examples_beyond": beyond[:6],
    }


def main() -> None:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--docs", type=int, default=600, help="documents for the embedding contenders")
    parser.add_argument("--compare-minhash", type=Path, metavar="RUN_DIR")
    parser.add_argument("--only", nargs="*", choices=CONTENDERS, help="run these contenders only")
    args = parser.parse_args()
    if args.compare_minhash:
        print(json.dumps(compare_minhash(args.compare_minhash), indent=1, ensure_ascii=False))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.docs)))
        return
    corpus_embeddings()  # cache outside the timed workers
    results = {}
    for name in args.only or CONTENDERS:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--docs", str(args.docs)],
            check=True,
            capture_output=True,
            text=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'contender':<32}{'docs':>8}{'seconds':>10}{'docs/s':>10}{'docs/CPU-s':>12}{'peak RSS MB':>13}")
    for name, r in results.items():
        rate = r["items"] / r["seconds"]
        cpu_rate = f"{r['items'] / r['cpu_seconds']:>12.1f}" if "cpu_seconds" in r else f"{'':>12}"
        print(f"{name:<32}{r['items']:>8}{r['seconds']:>10.2f}{rate:>10.1f}{cpu_rate}{r['peak_rss_mb']:>13.0f}")
    if "refinery/embed" in results and "sentence-transformers/encode" in results:
        ours, theirs = results["refinery/embed"], results["sentence-transformers/encode"]
        ratio = (ours["items"] / ours["cpu_seconds"]) / (theirs["items"] / theirs["cpu_seconds"])
        print(
            f"embed / sentence-transformers: {ratio:.2f}x docs per CPU-second (one core each); "
            f"min cosine between the two: {theirs['min_cosine_to_refinery']:.6f}"
        )
    for name in ("refinery/semantic_dedup-1x", "refinery/semantic_dedup-4x"):
        if name not in results:
            continue
        print(
            f"{name}: removed per epsilon {results[name]['removed_per_epsilon']}, "
            f"phases {results[name]['phase_seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
