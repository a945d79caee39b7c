"""Prompt templates as files: the rubric, its labels and how an answer maps to a label.

A prompt is a YAML file under ``classifiers/prompts/`` (or any path): ``template`` holds ``{text}``, ``labels`` the
label values in class order, ``answer_tokens`` what the teacher is asked to write for each label. When the first
tokens of the answers are distinct, a teacher can label from their probabilities after the prompt (one forward
pass, ``scoring: probabilities``); otherwise it generates and the answer is parsed. The prompt hash covers every
field, so editing a rubric never reuses labels given under the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from refinery.pipelines import storage

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
Task = Literal["binary", "ordinal", "multiclass"]


@dataclass(frozen=True)
class Prompt:
    """A labelling rubric: messages to send, the labels it allows and how answers map to labels."""

    name: str
    task: Task
    labels: list[str]
    answer_tokens: list[str]
    template: str
    system: str = ""
    scoring: Literal["probabilities", "generation"] = "probabilities"
    paraphrase_of: str | None = None
    label_names: dict[str, str] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        """16 hex digits over every field: labels cached under one rubric are never reused under another."""
        data = {k: getattr(self, k) for k in ("name", "task", "labels", "answer_tokens", "template", "system")}
        data["scoring"] = self.scoring
        return storage.fingerprint(data, 16)

    def messages(self, text: str) -> list[dict[str, str]]:
        """Chat messages for one document (``text`` already truncated)."""
        user = self.template.replace("{text}", text)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return [*messages, {"role": "user", "content": user}]

    def parse(self, answer: str) -> str | None:
        """The label a generated answer names (the earliest answer word in it), or None when it names none."""
        best: tuple[int, str] | None = None
        for label, token in zip(self.labels, self.answer_tokens, strict=True):
            for candidate in {token, label}:
                pattern = rf"(?<![\w]){re.escape(candidate)}(?![\w])"
                match = re.search(pattern, answer, flags=re.IGNORECASE)
                if match and (best is None or match.start() < best[0]):
                    best = (match.start(), label)
        return None if best is None else best[1]

    def score_of(self, probabilities: list[float]) -> float:
        """A scalar from label probabilities: expected value (ordinal), P(last label) (binary), max (multiclass)."""
        if self.task == "ordinal":
            return float(sum(float(label) * p for label, p in zip(self.labels, probabilities, strict=True)))
        if self.task == "binary":
            return float(probabilities[-1])
        return float(max(probabilities))

    def label_score(self, label: str) -> float:
        """The score of a hard label (a parsed answer): its value (ordinal), 0/1 (binary), 1 (multiclass)."""
        index = self.labels.index(label)
        if self.task == "ordinal":
            return float(label)
        return float(index) if self.task == "binary" else 1.0


def load_prompt(reference: str) -> Prompt:
    """A prompt by bundled name (``quality``, ``edu``, ``domain``, ``topic``, ``*_paraphrase``) or YAML path."""
    path = Path(reference)
    if not path.suffix:
        path = PROMPTS_DIR / f"{reference}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"prompt {reference!r} not found: give a YAML path or one of {names}")
    data = yaml.safe_load(path.read_text())
    prompt = Prompt(**data)
    if len(prompt.labels) != len(prompt.answer_tokens) or len(set(prompt.labels)) != len(prompt.labels):
        raise ValueError(f"{path}: labels and answer_tokens must be equally long, labels unique")
    if "{text}" not in prompt.template:
        raise ValueError(f"{path}: the template must contain {{text}}")
    if prompt.task == "ordinal" and not all(label.lstrip("-").isdigit() for label in prompt.labels):
        raise ValueError(f"{path}: ordinal labels must be integers")
    return prompt
