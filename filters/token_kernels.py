"""The heuristic filters' tokeniser and per-document statistics as one compiled pass per batch (numba).

:func:`refinery.filters.text_stats.tokenize` (a spaCy-like tokeniser in Python) was most of ``gopher_repetition``'s
cost and the per-token sums were most of ``gopher_quality``'s. Here the same rules run over Arrow's UTF-8 buffer:
each text is decoded into code points, cut at whitespace, and every chunk goes through the same steps in the same
order as ``text_stats`` (prefixes, suffixes, dots, abbreviations, clitics, infixes). Every token is a slice of its
text, so a token is a (start, end) pair of code-point offsets; equal tokens get equal 64-bit FNV-1a ids over
their code points.

Unicode classes come from per-code-point tables built from Python's own predicates (``str.isspace``,
``str.isalnum``, ``str.isdecimal``, ``str.isalpha``, ``str.lower``, ``str.splitlines``) and from ``re`` itself for
the case-insensitive clitic letters, so they match what the Python rules see exactly, whatever the Unicode
version. The word sets (abbreviation exceptions, pronouns, clitics, split words) are read from ``text_stats``,
the single source of the rules; ``tests/test_gopher_kernels.py`` keeps the Python tokeniser as the reference and
compares tokens, statistics and decisions on real pages, multilingual pages and adversarial texts.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from refinery.filters import text_stats

# bits of the per-code-point class table
SPACE, ALNUM, DECIMAL, ALPHA, PREFIX, SUFFIX, PUNCT, LINE_BREAK = 1, 2, 4, 8, 16, 32, 64, 128
# word groups of the lexicon (packed word lists read from text_stats)
SPLIT_WORDS, EXCEPTIONS, PRONOUNS, WHOLE, CLITICS, ALWAYS_SPLIT = 0, 1, 2, 3, 4, 5

_DOT, _APOSTROPHE, _BACKTICK, _CURLY_APOSTROPHE = ord("."), ord("'"), ord("`"), ord("’")
_HYPHEN, _EM_DASH, _EN_DASH, _TILDE = ord("-"), ord("—"), ord("–"), ord("~")
_COLON, _LESS, _GREATER, _EQUALS, _SLASH, _COMMA = ord(":"), ord("<"), ord(">"), ord("="), ord("/"), ord(",")
_PLUS, _STAR, _CARET, _AT, _NEWLINE, _HASH, _ELLIPSIS, _BULLET = (
    ord("+"), ord("*"), ord("^"), ord("@"), ord("\n"), ord("#"), ord("…"), ord("•"),
)  # fmt: skip
_SEMICOLON, _BANG, _QUESTION, _CLOSE_PAREN = ord(";"), ord("!"), ord("?"), ord(")")
_LOWER_A, _LOWER_Z, _UPPER_A, _UPPER_Z, _LOWER_W = ord("a"), ord("z"), ord("A"), ord("Z"), ord("w")

# Functions that allocate nothing are compiled without numba's reference counting (``_nrt=False``): the tokeniser's
# helpers are inlined into one loop, and every array they take would otherwise cost an atomic increment and
# decrement per call (most of the time spent on chunks that are not plain words, measured: ~150 ns a chunk).
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)

#: token flags
SYMBOL, HAS_ALPHA = 1, 2


@cache
def code_point_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, lower, fold), one entry per code point, built once per process (~0.25 s).

    ``classes``: the bits above. ``SPACE`` is ``str.isspace`` (where ``str.split()`` cuts), ``ALNUM``
    ``str.isalnum`` (``re``'s ``[^\\W_]``), ``DECIMAL`` ``str.isdecimal`` (``re``'s ``\\d``), ``ALPHA``
    ``str.isalpha``, ``PREFIX``/``SUFFIX``/``PUNCT`` membership of ``text_stats.PREFIXES``/``SUFFIXES``/
    ``PUNCTUATION``, ``LINE_BREAK`` where ``str.splitlines`` cuts. ``lower``: ``ord(c.lower())`` when that is one
    character, else -1, for the characters whose lower case is an ASCII letter; every other code point maps to
    itself (enough for comparisons with the lexicon's words: ``lower[c] == t`` exactly when ``c.lower() == t``
    for every character ``t`` of them). ``fold``: for the letters of the clitics, the lowercase ASCII letter that
    ``re``'s ``(?i)`` matches the code point to (``ſ`` matches ``s``); every other code point maps to itself.
    """
    characters = list(map(chr, range(0x110000)))
    count = len(characters)

    def flags(predicate) -> np.ndarray:
        return np.fromiter(map(predicate, characters), dtype=np.uint8, count=count)

    classes = flags(str.isspace) * np.uint8(SPACE)
    classes |= flags(str.isalnum) * np.uint8(ALNUM)
    classes |= flags(str.isdecimal) * np.uint8(DECIMAL)
    classes |= flags(str.isalpha) * np.uint8(ALPHA)
    for members, bit in ((text_stats.PREFIXES, PREFIX), (text_stats.SUFFIXES, SUFFIX), (text_stats.PUNCTUATION, PUNCT)):
        classes[[ord(c) for c in members]] |= np.uint8(bit)
    for code in np.flatnonzero(classes & SPACE).tolist():
        if len(f"a{chr(code)}b".splitlines()) == 2:
            classes[code] |= np.uint8(LINE_BREAK)
    everything = "".join(characters[:0xD800] + characters[0xE000:])  # no surrogates: re needs a valid str
    # the kernels compare lower-cased text only with the lexicon's words (ASCII, "'", "’"); a character whose
    # lower case is an ASCII letter is one that re's (?i) matches to that letter, so only those need str.lower
    lower = np.arange(count, dtype=np.int32)
    for match in set(re.findall("(?i)[a-z]", everything)):
        lowered = match.lower()
        lower[ord(match)] = ord(lowered) if len(lowered) == 1 else -1
    fold = np.arange(count, dtype=np.int32)
    letters = "".join(sorted({c for clitic in text_stats.CLITICS for c in clitic if c.isascii() and c.isalpha()}))
    for match in set(re.findall(f"(?i)[{letters}]", everything)):
        fold[ord(match)] = next(ord(letter) for letter in letters if re.fullmatch(f"(?i){letter}", match))
    return classes, lower, fold


@cache
def lexicon() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The word sets of ``text_stats`` packed for the kernels: (code points, word offsets, group offsets, split
    points of the split words)."""
    groups = (
        list(text_stats.SPLIT_WORDS),
        sorted(text_stats.EXCEPTIONS),
        sorted(text_stats.PRONOUNS),
        sorted(text_stats.WHOLE),
        list(text_stats.CLITICS),
        list(text_stats.ALWAYS_SPLIT_CLITICS),
    )
    words = [word for group in groups for word in group]
    for word, parts in text_stats.SPLIT_WORDS.items():
        if "".join(parts) != word or len(parts) != 2:
            raise ValueError(f"split word {word!r} must be two slices of itself, got {parts}")
    points = np.array([ord(c) for word in words for c in word], dtype=np.int32)
    word_offsets = np.cumsum([0, *map(len, words)]).astype(np.int64)
    group_offsets = np.cumsum([0, *map(len, groups)]).astype(np.int64)
    split_at = np.array([len(parts[0]) for parts in text_stats.SPLIT_WORDS.values()], dtype=np.int64)
    return points, word_offsets, group_offsets, split_at


def arrow_utf8(texts: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets) of the texts as one large_string array, nulls as empty texts."""
    array = pc.fill_null(texts, "")
    array = (array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array).cast(pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    return (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(1, dtype=np.uint8)), offsets


def pack_words(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words as (code points, offsets) for the kernels."""
    points = np.array([ord(c) for word in words for c in word], dtype=np.int32)
    return points, np.cumsum([0, *map(len, words)]).astype(np.int64)


# --- decoding and lexicon look-ups -------------------------------------------------------------------------


@njit(cache=True, nogil=True, _nrt=False)
def _decode(data: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """Code points of ``data[start:end]`` (valid UTF-8, as Arrow guarantees) into ``out``; returns how many."""
    count = 0
    position = start
    while position < end:
        code = np.int32(data[position])
        width = 1
        if code >= 0x80:
            if code >= 0xF0:
                width = 4
                code = code & 0x07
            elif code >= 0xE0:
                width = 3
                code = code & 0x0F
            else:
                width = 2
                code = code & 0x1F
            for k in range(1, width):
                code = (code << 6) | (np.int32(data[position + k]) & 0x3F)
        out[count] = code
        count += 1
        position += width
    return count


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _same(
    cp: np.ndarray, a: int, b: int, table: np.ndarray, mapped: bool, points: np.ndarray, start: int, end: int
) -> bool:
    if b - a != end - start:
        return False
    for i in range(b - a):
        code = table[cp[a + i]] if mapped else cp[a + i]
        if code != points[start + i]:
            return False
    return True


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _find(cp, a, b, table, mapped, group, points, word_offsets, group_offsets) -> int:
    """Index within ``group`` of the word equal to ``cp[a:b]`` (through ``table`` when ``mapped``), or -1."""
    first = group_offsets[group]
    for word in range(first, group_offsets[group + 1]):
        if _same(cp, a, b, table, mapped, points, word_offsets[word], word_offsets[word + 1]):
            return word - first
    return -1


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _is_letter(code: int, classes: np.ndarray) -> bool:
    """``re``'s ``[^\\W\\d_]``: alphanumeric and not a decimal digit."""
    kind = classes[code]
    return (kind & ALNUM) != 0 and (kind & DECIMAL) == 0


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _all_alnum(cp: np.ndarray, a: int, b: int, classes: np.ndarray) -> bool:
    if a >= b:
        return False
    for i in range(a, b):  # noqa: SIM110 (a loop numba compiles)
        if classes[cp[i]] & ALNUM == 0:
            return False
    return True


# --- the tokeniser: text_stats.split_chunk and its helpers, step by step ------------------------------------


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _keeps_period(cp, a, b, classes, lower, points, word_offsets, group_offsets) -> bool:
    """``text_stats._keeps_period``: an abbreviation (``U.S``, ``e.g``, one letter) or a known short form."""
    length = b - a
    if length % 2 == 1:
        abbreviation = True
        for i in range(length):
            code = cp[a + i]
            if (i % 2 == 0 and not _is_letter(code, classes)) or (i % 2 == 1 and code != _DOT):
                abbreviation = False
                break
        if abbreviation:
            return True
    return _find(cp, a, b, lower, True, EXCEPTIONS, points, word_offsets, group_offsets) >= 0


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _url_like(cp: np.ndarray, a: int, b: int) -> bool:
    """``text_stats.URL_LIKE``: an ``@``, a ``://``, or a leading ``www.``."""
    for i in range(a, b):
        if cp[i] == _AT:
            return True
        if cp[i] == _COLON and i + 2 < b and cp[i + 1] == _SLASH and cp[i + 2] == _SLASH:
            return True
    return b - a >= 4 and cp[a] == _LOWER_W and cp[a + 1] == _LOWER_W and cp[a + 2] == _LOWER_W and cp[a + 3] == _DOT


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _infix(cp, a, b, classes, points, word_offsets, group_offsets, starts, ends, k) -> int:
    """``text_stats._infix``: ``INFIX.split`` as ``re`` scans it (left to right, first alternative that
    matches, lookbehind and lookahead inside ``cp[a:b]``); the comma alternative has no group, so it is dropped."""
    if (
        _all_alnum(cp, a, b, classes)
        or _find(cp, a, b, classes, False, WHOLE, points, word_offsets, group_offsets) >= 0
        or _url_like(cp, a, b)
    ):
        starts[k] = a
        ends[k] = b
        return k + 1
    piece = a
    position = a
    while position < b:
        length = 0
        keep = True
        if position > a and position + 1 < b:
            before = cp[position - 1]
            code = cp[position]
            after = cp[position + 1]
            before_alnum = (classes[before] & ALNUM) != 0
            if before_alnum and code in (_HYPHEN, _EM_DASH, _EN_DASH, _TILDE):
                if _is_letter(after, classes):
                    length = 1
                elif (
                    code == _HYPHEN and after == _HYPHEN and position + 2 < b and _is_letter(cp[position + 2], classes)
                ):
                    length = 2
            if length == 0 and before_alnum and code in (_COLON, _LESS, _GREATER, _EQUALS, _SLASH):
                length = 1 if _is_letter(after, classes) else 0
            if length == 0 and code == _COMMA and _is_letter(before, classes) and _is_letter(after, classes):
                length = 1
                keep = False
            if length == 0 and (classes[before] & DECIMAL) != 0 and code in (_PLUS, _HYPHEN, _STAR, _CARET):
                length = 1 if (classes[after] & DECIMAL) != 0 or after == _HYPHEN else 0
            if length == 0 and code == _DOT and _LOWER_A <= before <= _LOWER_Z and _UPPER_A <= after <= _UPPER_Z:
                length = 1
        if length:
            if position > piece:
                starts[k] = piece
                ends[k] = position
                k += 1
            if keep:
                starts[k] = position
                ends[k] = position + length
                k += 1
            position += length
            piece = position
        else:
            position += 1
    if b > piece:
        starts[k] = piece
        ends[k] = b
        k += 1
    return k


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _core(cp, a, b, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, k) -> int:
    """``text_stats._core``: split words, then ``n't`` / ``'s``-style clitics (``CONTRACTION``), then infixes."""
    if a >= b:
        return k
    split = _find(cp, a, b, classes, False, SPLIT_WORDS, points, word_offsets, group_offsets)
    if split >= 0:
        starts[k] = a
        ends[k] = a + split_at[split]
        starts[k + 1] = a + split_at[split]
        ends[k + 1] = b
        return k + 2
    apostrophe = False
    for i in range(a, b):
        if cp[i] == _APOSTROPHE or cp[i] == _CURLY_APOSTROPHE:
            apostrophe = True
            break
    if apostrophe:
        # ^(.+?)(clitic)$: the shortest stem (at least one character) whose rest is a clitic, case-insensitively
        clitic_start = -1
        for stem_end in range(a + 1, b):
            for word in range(group_offsets[CLITICS], group_offsets[CLITICS + 1]):
                if _same(cp, stem_end, b, fold, True, points, word_offsets[word], word_offsets[word + 1]):
                    clitic_start = stem_end
                    break
            if clitic_start >= 0:
                break
        if clitic_start >= 0 and (
            _find(cp, clitic_start, b, lower, True, ALWAYS_SPLIT, points, word_offsets, group_offsets) >= 0
            or _find(cp, a, clitic_start, lower, True, PRONOUNS, points, word_offsets, group_offsets) >= 0
        ):
            k = _infix(cp, a, clitic_start, classes, points, word_offsets, group_offsets, starts, ends, k)
            starts[k] = clitic_start
            ends[k] = b
            return k + 1
    return _infix(cp, a, b, classes, points, word_offsets, group_offsets, starts, ends, k)


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _double_quote(first: int, second: int) -> bool:
    return first == second and first in (_APOSTROPHE, _BACKTICK)


@njit(cache=True, nogil=True, inline="always", _nrt=False)
def _split_chunk(
    cp, a, b, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, k, stack
) -> int:
    """``text_stats._split_chunk`` (``split_chunk``'s two shortcuts are special cases of it): prefixes one mark
    at a time, then suffixes from the end (trailing dot runs whole, a final ``.`` kept on abbreviations), then
    the core."""
    all_dots = cp[a] == _DOT
    if all_dots:
        for i in range(a, b):
            if cp[i] != _DOT:
                all_dots = False
                break
    if all_dots or (b - a == 2 and _double_quote(cp[a], cp[a + 1])):
        starts[k] = a
        ends[k] = b
        return k + 1
    while b - a > 1 and classes[cp[a]] & PREFIX:
        width = 2 if b - a > 2 and _double_quote(cp[a], cp[a + 1]) else 1
        starts[k] = a
        ends[k] = a + width
        k += 1
        a += width
    suffixes = 0
    while b - a > 1:
        if cp[b - 1] == _DOT and cp[b - 2] == _DOT:
            run = b - 1
            while run > a and cp[run - 1] == _DOT:
                run -= 1
            if run > a:
                stack[suffixes] = run
                stack[suffixes + 1] = b
                suffixes += 2
                b = run
                continue
        if b - a > 2 and _double_quote(cp[b - 2], cp[b - 1]):
            cut = b - 2
        elif (classes[cp[b - 1]] & SUFFIX) or (
            cp[b - 1] == _DOT and not _keeps_period(cp, a, b - 1, classes, lower, points, word_offsets, group_offsets)
        ):
            cut = b - 1
        else:
            break
        stack[suffixes] = cut
        stack[suffixes + 1] = b
        suffixes += 2
        b = cut
    k = _core(cp, a, b, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, k)
    while suffixes > 0:
        suffixes -= 2
        starts[k] = stack[suffixes]
        ends[k] = stack[suffixes + 1]
        k += 1
    return k


@njit(cache=True, nogil=True, _nrt=False)
def _tokenize(cp, length, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, stack):
    """``text_stats.tokenize`` of ``cp[:length]``: token spans (code-point offsets) into starts/ends; the count.

    ``split_chunk``'s two shortcuts come first, as there: an alphanumeric word followed by one of ``,;:!?)``, and
    one of two or more characters followed by a sentence's ``.``; every other chunk takes the general path.
    """
    k = 0
    position = 0
    while position < length:
        if classes[cp[position]] & SPACE:
            position += 1
            continue
        end = position
        alnum_until = -1  # the first character that is not alphanumeric
        while end < length:
            kind = classes[cp[end]]
            if kind & SPACE:
                break
            if alnum_until < 0 and kind & ALNUM == 0:
                alnum_until = end
            end += 1
        if alnum_until < 0:
            alnum_until = end
        if alnum_until >= end - 1 and alnum_until > position:
            stem_end = end if alnum_until == end else end - 1  # the chunk, or the chunk without its last mark
            last = cp[end - 1]
            plain = stem_end == end or last in (_COMMA, _SEMICOLON, _COLON, _BANG, _QUESTION, _CLOSE_PAREN)
            if not plain and last == _DOT and stem_end - position > 1:
                plain = not _keeps_period(cp, position, stem_end, classes, lower, points, word_offsets, group_offsets)
            if (
                plain
                and _find(cp, position, stem_end, classes, False, SPLIT_WORDS, points, word_offsets, group_offsets) < 0
            ):
                starts[k] = position
                ends[k] = stem_end
                k += 1
                if stem_end < end:
                    starts[k] = stem_end
                    ends[k] = end
                    k += 1
                position = end
                continue
        k = _split_chunk(
            cp, position, end, classes, lower, fold, points, word_offsets, group_offsets, split_at,
            starts, ends, k, stack,
        )  # fmt: skip
        position = end
    return k


@njit(cache=True, nogil=True, _nrt=False)
def _token_id(cp: np.ndarray, a: int, b: int) -> np.int64:
    """FNV-1a over the code points: equal tokens, equal ids."""
    value = _FNV_OFFSET
    for i in range(a, b):
        value = (value ^ np.uint64(cp[i])) * _FNV_PRIME
    return np.int64(value)


@njit(cache=True, nogil=True, _nrt=False)
def _longest(offsets: np.ndarray) -> int:
    longest = 0
    for text in range(offsets.size - 1):
        longest = max(longest, offsets[text + 1] - offsets[text])
    return longest


@njit(cache=True, nogil=True)
def tokenize_batch(data, offsets, classes, lower, fold, points, word_offsets, group_offsets, split_at):
    """Tokens of every text of a batch: (token offsets per text, starts, ends) with starts/ends in code points
    from the start of their text. ``tokens of text i`` = ``starts/ends[token_offsets[i]:token_offsets[i + 1]]``."""
    texts = offsets.size - 1
    longest = _longest(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    stack = np.empty(2 * longest + 2, dtype=np.int64)
    total = offsets[texts] - offsets[0]
    starts = np.empty(total + 1, dtype=np.int64)
    ends = np.empty(total + 1, dtype=np.int64)
    token_offsets = np.zeros(texts + 1, dtype=np.int64)
    k = 0
    for text in range(texts):
        length = _decode(data, offsets[text], offsets[text + 1], cp)
        count = _tokenize(
            cp, length, classes, lower, fold, points, word_offsets, group_offsets, split_at,
            starts[k:], ends[k:], stack,
        )  # fmt: skip
        k += count
        token_offsets[text + 1] = k
    return token_offsets, starts[:k], ends[:k]


# --- gopher_repetition: paragraphs, lines and n-grams in one pass ------------------------------------------


@njit(cache=True, nogil=True, _nrt=False)
def _duplicates(cp, starts, ends, count, slots, hashes) -> tuple[int, int]:
    """``text_stats.duplicates`` of the pieces ``cp[starts[i]:ends[i]]``: repeats after the first occurrence and
    their characters (hash table of FNV-1a ids, pieces compared code point by code point on equal ids).
    ``slots`` and ``hashes`` are scratch space of at least ``2 * count`` rounded up to a power of two and ``count``."""
    bits = 4
    while (1 << bits) < 2 * count:
        bits += 1
    mask = (1 << bits) - 1
    slots[: 1 << bits] = -1
    repeated = 0
    repeated_chars = 0
    for piece in range(count):
        a = starts[piece]
        b = ends[piece]
        value = _token_id(cp, a, b)
        hashes[piece] = value
        slot = int((np.uint64(value) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask
        while True:
            other = slots[slot]
            if other < 0:
                slots[slot] = piece
                break
            if hashes[other] == value and ends[other] - starts[other] == b - a:
                same = True
                for i in range(b - a):
                    if cp[starts[other] + i] != cp[a + i]:
                        same = False
                        break
                if same:
                    repeated += 1
                    repeated_chars += b - a
                    break
            slot = (slot + 1) & mask
    return repeated, repeated_chars


@njit(cache=True, nogil=True, _nrt=False)
def _split_newline_runs(cp, a, b, min_run, starts, ends) -> int:
    """``re.split(r"\\n{min_run,}", text[a:b])`` as spans; returns how many."""
    count = 0
    piece = a
    position = a
    while position < b:
        if cp[position] == _NEWLINE:
            run = position
            while run < b and cp[run] == _NEWLINE:
                run += 1
            if run - position >= min_run:
                starts[count] = piece
                ends[count] = position
                count += 1
                piece = run
            position = run
        else:
            position += 1
    starts[count] = piece
    ends[count] = b
    return count + 1


@njit(cache=True, nogil=True, _nrt=False)
def _repetition_text(
    data, start, end, classes, lower, fold, points, word_offsets, group_offsets, split_at,
    dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac,
    cp, stack, starts, ends, slots, hashes, ids, lengths, k,
):  # fmt: skip
    """One text of :func:`repetition_failures`: (failure, length in code points, tokens written so far)."""
    length = _decode(data, start, end, cp)
    if length == 0:
        return 0, length, k
    first = 0
    while first < length and classes[cp[first]] & SPACE:
        first += 1
    last = length
    while last > first and classes[cp[last - 1]] & SPACE:
        last -= 1
    pieces = _split_newline_runs(cp, first, last, 2, starts, ends)
    repeated, repeated_chars = _duplicates(cp, starts, ends, pieces, slots, hashes)
    if dup_para_frac and repeated / pieces > dup_para_frac:
        return 1, length, k
    if dup_para_char_frac and repeated_chars / length > dup_para_char_frac:
        return 2, length, k
    pieces = _split_newline_runs(cp, 0, length, 1, starts, ends)
    repeated, repeated_chars = _duplicates(cp, starts, ends, pieces, slots, hashes)
    if dup_line_frac and repeated / pieces > dup_line_frac:
        return 3, length, k
    if dup_line_char_frac and repeated_chars / length > dup_line_char_frac:
        return 4, length, k
    count = _tokenize(
        cp, length, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, stack
    )
    for token in range(count):
        ids[k] = _token_id(cp, starts[token], ends[token])
        lengths[k] = ends[token] - starts[token]
        k += 1
    return -1, length, k


@njit(cache=True, nogil=True)
def repetition_failures(
    data, offsets, classes, lower, fold, points, word_offsets, group_offsets, split_at,
    dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac,
):  # fmt: skip
    """``GopherRepetitionFilter``'s rules before the n-gram ones, per text, and the tokens the n-gram rules need.

    Returns (failures, token offsets, token ids, token lengths, text lengths). ``failures``: -1 none so far, 0
    empty, 1 dup_para_frac, 2 dup_para_char_frac, 3 dup_line_frac, 4 dup_line_char_frac (fractions of 0 disable
    their rule, as ``None`` or ``0`` do in the stage). Texts that failed have no tokens. The n-gram rules run in
    :func:`refinery.filters.ngram_kernels.first_ngram_failures`: a compiled function calling one of another module
    would keep a stale copy of it in numba's on-disk cache when only that module changes.
    """
    texts = offsets.size - 1
    longest = _longest(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    stack = np.empty(2 * longest + 2, dtype=np.int64)
    starts = np.empty(longest + 2, dtype=np.int64)
    ends = np.empty(longest + 2, dtype=np.int64)
    total = offsets[texts] - offsets[0]
    ids = np.empty(total + 1, dtype=np.int64)
    lengths = np.empty(total + 1, dtype=np.int64)
    token_offsets = np.zeros(texts + 1, dtype=np.int64)
    text_lengths = np.zeros(texts, dtype=np.int64)
    failures = np.full(texts, -1, dtype=np.int64)
    slots = np.empty(4 * (longest + 2) + 16, dtype=np.int64)  # a power of two >= 2 * pieces is < 4 * pieces + 16
    hashes = np.empty(longest + 2, dtype=np.int64)
    k = 0
    for text in range(texts):
        token_offsets[text] = k
        failures[text], text_lengths[text], k = _repetition_text(
            data, offsets[text], offsets[text + 1], classes, lower, fold, points, word_offsets, group_offsets,
            split_at, dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac,
            cp, stack, starts, ends, slots, hashes, ids, lengths, k,
        )  # fmt: skip
    token_offsets[texts] = k
    return failures, token_offsets, ids[:k], lengths[:k], text_lengths


# --- gopher_quality's statistics ---------------------------------------------------------------------------

#: columns of :func:`quality_statistics`
QUALITY_COLUMNS = (
    "words", "non_symbol_words", "non_symbol_chars", "hashes", "ellipses", "lines", "bullet_lines",
    "ellipsis_lines", "alpha_words", "stop_words",
)  # fmt: skip


@njit(cache=True, nogil=True, _nrt=False)
def _line_statistics(cp, length, classes) -> tuple[int, int, int]:
    """(lines, lines starting with a bullet, lines ending in an ellipsis) of ``str.splitlines() or [""]``;
    bullets and ellipses after ``lstrip()`` / ``rstrip()``."""
    lines = 0
    bullets = 0
    ellipses = 0
    position = 0
    while position < length:
        end = position
        while end < length and classes[cp[end]] & LINE_BREAK == 0:
            end += 1
        lines += 1
        a = position
        while a < end and classes[cp[a]] & SPACE:
            a += 1
        if a < end and (cp[a] == _BULLET or cp[a] == _HYPHEN):
            bullets += 1
        b = end
        while b > a and classes[cp[b - 1]] & SPACE:
            b -= 1
        if b > a and (
            cp[b - 1] == _ELLIPSIS or (b - a >= 3 and cp[b - 1] == _DOT and cp[b - 2] == _DOT and cp[b - 3] == _DOT)
        ):
            ellipses += 1
        position = end
        if position < length:  # the break: \r\n is one
            position += 2 if cp[position] == 13 and position + 1 < length and cp[position + 1] == 10 else 1
    return max(lines, 1), bullets, ellipses


@njit(cache=True, nogil=True, _nrt=False)
def _quality_text(
    data, start, end, classes, lower, fold, points, word_offsets, group_offsets, split_at, stop_points, stop_offsets,
    cp, stack, starts, ends, found, row,
):  # fmt: skip
    """One text of :func:`quality_statistics`, into ``row``."""
    stop_words = stop_offsets.size - 1
    length = _decode(data, start, end, cp)
    count = _tokenize(
        cp, length, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, stack
    )
    non_symbol = non_symbol_chars = alpha = 0
    for word in range(stop_words):
        found[word] = False
    for token in range(count):
        a = starts[token]
        b = ends[token]
        symbol = True
        has_alpha = False
        for i in range(a, b):
            kind = classes[cp[i]]
            if kind & PUNCT == 0:
                symbol = False
            if kind & ALPHA:
                has_alpha = True
        if not symbol:
            non_symbol += 1
            non_symbol_chars += b - a
        if has_alpha:
            alpha += 1
        for word in range(stop_words):
            if not found[word] and _same(cp, a, b, cp, False, stop_points, stop_offsets[word], stop_offsets[word + 1]):
                found[word] = True
    hashes = ellipses = 0
    position = 0
    while position < length:
        code = cp[position]
        if code == _HASH:
            hashes += 1
        elif code == _ELLIPSIS:
            ellipses += 1
        elif code == _DOT and position + 2 < length and cp[position + 1] == _DOT and cp[position + 2] == _DOT:
            ellipses += 1
            position += 3
            continue
        position += 1
    lines, bullets, ellipsis_lines = _line_statistics(cp, length, classes)
    row[0] = count
    row[1] = non_symbol
    row[2] = non_symbol_chars
    row[3] = hashes
    row[4] = ellipses
    row[5] = lines
    row[6] = bullets
    row[7] = ellipsis_lines
    row[8] = alpha
    stops = 0
    for word in range(stop_words):
        stops += found[word]
    row[9] = stops


@njit(cache=True, nogil=True)
def quality_statistics(
    data, offsets, classes, lower, fold, points, word_offsets, group_offsets, split_at, stop_points, stop_offsets
):
    """Per text, the statistics ``GopherQualityFilter`` decides on (columns: :data:`QUALITY_COLUMNS`).

    Words are the tokens; a symbol word is made of ``PUNCTUATION`` only; an alpha word has a character that
    ``str.isalpha``; ``hashes`` and ``ellipses`` are ``str.count`` of ``#``, ``...`` and ``…``; stop words counts
    the distinct words of ``stop_points``/``stop_offsets`` that occur.
    """
    texts = offsets.size - 1
    longest = _longest(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    stack = np.empty(2 * longest + 2, dtype=np.int64)
    starts = np.empty(longest + 2, dtype=np.int64)
    ends = np.empty(longest + 2, dtype=np.int64)
    stop_words = stop_offsets.size - 1
    found = np.zeros(stop_words, dtype=np.bool_)
    statistics = np.zeros((texts, 10), dtype=np.int64)
    for text in range(texts):
        _quality_text(
            data, offsets[text], offsets[text + 1], classes, lower, fold, points, word_offsets, group_offsets,
            split_at, stop_points, stop_offsets, cp, stack, starts, ends, found, statistics[text],
        )  # fmt: skip
    return statistics


@njit(cache=True, nogil=True)
def token_counts(data, offsets, classes, lower, fold, points, word_offsets, group_offsets, split_at):
    """Number of tokens of every text (``len(text_stats.tokenize(text))``)."""
    texts = offsets.size - 1
    longest = _longest(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    stack = np.empty(2 * longest + 2, dtype=np.int64)
    starts = np.empty(longest + 2, dtype=np.int64)
    ends = np.empty(longest + 2, dtype=np.int64)
    counts = np.zeros(texts, dtype=np.int64)
    for text in range(texts):
        length = _decode(data, offsets[text], offsets[text + 1], cp)
        counts[text] = _tokenize(
            cp, length, classes, lower, fold, points, word_offsets, group_offsets, split_at, starts, ends, stack
        )
    return counts


def tables() -> tuple[np.ndarray, ...]:
    """Every table argument the kernels take after (data, offsets): classes, lower, fold and the lexicon."""
    return (*code_point_tables(), *lexicon())
