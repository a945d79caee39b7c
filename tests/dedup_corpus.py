"""A small real corpus with planted duplicates at every level, written as Parquet shards for dedup tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BOILERPLATE = "Share this page on your favourite social network and subscribe to our newsletter today"


def substitute(text: str, fraction: float, rng: random.Random) -> str:
    words = text.split(" ")
    for index in rng.sample(range(len(words)), max(1, int(len(words) * fraction))):
        words[index] = f"zq{rng.randrange(10**6)}"
    return " ".join(words)


def build(real_documents: pa.Table, folder: Path, shards: int = 4, count: int = 80) -> dict[str, str]:
    """Write ``shards`` Parquet files (id, text, url, date); return the planted cases' ids by name."""
    rng = random.Random(7)
    docs = real_documents.filter(pa.compute.greater(pa.compute.utf8_length(real_documents["text"]), 1500))
    picked = sorted(rng.sample(range(docs.num_rows), count))
    rows = []
    for n, index in enumerate(picked):
        text = docs["text"][index].as_py()
        rows.append({"id": f"doc{n:03d}", "text": text, "url": f"https://example.org/page/{n}", "day": 1})
    base = rows[0]["text"]
    planted = {
        # a re-crawl of page 1: same page after normalisation, later date, slightly edited text
        "recrawl_new": "recrawl",
        "recrawl_old": "doc001",
        # whitespace-only variant of doc002, no URL: exact dedup with whitespace normalisation
        "exact_copy": "exactcopy",
        "exact_original": "doc002",
        # 2% of the words of doc003 substituted: a near duplicate for MinHash
        "near_copy": "nearcopy",
        "near_original": "doc003",
        "empty_after_lines": "onlyboilerplate",
    }
    rows.append(
        {
            "id": "recrawl",
            "text": rows[1]["text"] + "\nUpdated.",
            "url": "HTTPS://Example.ORG:443/page/1/#top",
            "day": 9,
        }
    )
    rows.append({"id": "exactcopy", "text": "  " + rows[2]["text"].replace(" ", "   ") + "\n", "url": None, "day": 1})
    rows.append({"id": "nearcopy", "text": substitute(rows[3]["text"], 0.02, rng), "url": None, "day": 1})
    rows.append({"id": "onlyboilerplate", "text": BOILERPLATE, "url": None, "day": 1})
    for row in rows[10:20]:
        row["text"] = row["text"] + "\n" + BOILERPLATE
    assert base
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        part = rows[shard::shards]
        table = pa.table(
            {
                "id": [r["id"] for r in part],
                "text": [r["text"] for r in part],
                "url": [r["url"] for r in part],
                "date": pa.array([datetime(2024, 1, r["day"], tzinfo=UTC) for r in part], pa.timestamp("s")),
            }
        )
        pq.write_table(table, folder / f"docs-{shard:05d}.parquet")
    return planted


def recipe(inputs: Path, output: Path, stages: list[dict], **extra) -> dict:
    return {
        "name": "dedup-test",
        "output_dir": str(output),
        "batch_size": 16,
        "inputs": [{"name": "web", "format": "parquet", "paths": [str(inputs / "*.parquet")], "id_field": "id"}],
        "stages": stages,
        **extra,
    }


def all_stages(partitions: int) -> list[dict]:
    return [
        {"stage": "url_dedup", "num_partitions": partitions},
        {"stage": "exact_dedup", "num_partitions": partitions},
        {"stage": "line_dedup", "num_partitions": partitions, "max_repeats": 6},
        {"stage": "minhash_dedup", "num_partitions": partitions},
    ]
