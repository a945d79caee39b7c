"""Real text for the word-list tests: translated messages per language (``tests/fixtures/*.json``, built by
``scripts/build_marked_scripts_fixture.py``), listed entries spliced into them, and a batch of one language."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_sentences(name: str) -> dict[str, list[str]]:
    """The fixture's real sentences per language."""
    languages = json.loads((FIXTURES / name).read_text())["languages"]
    return {language: [entry["text"] for entry in chosen] for language, chosen in languages.items()}


def table(texts: list[str], language: str) -> pa.Table:
    return pa.table({"id": list(range(len(texts))), "text": texts, "lang": [language] * len(texts)})


def splice(words: list[str], listed: tuple[str, ...], times: int | None = None) -> str:
    """``times`` listed entries (default: each once, in turn) put between the words of a real text, at evenly
    spaced places."""
    times = len(listed) if times is None else times
    spliced = list(words)
    for k in range(times):
        spliced.insert((k + 1) * len(words) // (times + 1) + k, listed[k % len(listed)])
    return " ".join(spliced)
