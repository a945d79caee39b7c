"""Dedup quality and speed: Refinery's MinHash stage beside datatrove, rensa (and datasketch when installed).

One command: ``.venv/bin/python benchmarks/dedup_bench.py`` (``--quick`` for a smaller corpus).

Corpus: every document of the sample corpus plus the Debian ``copyright`` and ``changelog`` files of this
machine (``/usr/share/doc``), and planted near-duplicates of a random fifth of them (word substitutions and
deletions of 1–15%, truncations, boilerplate lines added, paragraphs reordered, case/whitespace changes, exact
copies) and same-URL re-crawls with other dates. Ground truth: the exact word-5-gram Jaccard similarity of every
pair, after FineWeb normalisation (:func:`refinery.dedup.normalise.normalise`, split on spaces: the documented
shingling), computed by brute force as a sparse product of the document × shingle matrix.

Quality: pair recall at J ≥ 0.8, pair precision (share of same-cluster pairs whose true J ≥ 0.7), documents
removed with no J ≥ 0.8 twin, and (URL dedup) the share of re-crawled URLs whose kept document is the most
recent. Contenders: the ``minhash_dedup`` stage run by the real runner; datatrove's MinHash (its own shingling and
signature code, ``MinhashDedupSignature.get_shingles``/``get_signature``, with its bucket matching and union-find
clustering re-done in process, defaults 14 × 8, no verification); rensa 14 × 8 with verification of the
estimated Jaccard ≥ 0.8.

Speed (each contender in its own process pinned to one core): signatures docs/s (normalisation and shingling
included) for Refinery, datatrove, rensa; the whole ``minhash_dedup`` stage in MB of text per core-second and the
peak RSS per task at 1× and 4× the corpus (every phase task run in a fresh forked process, one at a time);
``line_dedup`` and ``url_dedup`` phases per document against datatrove's ``SentenceDedupSignature`` in line
mode (datatrove 0.10.1 has no URL dedup step).
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents, pin_one_core, run_contenders

CACHE = Path("/tmp/refinery-bench")
BOILER = ["Copyright notice: all rights reserved.", "Back to top", "Print this page", "Last updated by the web team"]


# -- corpus ---------------------------------------------------------------------------------------------------


def debian_documents(limit: int) -> list[tuple[str, str]]:
    found = []
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")) + sorted(
        Path("/usr/share/doc").glob("*/changelog*")
    ):
        try:
            data = path.read_bytes()
            if path.suffix == ".gz":
                import gzip

                data = gzip.decompress(data)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError, EOFError):
            continue
        if 500 <= len(text) <= 200_000:
            found.append((f"file://{path}", text))
    return found[:limit]


def variant(text: str, kind: str, rng: random.Random) -> str:
    words = text.split(" ")
    if kind == "substitute":
        for i in rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.01, 0.15)))):
            words[i] = rng.choice(["data", "value", "system", "zeta", "note", "item"]) + str(rng.randrange(99))
        return " ".join(words)
    if kind == "delete":
        drop = set(rng.sample(range(len(words)), max(1, int(len(words) * rng.uniform(0.01, 0.15)))))
        return " ".join(w for i, w in enumerate(words) if i not in drop)
    if kind == "truncate":
        return text[: int(len(text) * rng.uniform(0.7, 0.97))]
    if kind == "boilerplate":
        return "\n".join([rng.choice(BOILER), text, rng.choice(BOILER), rng.choice(BOILER)])
    if kind == "reorder":
        paragraphs = text.split("\n\n")
        rng.shuffle(paragraphs)
        return "\n\n".join(paragraphs)
    if kind == "case":
        return "  ".join(text.upper().split(" ")) if rng.random() < 0.5 else text.lower().replace("\n", " \n\t")
    return text  # exact copy


def build_corpus(size: int, seed: int = 0) -> pa.Table:
    cached = CACHE / f"dedup-corpus-{size}-{seed}.parquet"
    if cached.exists():
        return pq.read_table(cached)
    rng = random.Random(seed)
    sample = load_documents()
    originals = [
        (u or f"https://sample.local/{i}", t)
        for i, (u, t) in enumerate(zip(sample["url"].to_pylist(), sample["text"].to_pylist(), strict=True))
    ]
    originals += debian_documents(size)
    originals = originals[: int(size * 0.8)]
    base = datetime(2023, 1, 1, tzinfo=UTC)
    rows = [
        {"id": f"o{i:05d}", "url": u, "text": t, "date": base + timedelta(days=rng.randrange(365)), "origin": i}
        for i, (u, t) in enumerate(originals)
    ]
    kinds = ["substitute", "delete", "truncate", "boilerplate", "reorder", "case", "copy"]
    for i in rng.sample(range(len(originals)), len(originals) // 5):
        for k in range(rng.randint(1, 2)):
            rows.append(
                {
                    "id": f"v{i:05d}-{k}",
                    "url": f"https://mirror.local/{i}/{k}",
                    "text": variant(originals[i][1], rng.choice(kinds), rng),
                    "date": base + timedelta(days=rng.randrange(365)),
                    "origin": i,
                }
            )
    for i in rng.sample(range(len(originals)), min(120, len(originals))):
        url = originals[i][0]
        recrawl = url.replace("https://", "http://", 1) + ("/" if not url.endswith("/") else "") + "#recrawl"
        rows.append(
            {
                "id": f"r{i:05d}",
                "url": recrawl,
                "text": variant(originals[i][1], "substitute", rng),
                "date": base + timedelta(days=rng.randrange(-200, 565)),
                "origin": i,
            }
        )
    rng.shuffle(rows)
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "url": [r["url"] for r in rows],
            "date": pa.array([r["date"] for r in rows], pa.timestamp("s", tz="UTC")),
        }
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cached)
    return table


def truth(corpus: pa.Table) -> dict[tuple[int, int], float]:
    """Exact word-5-gram Jaccard of every pair with J ≥ 0.5 (brute force: sparse document × shingle product)."""
    import scipy.sparse as sp
    import xxhash

    from refinery.dedup.normalise import normalise

    sets = []
    for text in normalise(corpus["text"], "fineweb").to_pylist():
        words = text.split(" ") if text else []
        grams = [" ".join(words[i : i + 5]) for i in range(max(len(words) - 4, 1 if words else 0))]
        sets.append({xxhash.xxh3_64_intdigest(g) for g in grams})
    vocab: dict[int, int] = {}
    rows, cols = [], []
    for d, s in enumerate(sets):
        for h in s:
            rows.append(d)
            cols.append(vocab.setdefault(h, len(vocab)))
    x = sp.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.array([len(s) for s in sets])
    pairs = {}
    for i, j, c in zip(inter.row, inter.col, inter.data, strict=True):
        if i < j:
            jac = c / (sizes[i] + sizes[j] - c)
            if jac >= 0.5:
                pairs[(int(i), int(j))] = float(jac)
    return pairs


def quality(labels: np.ndarray, removed: np.ndarray, pairs: dict[tuple[int, int], float]) -> dict[str, float]:
    """Recall of J ≥ 0.8 pairs, precision of same-cluster pairs (true J ≥ 0.7), docs removed without a J ≥ 0.8 twin."""
    high = [(i, j) for (i, j), v in pairs.items() if v >= 0.8]
    recall = np.mean([labels[i] == labels[j] for i, j in high]) if high else 1.0
    same = 0
    good = 0
    groups: dict[int, list[int]] = {}
    for d, label in enumerate(labels):
        groups.setdefault(int(label), []).append(d)
    for members in groups.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                same += 1
                good += pairs.get((members[a], members[b]), 0.0) >= 0.7
    twins = {i for p in high for i in p}
    wrong = int(sum(1 for d in np.flatnonzero(removed) if d not in twins))
    return {
        "recall": float(recall),
        "precision": good / same if same else 1.0,
        "wrongly_removed": wrong,
        "removed": int(removed.sum()),
        "clustered_pairs": same,
    }


def union_find(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def removed_from_labels(labels: np.ndarray) -> np.ndarray:
    first: dict[int, int] = {}
    removed = np.zeros(len(labels), bool)
    for d, label in enumerate(labels):
        if label in first:
            removed[d] = True
        else:
            first[int(label)] = d
    return removed


def banded_pairs(signatures: np.ndarray, bands: int, rows: int) -> set[tuple[int, int]]:
    pairs = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = {}
        for d, sig in enumerate(signatures):
            buckets.setdefault(sig[band * rows : (band + 1) * rows].tobytes(), []).append(d)
        for members in buckets.values():
            pairs.update((members[0], m) for m in members[1:])
            pairs.update(itertools.pairwise(members))
    return pairs


# -- contenders for quality -----------------------------------------------------------------------------------


def write_shards(corpus: pa.Table, folder: Path, shards: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        pq.write_table(
            corpus.slice(s * (corpus.num_rows // shards + 1), corpus.num_rows // shards + 1),
            folder / f"c-{s:03d}.parquet",
        )


def refinery_run(corpus: pa.Table, stages: list[dict], work: Path) -> tuple[dict[str, dict], float]:
    """Run the stages with the real runner (embedded Ray, 1 CPU); return the last segment's rows by id."""
    import pyarrow.dataset as ds

    from refinery.pipelines.recipe import parse_recipe
    from refinery.pipelines.runner import run_recipe

    write_shards(corpus, work / "in")
    recipe = {
        "name": "bench",
        "output_dir": str(work / "out"),
        "batch_size": 500,
        "inputs": [{"name": "c", "format": "parquet", "paths": [str(work / "in" / "*.parquet")], "id_field": "id"}],
        "stages": stages,
    }
    started = time.perf_counter()
    run_recipe(parse_recipe(recipe, work), num_cpus=1, show_progress=False)
    seconds = time.perf_counter() - started
    last = max(p.name for p in (work / "out/segments").iterdir())
    rows = {}
    for kind in ("kept", "rejected"):
        for r in ds.dataset(work / "out/segments" / last / kind).to_table().to_pylist():
            rows[r["id"].split("/", 1)[1]] = r
    return rows, seconds


def refinery_quality(corpus: pa.Table, pairs: dict, work: Path) -> dict:
    rows, _ = refinery_run(corpus, [{"stage": "minhash_dedup", "num_partitions": 4}], work / "minhash")
    ids = corpus["id"].to_pylist()
    index = {i: n for n, i in enumerate(ids)}
    # minhash_cluster names the cluster by its keeper's document id ("source/id"); unclustered rows are alone
    clusters = [rows[i]["minhash_cluster"] for i in ids]
    labels = np.array([index[c.split("/", 1)[1]] if c else n for n, c in enumerate(clusters)])
    removed = np.array([rows[i].get("reason") is not None for i in ids])
    return quality(labels, removed, pairs)


def url_accuracy(corpus: pa.Table, work: Path) -> dict:
    from refinery.dedup.url_normalise import normalise_url

    rows, _ = refinery_run(corpus, [{"stage": "url_dedup", "num_partitions": 4}], work / "url")
    groups: dict[str, list[tuple]] = {}
    for i, u, d in zip(corpus["id"].to_pylist(), corpus["url"].to_pylist(), corpus["date"].to_pylist(), strict=True):
        key = normalise_url(u)
        if key:
            groups.setdefault(key, []).append((d, i))
    multi = [g for g in groups.values() if len(g) > 1]
    correct = 0
    for g in multi:
        expected = sorted(g, key=lambda x: (-x[0].timestamp(), x[1]))[0][1]
        kept = [i for _, i in g if rows[i].get("reason") is None]
        correct += kept == [expected]
    return {"url_groups": len(multi), "keep_most_recent_accuracy": correct / len(multi) if multi else 1.0}


def rensa_quality(corpus: pa.Table, pairs: dict) -> dict:
    from rensa import RMinHash

    from refinery.dedup.normalise import normalise

    sigs = []
    for text in normalise(corpus["text"], "fineweb").to_pylist():
        words = text.split(" ") if text else []
        m = RMinHash(num_perm=112, seed=1)
        m.update([" ".join(words[i : i + 5]) for i in range(max(len(words) - 4, 1 if words else 0))])
        sigs.append(np.array(m.digest(), np.uint32))
    sigs = np.array(sigs)
    candidates = banded_pairs(sigs, 14, 8)
    verified = [(a, b) for a, b in candidates if (sigs[a] == sigs[b]).mean() >= 0.8]
    labels = union_find(corpus.num_rows, verified)
    return quality(labels, removed_from_labels(labels), pairs)


def datatrove_quality(corpus: pa.Table, pairs: dict) -> dict:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
    sigs = []
    for text in corpus["text"].to_pylist():
        shingles = step.get_shingles(text)
        if len(shingles) == 0:
            sigs.append(np.full(112, -1, np.int64))
            continue
        sigs.append(np.array([v for bucket in step.get_signature(shingles) for v in bucket], np.int64))
    sigs = np.array(sigs)
    labels = union_find(corpus.num_rows, sorted(banded_pairs(sigs, 14, 8)))
    return quality(labels, removed_from_labels(labels), pairs)


# -- speed workers (one core each, fresh process) -------------------------------------------------------------


def texts_for_speed(limit: int) -> list[str]:
    return build_corpus(ARGS_SIZE)["text"].to_pylist()[:limit]


def worker(name: str) -> dict:
    pin_one_core()
    texts = texts_for_speed(3000)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.process_time()  # CPU seconds: the shared benchmark machine is busy, wall time is not per core
    if name == "sig/refinery":
        from refinery.dedup.minhash.signatures import band_keys, sketches

        for i in range(0, len(texts), 1000):
            lsh, _, _ = sketches(pa.array(texts[i : i + 1000], pa.large_string()), 5, 0, 112, 512)
            band_keys(lsh, 14, 8)
    elif name == "sig/rensa":
        from rensa import RMinHash

        from refinery.dedup.normalise import normalise

        for text in normalise(pa.array(texts, pa.large_string()), "fineweb").to_pylist():
            words = text.split(" ")
            m = RMinHash(num_perm=112, seed=1)
            m.update([" ".join(words[i : i + 5]) for i in range(max(len(words) - 4, 1))])
            m.digest()
    elif name == "sig/datatrove":
        from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

        step = MinhashDedupSignature(output_folder=tempfile.mkdtemp(), config=MinhashConfig())
        for text in texts:
            shingles = step.get_shingles(text)
            if len(shingles):
                step.get_signature(shingles)
    elif name == "line/refinery":
        from refinery.dedup.lines import split_lines

        for i in range(0, len(texts), 1000):
            lines = split_lines(pa.array(texts[i : i + 1000], pa.large_string()), "fineweb", 0)
            np.unique(lines.hashes[lines.countable], return_counts=True)
    elif name == "line/datatrove":
        from datatrove.data import Document
        from datatrove.pipeline.dedup import SentDedupConfig, SentenceDedupSignature

        step = SentenceDedupSignature(
            output_folder=tempfile.mkdtemp(), config=SentDedupConfig(n_sentences=1, split_sentences=False)
        )
        step.run((Document(text=t, id=str(i)) for i, t in enumerate(texts)), rank=0, world_size=1)
    elif name == "url/refinery":
        from refinery.dedup.normalise import hash128
        from refinery.dedup.url_normalise import normalise_urls

        urls = build_corpus(ARGS_SIZE)["url"].to_pylist()[: len(texts)]
        keys = normalise_urls(urls)
        hash128(pa.array([k or "" for k in keys], pa.large_string()))
    seconds = time.process_time() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "items": len(texts),
        "seconds": seconds,
        "mb": megabytes,
        "peak_rss_mb": peak,
        "rss_growth_mb": peak - start_rss,
    }


# -- the whole stage, task by task, in forked processes -------------------------------------------------------


class ForkContext:
    """A GlobalContext whose ``map`` runs each task alone in a fresh forked process on one core."""

    def __init__(self, shards: list[Path], work: str, partitions_seed: int = 0) -> None:
        self.segment_index, self.seed, self.batch_size = 1, 0, 500
        self.shard_names = sorted(p.stem for p in shards)
        self._paths = {p.stem: str(p) for p in shards}
        self.work_dir = work
        self.task_peaks: list[float] = []
        self.cpu_seconds = 0.0
        self._done: set[str] = set()

    def input_path(self, name: str) -> str:
        return self._paths[name]

    def map(self, function, items):
        results = []
        for item in items:
            with multiprocessing.get_context("fork").Pool(1, maxtasksperchild=1) as pool:
                result, peak, cpu = pool.apply(_measured, (function, item))
            self.task_peaks.append(peak)
            self.cpu_seconds += cpu
            results.append(result)
        return results

    def phase_done(self, phase: str) -> bool:
        return phase in self._done

    def mark_phase_done(self, phase: str, outputs=None) -> None:
        self._done.add(phase)


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def _measured(function, item):
    """Run one task; its memory is the peak RSS above the RSS the forked process started with."""
    pin_one_core()
    start_rss = _rss_mb()
    started = time.process_time()
    result = function(item)
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - start_rss, time.process_time() - started


def stage_scaling(corpus: pa.Table, factor: int, folder: Path) -> dict:
    """The whole minhash_dedup prepare + decision over ``factor`` × the corpus (distinct ids, edited copies)."""
    from refinery.dedup.minhash.stage import MinhashDedup
    from refinery.pipelines.stages import ShardInfo

    rng = random.Random(factor)
    copies = []
    for k in range(factor):
        texts = (
            corpus["text"].to_pylist()
            if k == 0
            else [variant(t, "substitute", rng) for t in corpus["text"].to_pylist()]
        )
        copies.append(
            pa.table(
                {"id": [f"{k}-{i}" for i in corpus["id"].to_pylist()], "text": texts, "source": ["c"] * corpus.num_rows}
            )
        )
    table = pa.concat_tables(copies)
    shard_rows = 1000
    paths = []
    (folder / "in").mkdir(parents=True, exist_ok=True)
    for s in range(0, table.num_rows, shard_rows):
        path = folder / "in" / f"c--{s // shard_rows:04d}.parquet"
        pq.write_table(table.slice(s, shard_rows), path)
        paths.append(path)
    context = ForkContext(paths, str(folder / "work"))
    stage = MinhashDedup(num_partitions=4 * factor)
    decision = stage.prepare(context)
    started = time.process_time()
    for position, path in enumerate(paths):
        decision.begin_shard(ShardInfo(path.stem, "c", position))
        for batch in pq.ParquetFile(path).iter_batches(batch_size=500):
            decision.process(pa.Table.from_batches([batch]))
    cpu = context.cpu_seconds + time.process_time() - started
    megabytes = sum(len(t.encode()) for t in table["text"].to_pylist()) / 1e6
    return {
        "factor": factor,
        "documents": table.num_rows,
        "mb": round(megabytes, 1),
        "cpu_seconds": round(cpu, 1),
        "mb_per_core_second": round(megabytes / cpu, 2),
        "tasks": len(context.task_peaks),
        "peak_task_rss_growth_mb": round(max(context.task_peaks), 0),
        "median_task_rss_growth_mb": round(float(np.median(context.task_peaks)), 0),
    }


ARGS_SIZE = 3000


def main() -> None:
    global ARGS_SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    ARGS_SIZE = args.size
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    corpus = build_corpus(args.size)
    print(
        f"corpus: {corpus.num_rows} documents, {sum(len(t) for t in corpus['text'].to_pylist()) / 1e6:.1f} M characters"
    )
    clock = time.perf_counter()
    pairs = truth(corpus)
    print(
        f"ground truth: {sum(v >= 0.8 for v in pairs.values())} pairs with J >= 0.8",
        f"({time.perf_counter() - clock:.0f} s)",
    )
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        rows = {
            "refinery minhash_dedup (14x8, verified)": refinery_quality(corpus, pairs, Path(tmp)),
            "datatrove MinHash defaults (14x8)": datatrove_quality(corpus, pairs),
            "rensa 14x8 + verify est. J>=0.8": rensa_quality(corpus, pairs),
        }
        try:
            import datasketch  # noqa: F401
        except ImportError:
            print("datasketch: not installed in this environment, row skipped")
        print(f"\n{'method':<42}{'recall@0.8':>11}{'precision':>11}{'wrong rm':>10}{'removed':>9}")
        for name, q in rows.items():
            print(f"{name:<42}{q['recall']:>11.3f}{q['precision']:>11.3f}{q['wrongly_removed']:>10}{q['removed']:>9}")
        print("url_dedup:", url_accuracy(corpus, Path(tmp)))
        print("\nspeed, one core each:")
        results = run_contenders(
            __file__, ("sig/refinery", "sig/rensa", "sig/datatrove", "line/refinery", "line/datatrove", "url/refinery")
        )
        for name, r in results.items():
            rate, throughput = r["items"] / r["seconds"], r["mb"] / r["seconds"]
            growth = r["rss_growth_mb"]
            print(f"  {name:<16}{rate:>10.0f} docs/s{throughput:>8.1f} MB/s  RSS growth while timed {growth:.0f} MB")
        print("\nwhole minhash_dedup stage, every task in a fresh forked process on one core:")
        for factor in (1, 4):
            print(" ", stage_scaling(corpus, factor, Path(tmp) / f"scale{factor}"))


if __name__ == "__main__":
    main()
