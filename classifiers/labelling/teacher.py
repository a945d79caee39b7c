"""What every teacher backend returns: one :class:`Answer` per document, failures included, never dropped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from refinery.classifiers.labelling.prompts import Prompt


@dataclass
class Answer:
    """The teacher's judgement of one document.

    ``label`` is None when the teacher failed (``error`` says why) or answered something that names no label
    (``error`` = ``unparseable``; ``raw_answer`` keeps what it said). ``probabilities`` are the label
    probabilities renormalised over the labels when the backend could read them, else None.
    """

    label: str | None
    score: float | None
    raw_answer: str
    error: str | None = None
    probabilities: list[float] | None = None


class Teacher(Protocol):
    """A labelling backend: ``name`` names model and backend in the label rows; ``identity()`` is what the label
    cache keys on (see ``run.cache_key``)."""

    name: str

    def identity(self) -> dict[str, Any]:
        """Everything that makes this teacher answer differently: backend, model (its files' digest for a local
        model, the endpoint for a server), the tokenizer that cuts documents, decoding settings."""
        ...

    def truncate(self, texts: list[str], max_tokens: int) -> list[str]:
        """Each text cut to at most ``max_tokens`` tokens of the teacher's tokenizer (or a stand-in)."""
        ...

    def label(self, prompt: Prompt, texts: list[str]) -> list[Answer]:
        """Answers aligned with ``texts``."""
        ...


def answer_from_probabilities(prompt: Prompt, probabilities: list[float], raw_answer: str) -> Answer:
    """Label = most probable label, score = the prompt's scalar over the renormalised probabilities."""
    total = sum(probabilities)
    if not total > 0:
        return Answer(None, None, raw_answer, "no probability mass on any label")
    normalised = [p / total for p in probabilities]
    best = max(range(len(normalised)), key=normalised.__getitem__)
    return Answer(prompt.labels[best], prompt.score_of(normalised), raw_answer, None, normalised)


def answer_from_text(prompt: Prompt, text: str) -> Answer:
    """Parse a generated answer; an answer naming no label is kept with ``error = 'unparseable'``."""
    label = prompt.parse(text)
    if label is None:
        return Answer(None, None, text, "unparseable")
    return Answer(label, prompt.label_score(label), text)
