"""Build ``tests/fixtures/marked_scripts.json``: real sentences in scripts whose words hold combining marks.

Devanagari (Hindi, Marathi, Nepali), Bengali, Tamil, Telugu and Thai write vowel signs, viramas and tone marks
as combining marks (Unicode ``\\p{M}``); the word-list stages must keep them inside words. The sample corpus has no
such text, so the fixture takes real translated messages from Debian's installed message catalogues (GLib's and
GTK 3's ``.mo`` files, packages ``libglib2.0-data`` and ``libgtk-3-common``; LGPL-2.1+ like the software): per
language, ``PER_LANGUAGE`` messages of at least ``MIN_WORDS`` space-separated words, each one a clean word (word
characters, then at most one closing punctuation mark), holding at least one combining mark, chosen at an even
stride over the messages sorted by catalogue and message id. Output is deterministic for the same package versions
(recorded in the file).

It also builds ``tests/fixtures/phrase_languages.json``: the same selection, without the combining-mark condition,
for Spanish, French and Arabic, the languages with the most multi-word list entries ("hijo de puta"), into which
the word-list tests splice such entries.

    .venv/bin/python scripts/build_marked_scripts_fixture.py   # --output DIR to write elsewhere
"""

from __future__ import annotations

import argparse
import gettext
import json
import subprocess
from pathlib import Path

import re2

CATALOGUES = {"glib20": "libglib2.0-data", "gtk30": "libgtk-3-common"}
LANGUAGES = ("hi", "mr", "ne", "bn", "ta", "te", "th")
PHRASE_LANGUAGES = ("es", "fr", "ar")
PER_LANGUAGE = 12
MIN_WORDS = 5
CLEAN_WORD = re2.compile(r"^[\p{L}\p{M}\p{N}]+[.,:;!?।]?$")
MARK = re2.compile(r"\p{M}")
REPO = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, str]:
    query = ["dpkg-query", "-W", "-f", "${Package} ${Version}\n", *CATALOGUES.values()]
    lines = subprocess.run(query, check=True, capture_output=True, text=True).stdout.splitlines()
    return dict(line.split(" ", 1) for line in lines)


def sentences(language: str, marked: bool = True) -> list[dict[str, str]]:
    found = []
    for catalogue in CATALOGUES:
        path = Path("/usr/share/locale") / language / "LC_MESSAGES" / f"{catalogue}.mo"
        with path.open("rb") as handle:
            messages = gettext.GNUTranslations(handle)._catalog
        for msgid, text in sorted((k, v) for k, v in messages.items() if isinstance(k, str) and k):
            tokens = text.split()
            if (
                len(tokens) >= MIN_WORDS
                and all(CLEAN_WORD.search(t) for t in tokens)
                and (MARK.search(text) or not marked)
            ):
                found.append({"catalogue": catalogue, "msgid": msgid, "text": " ".join(tokens)})
    stride = max(1, len(found) // PER_LANGUAGE)
    return found[::stride][:PER_LANGUAGE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "tests" / "fixtures", help="folder of the fixtures")
    args = parser.parse_args()
    for name, languages, marked in (
        ("marked_scripts.json", LANGUAGES, True),
        ("phrase_languages.json", PHRASE_LANGUAGES, False),
    ):
        fixture = {
            "source": "Debian 12 message catalogues under /usr/share/locale (translations of GLib and GTK 3)",
            "packages": package_versions(),
            "languages": {language: sentences(language, marked) for language in languages},
        }
        (args.output / name).write_text(json.dumps(fixture, ensure_ascii=False, indent=1, sort_keys=True) + "\n")
        for language, chosen in fixture["languages"].items():
            print(name, language, len(chosen), sum(len(s["text"]) for s in chosen))


if __name__ == "__main__":
    main()
