"""Our Gopher, C4 and FineWeb filters decide like datatrove's on the same real documents (>= 99%).

datatrove is the reference implementation FineWeb was built with; it tokenises with spaCy, we with one pass of
plain Python (``refinery.filters.text_stats``) that reproduces spaCy's prefix/suffix/infix rules. Measured on the
600 English documents below: gopher_quality 599/600, gopher_repetition, c4_quality and fineweb_quality 600/600.
The classes of disagreement found while building it, all at a threshold's edge:

* file names with a hyphen (``Contents-arch.gz``): spaCy keeps them whole through its URL-like token match, we
  split the hyphen; on a page of file names this moves the alphabetic-word ratio across Gopher's 0.8 (the one
  remaining disagreement);
* emoticon-like punctuation (``):``), ``cannot`` before punctuation, ``''`` quotes, ``asyncio.Runner``:
  spaCy exceptions we now reproduce;
* sentence counting for C4: spaCy's sentencizer and ours agree on every page here.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from refinery.filters.c4 import C4QualityFilter
from refinery.filters.fineweb import FineWebQualityFilter
from refinery.filters.gopher import GopherQualityFilter, GopherRepetitionFilter

SAMPLE_SIZE = 600


@pytest.fixture(scope="module")
def english(real_documents):
    documents = real_documents.filter(pc.equal(real_documents.column("lang"), "en"))
    return documents.slice(0, SAMPLE_SIZE).column("text").to_pylist()


def datatrove_decisions(datatrove_filter, texts: list[str]) -> list[bool]:
    from datatrove.data import Document

    decisions = []
    for index, text in enumerate(texts):
        verdict = datatrove_filter.filter(Document(text=text, id=str(index)))
        decisions.append(verdict is True or (isinstance(verdict, tuple) and verdict[0]))
    return decisions


def our_decisions(stage, texts: list[str]) -> list[bool]:
    return [
        stage.first_failure(text) is None if hasattr(stage, "first_failure") else stage.clean(text)[0] is not None
        for text in texts
    ]


PAIRS = [
    ("gopher_quality", GopherQualityFilter, "datatrove.pipeline.filters", "GopherQualityFilter"),
    ("gopher_repetition", GopherRepetitionFilter, "datatrove.pipeline.filters", "GopherRepetitionFilter"),
    ("c4_quality", C4QualityFilter, "datatrove.pipeline.filters", "C4QualityFilter"),
    ("fineweb_quality", FineWebQualityFilter, "datatrove.pipeline.filters", "FineWebQualityFilter"),
]


@pytest.mark.parametrize(("name", "ours", "module", "theirs"), PAIRS, ids=[p[0] for p in PAIRS])
def test_decisions_agree_with_datatrove(english, name, ours, module, theirs):
    import importlib

    reference = getattr(importlib.import_module(module), theirs)()
    expected = datatrove_decisions(reference, english)
    got = our_decisions(ours(), english)
    agreement = sum(a == b for a, b in zip(expected, got, strict=True)) / len(english)
    assert len(english) >= 300
    assert 0.02 < sum(expected) / len(expected) < 0.98 or name == "gopher_repetition", "a test set that decides"
    assert agreement >= 0.99, f"{name}: {agreement:.3%} agreement"
