"""Every registered stage meets every batch shape and returns a full result whose books balance.

For each stage ``refinery stages`` lists (a global stage through the map stage its ``prepare()`` returns, its
phases run in-process over the batch written as shard files), four shapes of real documents from the sample:

* an **empty** batch;
* a batch in a **language the stage does not apply to** (non-English handbook pages; a language-aware stage is
  also run with ``only_languages: [en]``, which must pass them through untouched: the defect that failed the
  default recipe on any non-English crawl);
* a batch it **rejects whole** (parameters or documents chosen so every document fails; a dedup stage gets
  copies of one document and must keep exactly one);
* a batch it **keeps whole**.

Each must return ``kept`` and ``rejected`` tables (never None; ``errored`` a table or None), every input id in
exactly one of them, rejected rows with a ``stage:rule`` reason, and ``in = kept + rejected + errored``. A new
stage without a case here fails :func:`test_every_registered_stage_has_cases`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from refinery.pipelines.per_language import LanguageAwareMapStage
from refinery.pipelines.stages import GlobalStage, MapStage, ShardInfo, StageResult, stage_registry

EDU = "package:refinery.classifiers/models/edu_fasttext"
DOMAIN = "package:refinery.classifiers/models/domain_fasttext"
TOPIC = "package:refinery.classifiers/models/topic_fasttext"
BATCH = 10

ALL = "all"  # every document rejected
ALL_BUT_ONE = "all_but_one"  # a dedup stage on copies of one document keeps exactly one


@dataclass(frozen=True)
class Case:
    """How to make one stage reject a whole batch and keep a whole batch (None: the stage never rejects)."""

    base: dict[str, Any] = field(default_factory=dict)
    reject: tuple[dict[str, Any], str, str] | None = None  # (parameters, batch, expectation)
    keep: tuple[dict[str, Any], str] = ({}, "english")
    needs: tuple[str, ...] = ()  # map stages run first to add the columns the stage reads


CASES: dict[str, Case] = {
    "length": Case(reject=({"min_chars": 10**9}, "english", ALL), keep=({"min_chars": 0}, "english")),
    "language_id": Case(reject=({"languages": ["en"]}, "foreign", ALL), keep=({"min_score": 0.0}, "foreign")),
    "url_blocklist": Case(reject=({"extra_domains": ["docs.python.org"]}, "english", ALL)),
    "adult_words": Case(reject=({"max_count": 0, "max_density": 0.0}, "listed_words", ALL)),
    "dirty_words": Case(reject=({"max_count": 0, "max_density": 0.0}, "listed_words", ALL)),
    "line_ngram_repetition": Case(reject=({}, "repeated_line", ALL)),
    "gopher_repetition": Case(
        reject=({}, "doubled", ALL),
        keep=(
            {
                "dup_line_frac": None,
                "dup_para_frac": None,
                "dup_line_char_frac": None,
                "dup_para_char_frac": None,
                "top_n_grams": [],
                "dup_n_grams": [],
            },
            "english",
        ),
    ),
    "gopher_quality": Case(
        reject=({"min_doc_words": 10**9}, "english", ALL),
        keep=(
            {
                "min_doc_words": None,
                "max_doc_words": None,
                "min_avg_word_length": None,
                "max_avg_word_length": None,
                "max_symbol_word_ratio": None,
                "max_bullet_lines_ratio": None,
                "max_ellipsis_lines_ratio": None,
                "min_alpha_words_ratio": None,
                "min_stop_words": None,
            },
            "english",
        ),
    ),
    "c4_quality": Case(
        reject=({"min_num_sentences": 10**9}, "english", ALL),
        keep=(
            {
                "min_num_sentences": -1,
                "min_words_per_line": -1,
                "filter_no_terminal_punct": False,
                "filter_javascript": False,
                "filter_curly_bracket": False,
                "filter_policy": False,
                "filter_lorem_ipsum": False,
                "max_word_length": -1,
            },
            "english",
        ),
    ),
    "fineweb_quality": Case(
        reject=({"short_line_length": 10**9, "short_line_thr": 0.0}, "english", ALL),
        keep=(
            {"line_punct_thr": 0.0, "short_line_thr": 1.1, "char_duplicates_ratio": 1.1, "new_line_ratio": 10**9},
            "english",
        ),
    ),
    "pii": Case(reject=({"max_emails": 0}, "emails", ALL)),
    "token_count": Case(),
    "embed": Case(),
    "quality_classifier": Case(base={"model_path": EDU}, reject=({"min_score": 10**9}, "english", ALL)),
    "domain_classifier": Case(base={"domain_model_path": DOMAIN, "topic_model_path": TOPIC}),
    "url_dedup": Case(reject=({}, "copies", ALL_BUT_ONE)),
    "exact_dedup": Case(reject=({}, "copies", ALL_BUT_ONE)),
    "minhash_dedup": Case(reject=({}, "copies", ALL_BUT_ONE)),
    "line_dedup": Case(reject=({"max_repeats": 1}, "copies", ALL)),
    "token_kl": Case(reject=({"max_kl": 1e-9}, "english", ALL), keep=({"max_kl": 1e9}, "english")),
    # a percentile can never reject a whole corpus: the best document is at or above any quantile of it
    "quality_percentile": Case(
        base={"model_path": EDU, "min_percentile": 0.5},
        reject=({"min_percentile": 0.99}, "english", ALL_BUT_ONE),
        keep=({}, "copies"),
    ),
    "semantic_dedup": Case(base={"n_clusters": 2}, reject=({}, "copies", ALL_BUT_ONE), needs=("embed",)),
}


def test_every_registered_stage_has_cases():
    assert sorted(CASES) == sorted(stage_registry()), "a registered stage has no batch-shape cases here"


# ------------------------------------------------------------------------------------------------ the batches


@pytest.fixture(scope="module")
def batches(real_documents: pa.Table) -> dict[str, pa.Table]:
    """Real documents in each shape a stage must meet (ids unique within each batch)."""

    def where(source: str, english: bool) -> pa.Table:
        rows = real_documents.filter(pc.equal(real_documents["source"], source))
        lang = pc.equal(rows["lang"], "en")
        return rows.filter(lang if english else pc.invert(lang))

    english = where("python_docs", True).slice(0, BATCH)
    foreign = where("debian_handbook", False).slice(0, BATCH)
    copyright = where("debian_copyright", True)
    emails = copyright.filter(pc.match_substring(copyright["text"], "@")).slice(0, BATCH)
    one = where("postgresql_docs", True).slice(0, 1)
    copies = pa.concat_tables([one] * BATCH)
    copies = copies.set_column(0, "id", pa.array([f"{one['id'][0].as_py()}-copy{i}" for i in range(BATCH)]))
    doubled_text = [f"{t}\n\n{t}" for t in english["text"].to_pylist()]
    # one long line of a real sentence's words said three times: a log line, all the document has
    repeated_text = [" ".join(t.split()[:30] * 3) for t in english["text"].to_pylist()]
    doubled = english.set_column(
        english.schema.get_field_index("text"), "text", pa.array(doubled_text, pa.large_string())
    )
    assert foreign.num_rows == emails.num_rows == BATCH and len(set(foreign["lang"].to_pylist())) > 1
    return {
        "empty": english.slice(0, 0),
        "english": english,
        "foreign": foreign,
        "emails": emails,
        "copies": copies,
        "doubled": doubled,
        "repeated_line": with_texts(english, repeated_text),
    }


def with_texts(batch: pa.Table, texts: list[str]) -> pa.Table:
    return batch.set_column(batch.schema.get_field_index("text"), "text", pa.array(texts, pa.large_string()))


def shape(name: str, stage: GlobalStage | MapStage, batches: dict[str, pa.Table]) -> pa.Table:
    """The batch called ``name``; ``listed_words`` is English text with the stage's own listed words added."""
    if name != "listed_words":
        return batches[name]
    english = batches["english"]
    words = " ".join(sorted(stage.words_for("en"))[:40])
    return with_texts(english, [f"{t}\n{words}" for t in english["text"].to_pylist()])


# ------------------------------------------------------------------------- global stages, phases in-process


class InProcessContext:
    """The :class:`~refinery.pipelines.stages.GlobalContext` a global stage gets, with its map run in-process.

    The batch is split into two shard files (the second may be empty) so every phase meets several shards.
    """

    def __init__(self, root: Path, batch: pa.Table) -> None:
        self.segment_index = 1
        self.seed = 0
        self.batch_size = 500
        self.work_dir = str(root / "segments" / "01" / "work")
        os.makedirs(self.work_dir, exist_ok=True)
        kept = root / "segments" / "00" / "kept"
        kept.mkdir(parents=True, exist_ok=True)
        half = (batch.num_rows + 1) // 2
        source = batch["source"][0].as_py() if batch.num_rows else "empty"
        self.shard_names = [f"{source}--a", f"{source}--b"]  # decisions find a batch's shard by its source
        self.parts = dict(zip(self.shard_names, (batch.slice(0, half), batch.slice(half)), strict=True))
        for name, part in self.parts.items():
            pq.write_table(part, self.input_path(name))
        self.phases: list[str] = []

    def input_path(self, shard_name: str) -> str:
        return str(Path(self.work_dir).parents[1] / "00" / "kept" / f"{shard_name}.parquet")

    def map(self, function: Callable[..., Any], items: list[Any]) -> list[Any]:
        return [function(item) for item in items]

    def phase_done(self, phase: str) -> bool:
        return False

    def mark_phase_done(self, phase: str, outputs: list[str] | None = None) -> None:
        self.phases.append(phase)


def merge(results: list[StageResult]) -> StageResult:
    """Per-shard results as one (the runner keeps them per shard; the books are the same)."""

    def concat(tables: list[pa.Table | None]) -> pa.Table | None:
        present = [t for t in tables if t is not None]
        return pa.concat_tables(present, promote_options="permissive") if present else None

    for result in results:  # every per-shard result must itself be complete
        assert isinstance(result.kept, pa.Table) and isinstance(result.rejected, pa.Table)
    return StageResult(
        kept=concat([r.kept for r in results]),
        rejected=concat([r.rejected for r in results]),
        errored=concat([r.errored for r in results]),
    )


def run(name: str, parameters: dict[str, Any], batch: pa.Table, root: Path) -> StageResult:
    """``batch`` through stage ``name`` (and the stages it needs first); the books checked before returning.

    A global stage runs its phases over the batch split into two shards, then its decision per shard as the
    shard task does (``begin_shard`` first, naming the shard).
    """
    case = CASES[name]
    registry = stage_registry()
    for needed in case.needs:
        helper = registry[needed]()
        helper.setup()
        batch = helper.process(batch).kept
    stage = registry[name](**{**case.base, **parameters})
    if isinstance(stage, MapStage):
        stage.setup()
        result = stage.process(batch)
    else:
        context = InProcessContext(root, batch)
        decision = stage.prepare(context)
        assert isinstance(decision, MapStage), f"{name}.prepare() returned {type(decision).__name__}"
        assert context.phases, f"{name} ran no phase"
        result = decide_every_shard(decision, context)
    check_books(name, batch, result)
    return result


def decide_every_shard(decision: MapStage, context: InProcessContext) -> StageResult:
    """A global stage's decision run over every shard of ``context``, in order, merged into one result."""
    decision.setup()
    results = []
    for position, (shard_name, part) in enumerate(context.parts.items()):
        decision.begin_shard(ShardInfo(key=shard_name, source=shard_name.split("--")[0], position=position))
        results.append(decision.process(part))
    return merge(results)


def check_books(name: str, batch: pa.Table, result: StageResult) -> None:
    assert isinstance(result, StageResult), name
    assert isinstance(result.kept, pa.Table), f"{name}: kept is {result.kept!r}"
    assert isinstance(result.rejected, pa.Table), f"{name}: rejected is {result.rejected!r}"
    assert result.errored is None or isinstance(result.errored, pa.Table), name
    assert result.kept.num_rows + result.rejected.num_rows + result.num_errored == batch.num_rows, name
    ids = result.kept["id"].to_pylist() + result.rejected["id"].to_pylist()
    if result.errored is not None:
        ids += result.errored["id"].to_pylist()
    assert sorted(ids) == sorted(batch["id"].to_pylist()), f"{name}: documents lost or duplicated"
    assert "reason" in result.rejected.column_names, name
    reasons = result.rejected["reason"].to_pylist()
    assert all(r and r.startswith(f"{name}:") for r in reasons), f"{name}: reasons {set(reasons)}"
    if result.kept.num_rows:
        added = {f.name for f in stage_registry()[name](**CASES[name].base).added_columns()}
        assert added <= set(result.kept.column_names), f"{name}: kept rows lack {added}"


# ----------------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", sorted(CASES))
def test_empty_batch(name, batches, tmp_path):
    result = run(name, {}, batches["empty"], tmp_path)
    assert result.kept.num_rows == result.rejected.num_rows == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_in_a_language_the_stage_does_not_apply_to(name, batches, tmp_path):
    foreign = batches["foreign"]
    run(name, {}, foreign, tmp_path / "default")
    if issubclass(stage_registry()[name], LanguageAwareMapStage):
        result = run(name, {"only_languages": ["en"]}, foreign, tmp_path / "only_en")
        assert result.kept["id"].to_pylist() == foreign["id"].to_pylist(), "other languages must pass untouched"
        assert result.kept["text"].to_pylist() == foreign["text"].to_pylist()


ANNOTATORS = {"token_count", "embed", "domain_classifier"}  # add columns, reject nothing


def test_only_annotators_lack_a_reject_case():
    assert {name for name, case in CASES.items() if case.reject is None} == ANNOTATORS


@pytest.mark.parametrize("name", sorted(set(CASES) - ANNOTATORS))
def test_batch_it_rejects_whole(name, batches, tmp_path):
    case = CASES[name]
    assert case.reject is not None
    parameters, shape_name, expectation = case.reject
    batch = shape(shape_name, stage_registry()[name](**CASES[name].base), batches)
    result = run(name, parameters, batch, tmp_path)
    expected = batch.num_rows if expectation == ALL else batch.num_rows - 1
    assert result.rejected.num_rows == expected, f"{name} rejected {result.rejected.num_rows} of {batch.num_rows}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_it_keeps_whole(name, batches, tmp_path):
    parameters, shape_name = CASES[name].keep
    batch = batches[shape_name]
    result = run(name, parameters, batch, tmp_path)
    assert result.kept.num_rows == batch.num_rows, f"{name} kept {result.kept.num_rows} of {batch.num_rows}"
