"""The compiled fastText predictor gives ``fasttext``'s own labels and float32 scores, bit for bit.

``language_id`` used to call ``fasttext``'s ``predict`` on a Python list of clipped, space-normalised texts; it
now runs :mod:`refinery.filters.fasttext_kernels` over the batch's Arrow buffers. The reference in every test
here is the old path itself (``FastTextLanguageId._fasttext_predict``: ``fasttext`` on the same texts), compared
label for label and score bit for bit, on real documents (the sample corpus, recombined short pages like the
distinct corpus, the nine-language crawl fixture), on edge texts that exercise each rule of fastText's tokenizer
and n-gram hashing, and on small models trained here in the other layouts the kernel covers (dense; quantized with
and without norms, pruned n-grams, a quantized output matrix, an uneven last sub-vector). Models the kernel does
not implement keep ``fasttext`` (``test_models_the_kernel_does_not_implement_keep_fasttext``).
The stage's decisions are checked against the old ``process`` body kept here.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from refinery.filters.language_id import FastTextLanguageId, load_fasttext

REPO = Path(__file__).resolve().parents[1]
CRAWL = REPO / "tests" / "fixtures" / "multilingual_crawl"
FORMAT_GLOBS = {"warc": "*.warc.gz", "jsonl": "*.jsonl.zst", "parquet": "*.parquet"}

EDGE_TEXTS = [
    "",
    " ",
    "\t\n\r\f\v\x00",
    "\x00",
    "a\x00b\x00c",
    "\vWort\vund\vWort\v",
    "word\x0bword\x0cword\rword\tword",
    "The\u00a0quick\u00a0brown\u00a0fox jumps over the lazy dog",  # NBSP is not whitespace to either
    "line\u2028separated\u2029paragraph\x85next\u3000ideographic",
    "a" * 20_000,
    "ü" * 12_000,
    "😀" * 50,
    "👩‍👩‍👧 family emoji 🇩🇪 flags 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters 𠀀 plane two",
    "\ufeffByte order mark then text",
    "replacement \ufffd characters \ufffd and C1 \x80\x9f controls \U0010ffff",
    "e\u0301le\u0300ve decomposed accents",
    "日本語のテキストには空白がありません。これはテストです。",
    "中文文本没有空格" * 400,
    "Привет, мир! Это русский текст.",
    "</s>",
    "hello </s> world, this text goes on after the end-of-sentence token",
    "Das ist ein Satz </s>",
    "</s></s> x",
    "__label__de",
    "__label__en Hallo Welt, das ist Deutsch",
    "__label__",
    "x__label__y ist kein Label",
    "the and of to in is for with that on",  # in-vocabulary words
    "zxqvbnmw qwrtzpsd flkjhgxc",  # out-of-vocabulary words
    "word " * 3_000,  # past max_chars: clipped mid-document
    "é" * 9_999 + "x" * 5,  # the clip lands right after a multi-byte run
    "   leading and trailing   ",
    "tab\tseparated\tvalues\t1\t2\t3",
    "punctuation!!! ??? ... --- *** ### $$$ 100% 3.14159 2024-01-01",
]


def _texts_of(table: pa.Table) -> pa.Array:
    return pc.fill_null(table.column("text").combine_chunks(), "")


def assert_same_as_fasttext(stage: FastTextLanguageId, texts: pa.Array | pa.ChunkedArray) -> int:
    """Labels equal and scores equal bit for bit against fastText's predict; returns the number of texts."""
    assert stage.engine == "compiled", stage.engine_reason
    names, codes, scores = stage.predict_codes(texts)
    expected_languages, expected_scores = stage._fasttext_predict(texts)
    got = [names[code] for code in codes]
    wrong = [i for i, (a, b) in enumerate(zip(got, expected_languages, strict=True)) if a != b]
    assert not wrong, [(texts[i].as_py()[:80], got[i], expected_languages[i]) for i in wrong[:5]]
    bits, expected_bits = scores.view(np.uint32), expected_scores.view(np.uint32)
    wrong = np.flatnonzero(bits != expected_bits)
    assert wrong.size == 0, [(texts[int(i)].as_py()[:80], scores[i], expected_scores[i]) for i in wrong[:5]]
    return len(got)


@pytest.fixture(scope="module")
def stage() -> FastTextLanguageId:
    stage = FastTextLanguageId(min_score=0.0)
    stage.setup()
    return stage


def test_same_as_fasttext_on_the_sample_corpus(stage, real_documents):
    texts = _texts_of(real_documents)
    assert assert_same_as_fasttext(stage, texts) == len(texts) > 300
    assert len(set(real_documents.column("lang").to_pylist())) >= 8, "several languages and scripts"


def test_same_as_fasttext_on_short_distinct_pages(stage, real_documents):
    """3,000 pages recombined from the sample's sentences, one language per page, as the distinct corpus is."""
    rng = np.random.default_rng(19)
    by_language: dict[str, list[str]] = {}
    for text, lang in zip(
        _texts_of(real_documents).to_pylist(), real_documents.column("lang").to_pylist(), strict=True
    ):
        sentences = [s.strip() for s in re.split(r"(?<=[.!?。])\s+|\n+", text) if 20 <= len(s.strip()) <= 400]
        by_language.setdefault(lang, []).extend(sentences)
    pools = [pool for pool in by_language.values() if len(pool) >= 50]
    pages = []
    for _ in range(3_000):
        pool = pools[int(rng.integers(len(pools)))]
        paragraphs = [
            " ".join(pool[int(i)] for i in rng.integers(0, len(pool), size=int(rng.integers(1, 6))))
            for _ in range(int(rng.integers(2, 10)))
        ]
        pages.append("\n\n".join(paragraphs))
    assert len(pools) >= 5
    assert assert_same_as_fasttext(stage, pa.array(pages, pa.large_string())) == 3_000


def test_same_as_fasttext_on_the_multilingual_crawl(stage):
    from conftest import _read_all

    tables = [
        _read_all([path], fmt, path.name.split("-")[0])
        for fmt, pattern in FORMAT_GLOBS.items()
        for path in sorted((CRAWL / fmt).glob(pattern))
    ]
    texts = pa.chunked_array([_texts_of(table) for table in tables])  # one chunk per source
    assert texts.num_chunks == 9
    assert assert_same_as_fasttext(stage, texts) == len(texts)
    languages = set(stage.predict(texts)[0])
    assert {"de", "fr", "es", "ja", "ru", "zh", "pl", "nl", "en"} <= languages


def test_same_as_fasttext_on_edge_texts(stage):
    texts = pa.array([*EDGE_TEXTS, None], pa.string())
    assert assert_same_as_fasttext(stage, texts) == len(EDGE_TEXTS) + 1
    # the same texts as a sliced, chunked large_string column (non-zero array offsets)
    chunked = pa.chunked_array([pa.array(["pad", *EDGE_TEXTS[:10]], pa.large_string()).slice(1), EDGE_TEXTS[10:]])
    assert assert_same_as_fasttext(stage, chunked) == len(EDGE_TEXTS)
    short = FastTextLanguageId(min_score=0.0, max_chars=100)
    assert assert_same_as_fasttext(short, texts) == len(EDGE_TEXTS) + 1
    names, codes, scores = stage.predict_codes(pa.array(["", "__label__en"]))
    assert [names[c] for c in codes] == ["en", "en"] and scores[0] == scores[1], "nothing but </s> to read"


def test_stage_decisions_are_the_old_ones(stage, real_documents):
    """kept / rejected / reasons / lang / lang_score as the old ``process`` computed them from fastText."""
    options = {"languages": ["en", "de", "fr"], "min_score": 0.6, "min_score_by_language": {"de": 0.9, "fr": 0.3}}
    batch = real_documents.select(["id", "text", "source"])
    result = FastTextLanguageId(**options).process(batch)

    languages, scores = stage._fasttext_predict(batch.column("text"))  # the old process body, from here on
    thresholds = np.array([options["min_score_by_language"].get(x, options["min_score"]) for x in languages])
    wanted = np.isin(np.array(languages, dtype=object), options["languages"])
    confident = scores >= thresholds.astype(np.float32)
    reasons = np.where(~wanted, "language_id:language_not_kept", np.where(~confident, "language_id:low_score", None))
    keep = wanted & confident
    ids = np.array(batch.column("id").to_pylist(), dtype=object)
    assert result.kept.column("id").to_pylist() == ids[keep].tolist()
    assert result.kept.column("lang").to_pylist() == np.array(languages, dtype=object)[keep].tolist()
    assert result.kept.column("lang").type == pa.string() and result.kept.column("lang_score").type == pa.float32()
    assert np.array_equal(result.kept.column("lang_score").to_numpy().view(np.uint32), scores[keep].view(np.uint32))
    assert result.rejected.column("id").to_pylist() == ids[~keep].tolist()
    assert result.rejected.column("reason").to_pylist() == reasons[~keep].tolist()
    assert 0 < len(result.kept) < len(batch) and len(set(reasons[~keep])) == 2


# ---------------------------------------------------------------------------------- other model layouts


@pytest.fixture(scope="module")
def training_file(real_documents, tmp_path_factory) -> Path:
    """Real text labelled two ways: by source, and by one of 300 labels (a quantized output needs >= 256 rows)."""
    path = tmp_path_factory.mktemp("fasttext") / "train.txt"
    lines = []
    for index, (text, source) in enumerate(
        zip(_texts_of(real_documents).to_pylist(), real_documents.column("source").to_pylist(), strict=True)
    ):
        flat = re.sub(r"\s+", " ", text)
        lines += [f"__label__{source} {flat[:2000]}", f"__label__k{index % 300} {flat[:300]}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(training_file: Path, **options):
    """A small supervised model. ``thread=11``: fastText's ``DenseMatrix::uniform`` fills the input matrix in
    blocks of a tenth (rounded down), block ``i`` by thread ``i``, so with fewer than eleven threads part of it
    (at least the last ``size % 10`` floats) stays uninitialised: the "Encountered NaN" RESOURCES.md reports."""
    import fasttext

    params = {"dim": 16, "loss": "hs", "minn": 2, "maxn": 4, "bucket": 50_000, "epoch": 2, "thread": 11}
    return fasttext.train_supervised(str(training_file), verbose=0, **(params | options))


# options, then what the file must hold: (input quantized, norms, output quantized, sign(s) of pruneidx_size)
# A small cutoff keeps the highest-norm rows, most often words only (pruneidx_size 0: every n-gram dropped), but
# which rows win depends on the (multi-threaded, so not repeatable) training.
LAYOUTS = {
    "dense": ({}, (False, False, False, {-1})),
    "dense, words only (maxn 0), odd dim": ({"train": {"maxn": 0, "dim": 10}}, (False, False, False, {-1})),
    "quantized, norms, quantized output, pruned n-grams": (
        {"quantize": {"qnorm": True, "qout": True, "cutoff": 12_000}},
        (True, True, True, {1}),
    ),
    "quantized, small cutoff": ({"quantize": {"qnorm": True, "cutoff": 500}}, (True, True, False, {0, 1})),
    "quantized, no norms, uneven sub-vectors": ({"quantize": {"qnorm": False, "dsub": 3}}, (True, False, False, {-1})),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_same_as_fasttext_on_other_model_layouts(layout, training_file, real_documents, tmp_path):
    from refinery.filters.fasttext_model import read_model

    options, expected = LAYOUTS[layout]
    model = _train(training_file, **options.get("train", {}))
    quantize = options.get("quantize")
    if quantize is not None:
        model.quantize(input=str(training_file), retrain=False, **quantize)
    path = tmp_path / ("model.ftz" if quantize else "model.bin")
    model.save_model(str(path))
    held = read_model(path)
    layout_seen = (held.input.quantized, held.input.norm_codes is not None, held.output.quantized)
    assert layout_seen == expected[:3] and int(np.sign(held.pruneidx_size)) in expected[3]
    if quantize and not quantize["qnorm"]:
        assert held.input.pq.lastdsub != held.input.pq.dsub, "the last sub-vector is narrower"
    stage = FastTextLanguageId(model_path=str(path), min_score=0.0)
    texts = pa.concat_arrays([_texts_of(real_documents).slice(0, 400), pa.array(EDGE_TEXTS, pa.large_string())])
    assert assert_same_as_fasttext(stage, texts) == len(texts)


@pytest.mark.parametrize(
    ("options", "reason"),
    [({"loss": "softmax"}, "loss 3"), ({"wordNgrams": 2}, "wordNgrams=2"), ({"loss": "ova"}, "loss 4")],
)
def test_models_the_kernel_does_not_implement_keep_fasttext(options, reason, training_file, real_documents, tmp_path):
    path = tmp_path / "model.bin"
    _train(training_file, **options).save_model(str(path))
    stage = FastTextLanguageId(model_path=str(path), min_score=0.0)
    assert stage.engine == "fasttext" and reason in stage.engine_reason
    texts = _texts_of(real_documents).slice(0, 200)
    languages, scores = stage.predict(texts)
    flat = pc.replace_substring_regex(pc.utf8_slice_codeunits(texts, 0, stage.max_chars), r"\s+", " ").to_pylist()
    labels, probabilities = load_fasttext(path).predict(flat, k=1)
    assert languages == [label[0].removeprefix("__label__") for label in labels]
    assert np.array_equal(scores, np.array([p[0] for p in probabilities], dtype=np.float32))


def test_ties_go_to_the_leaf_fasttext_visits_last(training_file, real_documents, tmp_path):
    """With the output matrix zeroed every node's probability is 0.5: all leaves at the shallowest depth tie.

    fastText's heap (``push_heap``/``pop_heap`` with k = 1) keeps the later of two equal scores, so the answer is
    the last of those leaves in depth-first, left-first order; keeping the first instead gives another label.
    """
    from refinery.filters.fasttext_model import read_model

    dense = tmp_path / "model.bin"
    _train(training_file).save_model(str(dense))
    model = read_model(dense)
    data = bytearray(dense.read_bytes())
    size = model.output.rows * model.output.cols * 4
    data[len(data) - size :] = bytes(size)  # the output matrix is the file's last block of floats
    zeroed = tmp_path / "zeroed.bin"
    zeroed.write_bytes(bytes(data))
    assert not read_model(zeroed).output.dense.any()
    stage = FastTextLanguageId(model_path=str(zeroed), min_score=0.0)
    texts = _texts_of(real_documents).slice(0, 50)
    assert assert_same_as_fasttext(stage, texts) == 50
    assert len(set(stage.predict(texts)[0])) == 1, "every text ties the same way"


def test_the_environment_can_force_fasttext(monkeypatch, real_documents):
    monkeypatch.setenv("REFINERY_LANGUAGE_ID_ENGINE", "fasttext")
    forced = FastTextLanguageId(min_score=0.0)
    assert forced.engine == "fasttext" and "REFINERY_LANGUAGE_ID_ENGINE" in forced.engine_reason
    monkeypatch.delenv("REFINERY_LANGUAGE_ID_ENGINE")
    compiled = FastTextLanguageId(min_score=0.0)
    assert compiled.engine == "compiled" and compiled.engine_reason is None
    batch = real_documents.select(["id", "text", "source"]).slice(0, 300)
    assert forced.process(batch).kept.equals(compiled.process(batch).kept)


def test_a_nan_hidden_vector_is_handed_to_fasttext(training_file, real_documents, tmp_path):
    """fastText raises "Encountered NaN" when a dense dot product is NaN; the kernel flags the text and lets
    ``fasttext`` answer, so the stage fails the same way on the same texts (and only those)."""
    from refinery.filters.fasttext_model import read_model

    dense = tmp_path / "model.bin"
    _train(training_file).save_model(str(dense))
    model = read_model(dense)
    data = bytearray(dense.read_bytes())
    output_block = 1 + 16 + model.output.rows * model.output.cols * 4  # qout flag, rows/cols, floats: the file's end
    input_end = len(data) - output_block
    row = model.words.index(b"</s>")  # every text reads "</s>" last
    start = input_end - (model.input.rows - row) * model.dim * 4
    data[start : start + model.dim * 4] = np.full(model.dim, np.nan, dtype=np.float32).tobytes()
    poisoned = tmp_path / "nan.bin"
    poisoned.write_bytes(bytes(data))
    assert np.isnan(read_model(poisoned).input.dense[row]).all()
    stage = FastTextLanguageId(model_path=str(poisoned), min_score=0.0)
    assert stage.engine == "compiled"
    texts = _texts_of(real_documents).slice(0, 20)
    with pytest.raises(RuntimeError, match="NaN"):
        stage._fasttext_predict(texts)
    with pytest.raises(RuntimeError, match="NaN"):
        stage.predict_codes(texts)
    with pytest.raises(RuntimeError, match="NaN"):
        stage.process(real_documents.select(["id", "text", "source"]).slice(0, 20))


def test_invalid_utf8_fails_as_it_did(stage):
    """Arrow strings are not always valid UTF-8 (a Parquet column can hold any bytes). fastText's path failed the
    batch with Arrow's error; the kernel would read the bytes, so such a batch still takes fastText's path."""
    offsets = pa.py_buffer(np.array([0, 3, 8], dtype=np.int32).tobytes())
    invalid = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"ab\xffhello")])
    with pytest.raises(pa.ArrowInvalid, match="Invalid UTF8") as before:
        stage._fasttext_predict(invalid)
    with pytest.raises(pa.ArrowInvalid, match="Invalid UTF8") as now:
        stage.process(pa.table({"id": ["a", "b"], "text": invalid, "source": ["s", "s"]}))
    assert str(now.value) == str(before.value)
