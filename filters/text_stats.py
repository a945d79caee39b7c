"""Fast text statistics shared by the heuristic filters (Gopher, C4, FineWeb, Llama 3 extras).

datatrove splits words with spaCy's blank English tokenizer, which is most of its filters' cost (~55 docs/s per
core here for its four-filter chain). :func:`words` reproduces what matters of that tokenisation with one
compiled regex: URLs, abbreviations such as ``U.S.`` and ``e.g.``, decimals and ``n't``/``'s`` contractions stay
tokens as spaCy makes them, hyphens and other punctuation become their own tokens, runs of dots and dashes stay
whole. Decisions agree with datatrove's on the real documents of the tests (see
``tests/test_filters_datatrove_agreement.py``). Results are cached per text, so consecutive filters in a fused
segment tokenise a document once.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

CHUNK = re.compile(r"\S+")
_PUNCT = set("…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪") | set("'\"”“`‘´’‚„»«「」『』（）〔〕【】《》〈〉")
PREFIXES = _PUNCT | set("§%=—–$£€¥")
SUFFIXES = _PUNCT | set("%°—–™®©+")
EXCEPTIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "inc", "ltd", "jr", "sr", "no", "fig", "vol", "pp",
              "e.g", "i.e", "approx", "dept", "est", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
              "oct", "nov", "dec", "mt", "co", "corp"}  # fmt: skip
WHOLE = {"and/or"}
DOUBLE_QUOTES = {"''", "``"}
SPLIT_WORDS = {"cannot": ["can", "not"], "Cannot": ["Can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"]}
PRONOUNS = {"i", "you", "he", "she", "it", "we", "they", "that", "there", "who", "what", "where", "how", "this"}
INFIX = re.compile(
    r"(?<=[^\W_])(-|--|—|–|~)(?=[^\W\d_])"  # hyphens before a letter: state-of-the-art, 32-bit
    r"|(?<=[^\W_])([:<>=/])(?=[^\W\d_])"  # a:b, x=y, he/she
    r"|(?<=[^\W\d_]),(?=[^\W\d_])"  # a,b
    r"|(?<=\d)([+\-*^])(?=[\d-])"  # 1-8, 2+2
    r"|(?<=[a-z])(\.)(?=[A-Z])"  # asyncio.Runner
)
ABBREVIATION = re.compile(r"^(?:[^\W\d_]\.)+[^\W\d_]$|^[^\W\d_]$")
#: clitics split off a word's end (case-insensitively, as ``re``'s ``(?i)`` matches them) ...
CLITICS = ("n't", "n’t", "'s", "'re", "'ll", "'ve", "'d", "'m", "’s")
#: ... always for these (lower-cased), for the others only after a pronoun (``they're``, ``I'm``)
ALWAYS_SPLIT_CLITICS = ("'s", "’s", "n't", "n’t")
CONTRACTION = re.compile(r"(?i)^(.+?)(" + "|".join(CLITICS) + r")$")
DOTS = re.compile(r"\.{2,}$")
URL_LIKE = re.compile(r"@|://|^www\.")
#: datatrove's PUNCTUATION_SET (its ``utils.text``), used to tell symbol tokens from words.
PUNCTUATION = frozenset(
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(chr(x) for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))
)
SENTENCE_END = {".", "!", "?", "。", "！", "？", "．", "…"}


def tokenize(text: str) -> tuple[str, ...]:
    """Word tokens of ``text`` (punctuation tokens included), as spaCy's blank English tokenizer cuts them.

    Whitespace chunks lose prefix and suffix punctuation one mark at a time (``...`` stays whole; a final ``.``
    stays on abbreviations, single letters and known short forms); hyphens, slashes and colons between letters
    split; ``n't`` and ``'s``-style clitics split off; e-mail addresses and URLs stay whole. Plain words, the
    large majority, are found in one C-speed pass and copied over in slices; the other chunks repeat a lot across
    documents (``*``, ``-``, ``(c)``, ``file.``), so their split is memoised per process (:func:`split_chunk`).
    """
    chunks = text.split()
    special = np.flatnonzero(~np.fromiter(map(str.isalnum, chunks), dtype=bool, count=len(chunks)))
    if not SPLIT_WORDS.keys().isdisjoint(chunks):
        special = np.union1d(special, [i for i, chunk in enumerate(chunks) if chunk in SPLIT_WORDS])
    if special.size == 0:
        return tuple(chunks)
    # plain words go over in slices (C speed); only the other chunks are looked at one by one
    tokens: list[str] = []
    extend = tokens.extend
    cached = _CHUNK_TOKENS.get
    start = 0
    for index in special.tolist():
        extend(chunks[start:index])
        chunk = chunks[index]
        parts = cached(chunk)
        extend(parts if parts is not None else split_chunk(chunk))
        start = index + 1
    extend(chunks[start:])
    return tuple(tokens)


#: chunk -> its tokens, for chunks that are not a plain word; cleared when full (bounded memory).
_CHUNK_TOKENS: dict[str, tuple[str, ...]] = {}
CHUNK_CACHE_SIZE = 200_000


def split_chunk(chunk: str) -> tuple[str, ...]:
    """The tokens of one whitespace chunk that is not a plain word, memoised (a pure function of the chunk)."""
    stem = chunk[:-1]
    if chunk[-1] in ",;:!?)" and stem.isalnum() and stem not in SPLIT_WORDS:
        parts: tuple[str, ...] = (stem, chunk[-1])
    elif chunk[-1] == "." and len(stem) > 1 and stem.isalnum() and stem not in SPLIT_WORDS and not _keeps_period(stem):
        parts = (stem, ".")  # a word ending a sentence
    else:
        parts = tuple(_split_chunk(chunk))
    if len(_CHUNK_TOKENS) >= CHUNK_CACHE_SIZE:
        _CHUNK_TOKENS.clear()
    _CHUNK_TOKENS[chunk] = parts
    return parts


@lru_cache(maxsize=1024)
def words(text: str) -> tuple[str, ...]:
    """:func:`tokenize`, cached: consecutive filters of a fused segment tokenise a document once."""
    return tokenize(text)


def _split_chunk(chunk: str) -> list[str]:
    if (chunk[0] == "." and chunk.strip(".") == "") or chunk in DOUBLE_QUOTES:
        return [chunk]
    prefix: list[str] = []
    while len(chunk) > 1 and chunk[0] in PREFIXES:
        width = 2 if chunk[:2] in DOUBLE_QUOTES and len(chunk) > 2 else 1
        prefix.append(chunk[:width])
        chunk = chunk[width:]
    suffix: list[str] = []
    while len(chunk) > 1:
        dots = DOTS.search(chunk) if chunk.endswith("..") else None
        if dots and dots.start() > 0:
            suffix.append(dots.group())
            chunk = chunk[: dots.start()]
        elif chunk[-2:] in DOUBLE_QUOTES and len(chunk) > 2:
            suffix.append(chunk[-2:])
            chunk = chunk[:-2]
        elif chunk[-1] in SUFFIXES:
            suffix.append(chunk[-1])
            chunk = chunk[:-1]
        elif chunk[-1] == "." and not _keeps_period(chunk[:-1]):
            suffix.append(".")
            chunk = chunk[:-1]
        else:
            break
    return prefix + _core(chunk) + suffix[::-1]


def _core(chunk: str) -> list[str]:
    if not chunk:
        return []
    if chunk in SPLIT_WORDS:
        return SPLIT_WORDS[chunk]
    match = CONTRACTION.match(chunk) if "'" in chunk or "’" in chunk else None
    if match:
        stem, clitic = match.groups()
        lowered = clitic.lower()
        if lowered in ALWAYS_SPLIT_CLITICS or stem.lower() in PRONOUNS:
            return [*_infix(stem), clitic]
    return _infix(chunk)


def _keeps_period(stem: str) -> bool:
    return bool(ABBREVIATION.match(stem)) or stem.lower() in EXCEPTIONS


def _infix(core: str) -> list[str]:
    if core.isalnum():  # no infix mark, no URL mark: one token (the common case, without a regex)
        return [core]
    if core in WHOLE or URL_LIKE.search(core) or not INFIX.search(core):
        return [core]
    return [part for part in INFIX.split(core) if part]


def is_symbol(token: str) -> bool:
    """True when every character is punctuation (datatrove's non-symbol-word test, negated)."""
    return PUNCTUATION.issuperset(token)


def count_sentences(tokens: tuple[str, ...] | list[str]) -> int:
    """Sentences as spaCy's sentencizer cuts them: a new one starts at the first non-punctuation token after a
    terminal mark."""
    if not tokens:
        return 0
    sentences = 1
    seen_end = False
    for token in tokens[1:]:
        if token in SENTENCE_END:
            seen_end = True
        elif seen_end and not is_symbol(token):
            sentences += 1
            seen_end = False
    return sentences


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated elements, characters in them), counting every repeat after the first occurrence."""
    seen: set[str] = set()
    repeated = repeated_chars = 0
    for item in items:
        if item in seen:
            repeated += 1
            repeated_chars += len(item)
        else:
            seen.add(item)
    return repeated, repeated_chars


def token_ids(tokens: tuple[str, ...]) -> np.ndarray:
    """One 64-bit id per token (Python's string hash, cached on the string: equal tokens, equal ids)."""
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens))


def ngram_ids(ids: np.ndarray, n: int) -> np.ndarray:
    """One 64-bit id per n-gram of token ids (a polynomial hash; collisions are negligible per document)."""
    if len(ids) < n:
        return np.empty(0, dtype=np.int64)
    length = len(ids) - n + 1
    combined = np.zeros(length, dtype=np.int64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            combined = combined * np.int64(1_000_003) + ids[offset : offset + length] + 1
    return combined


def window_sums(values: np.ndarray, n: int) -> np.ndarray:
    """Sum of every run of ``n`` consecutive values."""
    if len(values) < n:
        return np.empty(0, dtype=np.int64)
    cumulative = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return cumulative[n:] - cumulative[:-n]


@lru_cache(maxsize=1)
def sentence_terminals() -> tuple[str, ...]:
    """Characters that end a sentence in any script (Unicode's Sentence_Terminal, by character name).

    ``.``, ``!``, ``?``, ``。``, ``！``, ``？``, the Devanagari danda, the Arabic question mark, ... Built from
    ``unicodedata`` at first use, so it follows the Python's Unicode version.
    """
    import unicodedata

    marks = ("FULL STOP", "QUESTION MARK", "EXCLAMATION MARK", "DANDA", "INTERROBANG")
    found = []
    for code in range(0x20000):
        char = chr(code)
        if unicodedata.category(char).startswith("P"):
            name = unicodedata.name(char, "")
            if any(mark in name for mark in marks) and "INVERTED" not in name and "LEFT" not in name:
                found.append(char)
    return tuple(found)


def split_lines(text: str) -> list[str]:
    """``re.split(r"\\n+", text)`` with ``str.split``: non-empty lines, plus the empty first / last element that
    the regex gives for a text starting / ending with a newline (several times faster on long pages)."""
    lines = [line for line in text.split("\n") if line]
    if not text or text[0] == "\n":
        lines.insert(0, "")
    if text and text[-1] == "\n":
        lines.append("")
    return lines


def split_paragraphs(text: str) -> list[str]:
    """``re.split(r"\\n{2,}", text)`` with ``str.split``.

    Splitting on ``"\\n\\n"`` cuts a run of k newlines into k // 2 separators, leaving empty pieces between them
    and, for odd k, one newline at the start of the next paragraph (a paragraph never starts with one: runs are
    maximal). Dropping the empty pieces and that newline gives the regex's paragraphs, except at the ends,
    where the regex keeps an empty first / last paragraph.
    """
    if "\n\n" not in text:
        return [text]
    pieces = text.split("\n\n")
    paragraphs = [piece[1:] if piece[0] == "\n" else piece for piece in pieces[1:-1] if piece and piece != "\n"]
    first, last = pieces[0], pieces[-1]
    return [first, *paragraphs, last[1:] if last.startswith("\n") else last]
