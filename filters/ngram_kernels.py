"""Compiled n-gram counting for the repetition rules (numba, compiled once and cached on disk).

Gopher's repetition rules look at the word n-grams of a document nine times (top 2-, 3-, 4-grams; duplicated 5- to
10-grams). Done with ``np.unique`` that is nine sorts per document, most of ``gopher_repetition``'s cost after
tokenisation; these kernels make one pass per n with an open-addressing hash set of 64-bit n-gram ids instead.
They compute exactly what :func:`refinery.filters.gopher.top_ngram_chars` and
:func:`~refinery.filters.gopher.duplicated_ngram_chars` compute (``tests/test_filters_speed_equivalence.py``
checks both against the NumPy versions on the sample corpus), so decisions do not change.

n-gram ids are the polynomial hash of :func:`refinery.filters.text_stats.ngram_ids` (the same values, int64
arithmetic wrapping the same way). numba is imported when a repetition stage first runs, not with the package.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_EMPTY = np.uint8(0)
_MULTIPLIER = np.int64(1_000_003)


@njit(cache=True, nogil=True)
def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    length = ids.size - n + 1
    out = np.zeros(max(length, 0), dtype=np.int64)
    for start in range(length):
        combined = np.int64(0)
        for offset in range(n):
            combined = combined * _MULTIPLIER + ids[start + offset] + np.int64(1)
        out[start] = combined
    return out


@njit(cache=True, nogil=True)
def _slot_bits(count: int) -> int:
    bits = 4
    while (1 << bits) < 2 * count:
        bits += 1
    return bits


@njit(cache=True, nogil=True)
def _empty_table(count: int) -> tuple[np.ndarray, np.ndarray, int]:
    """An open-addressing table for ``count`` keys: (keys, used flags, slot mask)."""
    size = 1 << _slot_bits(count)
    return np.zeros(size, dtype=np.int64), np.zeros(size, dtype=np.uint8), size - 1


@njit(cache=True, nogil=True)
def _find_slot(keys: np.ndarray, used: np.ndarray, key: np.int64, mask: int) -> int:
    """Slot holding ``key``, or the empty slot where it goes (linear probing on a mixed hash)."""
    mixed = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    slot = int(mixed >> np.uint64(32)) & mask
    while used[slot] != _EMPTY and keys[slot] != key:
        slot = (slot + 1) & mask
    return slot


@njit(cache=True, nogil=True)
def top_ngram_chars_kernel(ids: np.ndarray, lengths: np.ndarray, n: int) -> int:
    """Characters of the most frequent n-gram (space-joined) times its count; ties go to the first seen."""
    return _top_ngram(ids, lengths, n)[0]


@njit(cache=True, nogil=True)
def _top_ngram(ids: np.ndarray, lengths: np.ndarray, n: int) -> tuple[int, int]:
    """(:func:`top_ngram_chars_kernel`, the most frequent n-gram's count)."""
    grams = _ngram_hashes(ids, n)
    if grams.size == 0:
        return 0, 0
    keys, used, mask = _empty_table(grams.size)
    counts = np.zeros(keys.size, dtype=np.int64)
    first = np.zeros(keys.size, dtype=np.int64)
    best_count = 0
    best_first = 0
    for position in range(grams.size):
        slot = _find_slot(keys, used, grams[position], mask)
        if used[slot] == _EMPTY:
            used[slot] = 1
            keys[slot] = grams[position]
            first[slot] = position
        counts[slot] += 1
        count = counts[slot]
        if count > best_count or (count == best_count and first[slot] < best_first):
            best_count = count
            best_first = first[slot]
    chars = n - 1
    for offset in range(n):
        chars += lengths[best_first + offset]
    return chars * best_count, best_count


@njit(cache=True, nogil=True)
def duplicated_ngram_chars_kernel(ids: np.ndarray, lengths: np.ndarray, n: int, stop_above: float) -> int:
    """Characters (words joined without spaces) in repeated n-grams, walking and skipping as datatrove does.

    At each position: an n-gram seen before adds its characters and the walk jumps past it (the n-grams it
    jumps over are not recorded as seen); otherwise it is recorded and the walk moves one word on. The walk
    stops early once the sum exceeds ``stop_above``.
    """
    grams = _ngram_hashes(ids, n)
    if grams.size == 0:
        return 0
    keys, used, mask = _empty_table(grams.size)
    repeated = 0
    position = 0
    while position < grams.size:
        slot = _find_slot(keys, used, grams[position], mask)
        if used[slot] != _EMPTY:
            for offset in range(n):
                repeated += lengths[position + offset]
            if repeated > stop_above:
                return repeated
            position += n
        else:
            used[slot] = 1
            keys[slot] = grams[position]
            position += 1
    return repeated


@njit(cache=True, nogil=True)
def first_ngram_failure(
    ids: np.ndarray,
    lengths: np.ndarray,
    text_length: int,
    top_ns: np.ndarray,
    top_fractions: np.ndarray,
    dup_ns: np.ndarray,
    dup_fractions: np.ndarray,
) -> int:
    """Index of the first failing n-gram rule (top rules first, then duplicated ones), or -1 when all pass.

    Shortcut, same values: once some n-gram length is known to have no repeated n-gram (a top count of 1, or a
    duplicated walk that found nothing), no longer n-gram repeats either (its first n words would), so for those
    lengths the top n-gram is the first one, counted once, and the duplicated characters are 0. On short
    distinct pages this skips most of the nine hash passes.
    """
    no_repeats_from = np.iinfo(np.int64).max  # the smallest n known to have no repeated n-gram
    for rule in range(top_ns.size):
        n = top_ns[rule]
        if ids.size < n:
            continue
        if n >= no_repeats_from:
            chars = n - 1
            for offset in range(n):
                chars += lengths[offset]
        else:
            chars, best_count = _top_ngram(ids, lengths, n)
            if best_count == 1:
                no_repeats_from = min(no_repeats_from, n)
        if chars / text_length > top_fractions[rule]:
            return rule
    for rule in range(dup_ns.size):
        n = dup_ns[rule]
        if ids.size < n:
            continue
        limit = dup_fractions[rule] * text_length
        repeated = 0 if n >= no_repeats_from else duplicated_ngram_chars_kernel(ids, lengths, n, limit)
        if repeated == 0:
            no_repeats_from = min(no_repeats_from, n)
        if repeated / text_length > dup_fractions[rule]:
            return top_ns.size + rule
    return -1


@njit(cache=True, nogil=True)
def first_ngram_failures(
    ids: np.ndarray,
    lengths: np.ndarray,
    token_offsets: np.ndarray,
    text_lengths: np.ndarray,
    pending: np.ndarray,
    top_ns: np.ndarray,
    top_fractions: np.ndarray,
    dup_ns: np.ndarray,
    dup_fractions: np.ndarray,
) -> np.ndarray:
    """:func:`first_ngram_failure` of every ``pending`` text of a batch (text i's tokens are
    ``ids/lengths[token_offsets[i]:token_offsets[i + 1]]``); -1 for the others and for texts that pass."""
    failures = np.full(pending.size, -1, dtype=np.int64)
    for text in range(pending.size):
        if pending[text]:
            a, b = token_offsets[text], token_offsets[text + 1]
            failures[text] = first_ngram_failure(
                ids[a:b], lengths[a:b], text_lengths[text], top_ns, top_fractions, dup_ns, dup_fractions
            )
    return failures


@njit(cache=True, nogil=True)
def repeated_ngram_coverage(ids: np.ndarray, lengths: np.ndarray, n: int) -> float:
    """Share of the token characters inside an n-gram that occurred earlier in the sequence (0.0 without any).

    The compiled form of :func:`refinery.filters.line_repetition.duplicated_ngram_coverage`'s statistic: a start
    whose n-gram was seen before covers its n tokens; covered tokens' lengths over all tokens' lengths.
    """
    grams = _ngram_hashes(ids, n)
    if grams.size == 0:
        return 0.0
    keys, used, mask = _empty_table(grams.size)
    covered_until = 0
    covered = 0
    for position in range(grams.size):
        slot = _find_slot(keys, used, grams[position], mask)
        if used[slot] != _EMPTY:
            for token in range(max(position, covered_until), position + n):
                covered += lengths[token]
            covered_until = position + n
        else:
            used[slot] = 1
            keys[slot] = grams[position]
    if covered == 0:
        return 0.0
    return covered / lengths.sum()


_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True, nogil=True)
def repetitive_lines(
    data: np.ndarray,
    offsets: np.ndarray,
    classes: np.ndarray,
    n: int,
    min_words: int,
    max_coverage: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lines of a batch of UTF-8 texts whose repeated word n-gram coverage is above ``max_coverage``.

    The batch is Arrow's layout (``data`` bytes, ``offsets`` per text). Each text is cut at ``\\n`` as
    ``str.split("\\n")`` cuts it; a line of at least ``2 * min_words`` characters (code points) is cut into words
    as ``re.findall(r"\\w+")`` cuts it (bit 1 of ``classes[code_point]``: ``chr(code_point).isalnum()`` or
    ``_``, the definition of ``\\w`` for ``str`` patterns); a line of at least ``min_words`` words is removed when
    :func:`repeated_ngram_coverage` of its words is above ``max_coverage``. Words are identified by a 64-bit
    FNV-1a hash of their code points (equal words, equal ids). Returns (text index, line index) of every
    removed line, in order, and per text whether it is blank (every character ``str.isspace``: bit 2).
    """
    longest = 0
    for text in range(offsets.size - 1):
        longest = max(longest, offsets[text + 1] - offsets[text])
    ids = np.empty(longest + 1, dtype=np.int64)
    lengths = np.empty(longest + 1, dtype=np.int64)
    removed_texts = []
    removed_lines = []
    blank = np.ones(offsets.size - 1, dtype=np.bool_)
    min_chars = 2 * min_words
    for text in range(offsets.size - 1):
        position = offsets[text]
        end = offsets[text + 1]
        line = 0
        line_chars = 0
        words = 0
        in_word = False
        word_hash = _FNV_OFFSET
        word_length = 0
        while True:
            at_end = position >= end
            code = 10 if at_end else np.int64(data[position])
            width = 1
            if code >= 0x80:  # decode one UTF-8 sequence (Arrow strings are valid UTF-8)
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
                    code = (code << 6) | (np.int64(data[position + k]) & 0x3F)
            kind = classes[code]
            if not at_end and kind & 2 == 0:
                blank[text] = False
            if code != 10 and kind & 1:
                word_hash = (word_hash ^ np.uint64(code)) * _FNV_PRIME
                word_length += 1
                in_word = True
            elif in_word:
                ids[words] = np.int64(word_hash)
                lengths[words] = word_length
                words += 1
                in_word = False
                word_hash = _FNV_OFFSET
                word_length = 0
            if code == 10:
                long_enough = line_chars >= min_chars and words >= min_words and words >= n + 1
                if long_enough and repeated_ngram_coverage(ids[:words], lengths[:words], n) > max_coverage:
                    removed_texts.append(text)
                    removed_lines.append(line)
                line += 1
                line_chars = 0
                words = 0
                if at_end:
                    break
            else:
                line_chars += 1
            position += width
    return np.array(removed_texts, dtype=np.int64), np.array(removed_lines, dtype=np.int64), blank
