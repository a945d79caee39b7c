"""MinHash and semantic dedup derive their partition counts from the input's size (``partition_bytes``).

A fixed count made each reduce task's memory grow with the corpus; the derived count keeps the input per
partition near ``partition_bytes``. Decisions must not depend on the count. The map phases of MinHash and of
the exact-key and line stages write one file per group of consecutive shards; decisions must not depend on the
grouping either, and a resumed reduce phase reads the writers its map phase recorded.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from test_stage_properties import InProcessContext, batches, decide_every_shard  # noqa: F401  (batches: a fixture)

from refinery.pipelines.partitions import MAX_PARTITIONS, input_bytes, partition_count, partitions_for_bytes
from refinery.pipelines.stages import stage_registry


def test_partitions_follow_input_bytes():
    assert partitions_for_bytes(0, 100) == 1
    assert partitions_for_bytes(100, 100) == 1
    assert partitions_for_bytes(101, 100) == 2
    assert partitions_for_bytes(10**15, 100) == MAX_PARTITIONS
    with pytest.raises(ValueError):
        partitions_for_bytes(10, 0)


def test_input_bytes_sums_the_segment_input_files(batches, tmp_path):  # noqa: F811
    context = InProcessContext(tmp_path, batches["english"])
    sizes = sum((tmp_path / "segments/00/kept" / f"{name}.parquet").stat().st_size for name in context.shard_names)
    assert input_bytes(context) == sizes > 0
    assert partition_count(context, None, sizes // 3) == 4  # ceil(3 + remainder)
    assert partition_count(context, 7, 1) == 7, "a count the recipe sets wins"


@pytest.mark.parametrize("name", ["minhash_dedup", "semantic_dedup"])
def test_decisions_do_not_depend_on_the_derived_count(name, batches, tmp_path):  # noqa: F811
    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    batch = batch.set_column(batch.schema.get_field_index("source"), "source", pa.array(["web"] * batch.num_rows))
    if name == "semantic_dedup":
        embed = stage_registry()["embed"]()
        embed.setup()
        batch = embed.process(batch).kept
    outcomes = []
    for label, parameters in (("one", {}), ("many", {"partition_bytes": 2_000})):
        stage = stage_registry()[name](**parameters, **({"n_clusters": 2} if name == "semantic_dedup" else {}))
        context = InProcessContext(tmp_path / label, batch)
        parts = partition_count(context, None, stage.partition_bytes)
        decision = stage.prepare(context)
        result = decide_every_shard(decision, context)
        outcomes.append((parts, sorted(result.rejected["id"].to_pylist()), getattr(decision, "partitions", None)))
    (one, rejected_one, _), (many, rejected_many, drop_writers) = outcomes
    assert one == 1 and many > 8, (one, many)
    assert rejected_one == rejected_many and len(rejected_one) >= 9
    if name == "minhash_dedup":  # a shard's drop list comes from one writer, however many corpus partitions
        assert drop_writers == 1, drop_writers


@pytest.mark.parametrize("name", ["url_dedup", "exact_dedup", "line_dedup"])
def test_exact_key_and_line_stages_derive_their_count_and_decide_the_same(name, batches, tmp_path):  # noqa: F811
    """They used to fix 16 partitions, so a partition's memory grew with the corpus; now the count follows the
    input (at least 16) and the output does not depend on it."""
    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    outcomes = []
    for label, parameters in (("default", {}), ("many", {"partition_bytes": 2_000})):
        stage = stage_registry()[name](**parameters, **({"max_repeats": 1} if name == "line_dedup" else {}))
        context = InProcessContext(tmp_path / label, batch)
        decision = stage.prepare(context)
        result = decide_every_shard(decision, context)
        kept = sorted(zip(result.kept["id"].to_pylist(), result.kept["text"].to_pylist(), strict=True))
        rejected = sorted(zip(result.rejected["id"].to_pylist(), result.rejected["reason"].to_pylist(), strict=True))
        outcomes.append((decision.partitions, kept, rejected))
    (default, kept_default, rejected_default), (many, kept_many, rejected_many) = outcomes
    assert default == 16 and many > 16, (default, many)
    assert kept_default == kept_many and rejected_default == rejected_many
    original = dict(zip(batch["id"].to_pylist(), batch["text"].to_pylist(), strict=True))
    edited = [doc for doc, text in kept_default if text != original[doc]]
    assert rejected_default or edited, "the stage found nothing: the comparison would be empty"


def test_drop_lists_are_partitioned_by_clustered_documents():
    from refinery.dedup.minhash.stage import DROP_ROWS_PER_PARTITION, drop_partition_count

    assert drop_partition_count(0, 12) == 1
    assert drop_partition_count(DROP_ROWS_PER_PARTITION // 2, 12) == 1
    assert drop_partition_count(3 * DROP_ROWS_PER_PARTITION, 12) == 6
    assert drop_partition_count(10**12, 12) == 12, "never more than the stage's own partitions"


def test_clusters_read_no_file_per_input_shard(batches, tmp_path, monkeypatch):  # noqa: F811
    """The ``clusters`` phase joins metadata written beside the edges, not the signatures' per-shard files.

    Why: with one metadata file per input shard in every partition, a ``clusters`` task read as many files as
    there are shards, and the phase's cost per MB grew with the corpus (3.8x from 8x to 64x).
    """
    from refinery.dedup.minhash import stage as minhash_stage
    from refinery.pipelines import partitions

    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    context = InProcessContext(tmp_path, batch)
    read, in_clusters = [], [False]
    real_read, real_label = partitions.read_checked, minhash_stage.label_partition

    def counting_read(path, record, columns=None):
        if in_clusters[0]:
            read.append(path)
        return real_read(path, record, columns)

    def labelling(job):
        in_clusters[0] = True
        try:
            return real_label(job)
        finally:
            in_clusters[0] = False

    monkeypatch.setattr(partitions, "read_checked", counting_read)
    monkeypatch.setattr(minhash_stage, "label_partition", labelling)
    decision = stage_registry()["minhash_dedup"](partition_bytes=2_000).prepare(context)
    assert len(context.shard_names) > 1 and read, (context.shard_names, read)
    assert not [path for path in read if "/signatures/" in path], "clusters read the signatures' per-shard files"
    assert any("/edges/nodes/" in path for path in read)
    assert decision.partitions == 1


def test_groups_by_bytes_cuts_consecutive_shards_near_the_target():
    from refinery.pipelines.partitions import groups_by_bytes

    assert groups_by_bytes([], 10) == []
    assert groups_by_bytes([4, 4, 4, 4, 4], 10) == [[0, 1], [2, 3], [4]]
    assert groups_by_bytes([25, 1, 1], 10) == [[0], [1, 2]], "a shard larger than the target is a group alone"
    with pytest.raises(ValueError):
        groups_by_bytes([1], 0)


def test_minhash_signatures_are_written_by_groups_of_shards(batches, tmp_path, monkeypatch):  # noqa: F811
    """One signature writer per group of shards, not per shard: reduce tasks read a file per writer."""
    from refinery.dedup.minhash import stage as minhash_stage

    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    rejected = []
    for label, group_bytes in (("grouped", 10**9), ("per_shard", 1)):
        monkeypatch.setattr(minhash_stage, "signature_group_bytes", lambda total, target, size=group_bytes: size)
        context = InProcessContext(tmp_path / label, batch)
        decision = stage_registry()["minhash_dedup"](num_partitions=2).prepare(context)
        written = list((tmp_path / label).glob("segments/*/work/signatures/sketches/_index/*.json"))
        assert len(written) == (1 if label == "grouped" else len(context.shard_names)), (label, written)
        rejected.append(sorted(decide_every_shard(decision, context).rejected["id"].to_pylist()))
    assert rejected[0] == rejected[1] and rejected[0], "the same duplicates whatever the writers"


def test_signature_groups_keep_every_cpu_busy(monkeypatch):
    from refinery.dedup.minhash.stage import signature_group_bytes
    from refinery.pipelines import executor

    monkeypatch.setattr(executor, "session_resources", lambda: {"CPU": 4.0})
    assert signature_group_bytes(10 * 2**30, 64 * 2**20) == 16 * 2**20, "a large input: what one task may hold"
    assert signature_group_bytes(10 * 2**30, 2**20) == 2**20, "never more than a partition's input"
    assert signature_group_bytes(40 * 2**20, 64 * 2**20) == 5 * 2**20, "a small one: 8 groups for 4 CPUs"
    assert signature_group_bytes(0, 64 * 2**20) == 1


def _outcome(decision, context) -> tuple[list, list]:
    """Kept (id, text, every added column) and rejected (id, reason, added columns) rows of every shard, sorted."""
    result = decide_every_shard(decision, context)
    added = [c for c in result.kept.column_names if c.endswith("duplicate_of")]
    kept = sorted(zip(*(result.kept[c].to_pylist() for c in ["id", "text", *added]), strict=True))
    rejected = sorted(zip(*(result.rejected[c].to_pylist() for c in ["id", "reason", *added]), strict=True))
    return kept, rejected


@pytest.mark.parametrize(("name", "phase"), [("url_dedup", "keys"), ("exact_dedup", "keys"), ("line_dedup", "lines")])
def test_key_and_line_maps_are_written_by_groups_of_shards(name, phase, batches, tmp_path, monkeypatch):  # noqa: F811
    """One writer per group of shards, not per shard (a reduce task reads a file per writer); the same output."""
    from refinery.dedup import shard_groups

    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    outcomes = []
    for label, group_bytes in (("grouped", 10**9), ("per_shard", 1)):
        monkeypatch.setattr(shard_groups, "group_bytes", lambda total, target, size=group_bytes: size)
        context = InProcessContext(tmp_path / label, batch)
        stage = stage_registry()[name](**({"max_repeats": 1} if name == "line_dedup" else {}))
        decision = stage.prepare(context)
        written = list((tmp_path / label).glob(f"segments/*/work/{phase}/rows/_index/*.json"))
        assert len(written) == (1 if label == "grouped" else len(context.shard_names)), (label, written)
        outcomes.append(_outcome(decision, context))
    (kept_grouped, rejected_grouped), (kept_per_shard, rejected_per_shard) = outcomes
    assert kept_grouped == kept_per_shard and rejected_grouped == rejected_per_shard
    original = dict(zip(batch["id"].to_pylist(), batch["text"].to_pylist(), strict=True))
    assert rejected_grouped or [k for k in kept_grouped if k[1] != original[k[0]]], "nothing found to compare"


def test_a_line_group_spanning_two_buckets_counts_each_bucket_apart(batches, tmp_path, monkeypatch):  # noqa: F811
    """Shards ``a`` and ``b`` are buckets 0 and 1 but one ``lines`` group: each row keeps its bucket.

    ``shared`` is in every document (4 per bucket, 8 in all: frequent only if the buckets were merged);
    ``local`` is in ``a`` 8 times (frequent in bucket 0) and once in ``b`` (kept there).
    """
    from refinery.dedup import shard_groups

    docs = batches["english"].slice(0, 8)
    texts = docs["text"].to_pylist()
    shared = "Report bugs to the project's issue tracker, not to the mailing list."
    local = "This page was generated from the reStructuredText sources of the manual."
    texts = [
        f"{t}\n{shared}\n{local}\n{local}" if i < 4 else f"{t}\n{shared}" + (f"\n{local}" if i == 4 else "")
        for i, t in enumerate(texts)
    ]
    batch = docs.set_column(
        docs.schema.get_field_index("text"), "text", pa.array(texts, docs.schema.field("text").type)
    )
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    outcomes = []
    for label, group_bytes in (("grouped", 10**9), ("per_shard", 1)):
        monkeypatch.setattr(shard_groups, "group_bytes", lambda total, target, size=group_bytes: size)
        context = InProcessContext(tmp_path / label, batch)
        decision = stage_registry()["line_dedup"](bucket_documents=4).prepare(context)
        written = list((tmp_path / label).glob("segments/*/work/lines/rows/_index/*.json"))
        assert len(written) == (1 if label == "grouped" else 2), (label, written)
        outcomes.append(_outcome(decision, context))
    assert outcomes[0] == outcomes[1]
    kept = {doc: text for doc, text, *_ in outcomes[0][0]}
    assert len(kept) == 8
    assert all(shared in text for text in kept.values()), "a line counted across buckets"
    assert not any(local in kept[f"doc{i}"] for i in range(4)), "the line frequent in bucket 0 was kept there"
    assert local in kept["doc4"], "the line frequent in bucket 0 was removed from bucket 1"


def test_group_bytes_keep_every_cpu_busy(monkeypatch):
    from refinery.dedup.shard_groups import GROUP_BYTES, group_bytes
    from refinery.pipelines import executor

    monkeypatch.setattr(executor, "session_resources", lambda: {"CPU": 4.0})
    assert group_bytes(10 * 2**40, 2**30) == GROUP_BYTES, "a large input: what one task may hold"
    assert group_bytes(10 * 2**40, 2**20) == 2**20, "never more than a partition's input"
    assert group_bytes(40 * 2**20, 2**30) == 5 * 2**20, "a small one: 8 groups for 4 CPUs"
    assert group_bytes(0, 2**30) == 1


class ResumableContext(InProcessContext):
    """An in-process context that remembers the phases marked done, as the runner's markers do."""

    def phase_done(self, phase: str) -> bool:
        return phase in self.phases


@pytest.mark.parametrize(
    ("name", "mapped", "reduced"), [("exact_dedup", "keys", "groups"), ("line_dedup", "lines", "counts")]
)
def test_a_resumed_reduce_reads_the_writers_the_map_phase_recorded(
    name,
    mapped,
    reduced,
    batches,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Killed after the map phase, resumed in a session whose CPUs would cut other groups: the reduce phase reads
    the writers the map phase wrote (its recorded results), not a recount (which would look for a missing
    writer), and the output matches a clean run."""
    from refinery.dedup import shard_groups

    batch = pa.concat_tables([batches["english"], batches["copies"], batches["doubled"]], promote_options="permissive")
    batch = batch.set_column(0, "id", pa.array([f"doc{i}" for i in range(batch.num_rows)]))
    stage = stage_registry()[name](**({"max_repeats": 1} if name == "line_dedup" else {}))
    monkeypatch.setattr(shard_groups, "group_bytes", lambda total, target: 10**9)
    clean = InProcessContext(tmp_path / "clean", batch)
    expected = _outcome(stage.prepare(clean), clean)
    context = ResumableContext(tmp_path / "resumed", batch)
    stage.prepare(context)
    context.phases = context.phases[: context.phases.index(mapped) + 1]  # the run died after the map phase
    monkeypatch.setattr(shard_groups, "group_bytes", lambda total, target: 1)  # now a group per shard
    decision = stage.prepare(context)
    writers = list((tmp_path / "resumed").glob(f"segments/*/work/{mapped}/rows/_index/*.json"))
    assert len(writers) == 1 and context.phases.count(mapped) == 1 and context.phases.count(reduced) == 1
    assert _outcome(decision, context) == expected
