"""fastText student (Llama 3's quality classifier kind): word uni- and bigrams, a linear softmax, saved as ``.bin``.

Texts are lower-cased and flattened to one line (fastText reads one example per line) and clipped to
``max_chars``. Training uses one thread, so the same data and seed give the same model. ``bucket`` and ``dim`` are
small by default: a label set of a few thousand documents needs no 2M-bucket table, and the model stays a few MB.
"""

from __future__ import annotations

import multiprocessing
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from refinery.classifiers.students.base import read_config, write_config

PREFIX = "__label__"
SPACE = re.compile(r"\s+")
MODEL_FILE = "model.bin"


def normalise(text: str, max_chars: int) -> str:
    return SPACE.sub(" ", (text or "")[:max_chars]).strip().lower()


def _quiet_fasttext() -> Any:
    import fasttext

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    return fasttext


def _train_to_file(train_file: str, model_file: str, lr: float, params: dict[str, Any]) -> float:
    """Train and save; fastText diverges (``Encountered NaN``) now and then on small sets: halve lr and retry."""
    fasttext = _quiet_fasttext()
    for _ in range(4):
        try:
            model = fasttext.train_supervised(input=train_file, lr=lr, **params)
        except RuntimeError as error:
            if "NaN" not in str(error):
                raise
            lr /= 2
            continue
        model.save_model(model_file)
        return lr
    raise RuntimeError(f"fastText training diverged down to lr={lr}")


class FastTextStudent:
    kind = "fasttext"

    def __init__(self, model: Any, config: dict[str, Any]) -> None:
        self.model = model
        self.config = config
        self.task = config["task"]
        self.classes = config["classes"]
        self.max_chars = config["max_chars"]

    @classmethod
    def train(
        cls,
        texts: list[str],
        labels: np.ndarray,
        classes: list[str],
        task: str,
        output: str | Path,
        prompt: str = "",
        epoch: int = 25,
        lr: float = 0.5,
        word_ngrams: int = 2,
        dim: int = 16,
        bucket: int = 20_000,
        min_count: int = 2,
        max_chars: int = 6000,
        seed: int = 0,
    ) -> FastTextStudent:
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as handle:
            for text, label in zip(texts, labels, strict=True):
                handle.write(f"{PREFIX}{label} {normalise(text, max_chars)}\n")
            train_file = handle.name
        params = {"epoch": epoch, "wordNgrams": word_ngrams, "dim": dim, "bucket": bucket, "minCount": min_count}
        params |= {"thread": 1, "seed": seed, "verbose": 0}
        try:
            # a fresh process: after torch has run in this one, fastText's training diverges (NaN) at any lr
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                lr = pool.apply(_train_to_file, (train_file, str(output / MODEL_FILE), lr, params))
        finally:
            Path(train_file).unlink()
        model = _quiet_fasttext().load_model(str(output / MODEL_FILE))
        config = {
            "kind": cls.kind,
            "task": task,
            "classes": classes,
            "prompt": prompt,
            "max_chars": max_chars,
            "weights": MODEL_FILE,
            "training": {
                "documents": len(texts),
                "epoch": epoch,
                "lr": lr,
                "word_ngrams": word_ngrams,
                "dim": dim,
                "bucket": bucket,
                "min_count": min_count,
                "seed": seed,
            },
        }
        write_config(output, config)
        return cls(model, config)

    @classmethod
    def load(cls, model_dir: str | Path) -> FastTextStudent:
        config = read_config(model_dir)
        return cls(_quiet_fasttext().load_model(str(Path(model_dir) / config["weights"])), config)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities in ``classes`` order (fastText's labels are class indices)."""
        lines = [normalise(t, self.max_chars) for t in texts]
        labels, probabilities = self.model.predict(lines, k=-1)
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        for row, (names, values) in enumerate(zip(labels, probabilities, strict=True)):
            for name, value in zip(names, values, strict=True):
                out[row, int(name[len(PREFIX) :])] = value
        return out
