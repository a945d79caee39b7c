"""``quality_percentile``'s threshold from a corpus-wide sample proportional to shard size (issue 17).

Real documents scored by the committed edu fastText student, written as shards ordered by score and of very
unequal sizes (the shape a crawl sorted by source or date has). The old rule (the first ``sample_per_shard``
documents of every shard, each shard counting equally) puts the threshold far from the corpus quantile; the new
one lands within sampling error of it. The phases run in process through a minimal context (the stage's own
``prepare``); ``test_classifiers_stages.py`` runs the stage on Ray.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from refinery.classifiers.sampling import seeded_hashes
from refinery.classifiers.scoring import QualityClassifier, QualityPercentile, sample_cutoff, shard_rows

EDU = "package:refinery.classifiers/models/edu_fasttext"


class InProcessContext:
    """The GlobalContext protocol without Ray: shards in a folder, phases marked by files."""

    def __init__(self, folder: Path, shard_names: list[str], seed: int = 0) -> None:
        self.segment_index, self.shard_names, self.seed, self.batch_size = 1, shard_names, seed, 64
        self.folder = folder
        self.work_dir = str(folder / "work")
        (folder / "work").mkdir(exist_ok=True)

    def input_path(self, shard_name: str) -> str:
        return str(self.folder / f"{shard_name}.parquet")

    def map(self, function, items):
        return [function(item) for item in items]

    def phase_done(self, phase: str) -> bool:
        return (self.folder / "work" / f"{phase}.done").exists()

    def mark_phase_done(self, phase: str, outputs=None) -> None:
        (self.folder / "work" / f"{phase}.done").write_text("")


def old_rule_threshold(shards: list[pa.Table], scores: dict[str, float], per_shard: int, q: float) -> float:
    """What main did: the first ``per_shard`` documents of each shard, every shard counting equally."""
    values = [scores[i] for shard in shards for i in shard["id"].to_pylist()[:per_shard]]
    return float(np.quantile(values, q))


def test_percentile_threshold_is_unbiased_on_ordered_unequal_shards(real_documents, tmp_path):
    scorer = QualityClassifier(model_path=EDU)
    table = real_documents.select(["id", "text", "source", "url", "date"])
    values = scorer.scores([t or "" for t in table["text"].to_pylist()])
    table = table.take(pa.array(np.argsort(values, kind="stable")))  # shards ordered by score
    values = np.sort(values, kind="stable")
    scores = dict(zip(table["id"].to_pylist(), values.tolist(), strict=True))
    n = table.num_rows
    # one huge low-scoring shard, then many small ones holding the upper part of the distribution
    big = int(n * 0.7)
    bounds = [0, big, *np.linspace(big, n, 11).astype(int)[1:].tolist()]
    shards = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    names = [f"shard-{i:02d}" for i in range(len(shards))]
    for name, shard in zip(names, shards, strict=True):
        pq.write_table(shard, tmp_path / f"{name}.parquet")
    q = 0.3
    truth = float(np.quantile(values, q))
    below_truth = float(np.mean(values < truth))

    old = old_rule_threshold(shards, scores, per_shard=40, q=q)
    stage = QualityPercentile(model_path=EDU, min_percentile=q, column="edu_score", sample_size=n // 2)
    decider = stage.prepare(InProcessContext(tmp_path, names))
    record = json.loads((tmp_path / "work" / "threshold.json").read_text())
    assert record["corpus_documents"] == n and abs(record["sampled_documents"] - n // 2) < 0.15 * n
    new = decider.threshold
    # the fraction of the corpus each threshold would reject, against the asked-for 30%
    old_rejects, new_rejects = float(np.mean(values < old)), float(np.mean(values < new))
    assert abs(old_rejects - below_truth) > 0.15, f"the old rule is biased here ({old_rejects:.3f} rejected)"
    assert abs(new_rejects - below_truth) < 0.06, f"new threshold rejects {new_rejects:.3f}, want ~{below_truth:.3f}"
    print(
        json.dumps(
            {
                "documents": n,
                "asked": q,
                "truth_rejects": below_truth,
                "old_rejects": old_rejects,
                "new_rejects": new_rejects,
            }
        )
    )


def test_percentile_sample_is_proportional_and_seeded(real_documents, tmp_path):
    table = real_documents.select(["id", "text", "source", "url", "date"])
    n = table.num_rows
    pq.write_table(table.slice(0, n // 5), tmp_path / "small.parquet")
    pq.write_table(table.slice(n // 5), tmp_path / "large.parquet")

    cutoff = sample_cutoff(n // 3, n)
    taken = {
        name: sum(h < cutoff for h in seeded_hashes(pq.read_table(tmp_path / f"{name}.parquet")["id"].to_pylist(), 0))
        for name in ("small", "large")
    }
    assert shard_rows(str(tmp_path / "large.parquet")) == n - n // 5
    # the large shard (4× the documents) gives about 4× the sample; a per-shard cap would give both the same
    assert 2.5 < taken["large"] / taken["small"] < 6
    thresholds = []
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / folder).mkdir()
        for name in ("small", "large"):
            (tmp_path / folder / f"{name}.parquet").hardlink_to(tmp_path / f"{name}.parquet")
        stage = QualityPercentile(model_path=EDU, min_percentile=0.5, sample_size=n // 3)
        stage.prepare(InProcessContext(tmp_path / folder, ["small", "large"], seed=seed))
        thresholds.append(json.loads((tmp_path / folder / "work" / "threshold.json").read_text()))
    assert thresholds[0] == thresholds[1], "same corpus and seed: the same sample and threshold"
    assert thresholds[0]["sampled_documents"] != thresholds[2]["sampled_documents"] or (
        thresholds[0]["threshold"] != thresholds[2]["threshold"]
    ), "another seed draws another sample"
