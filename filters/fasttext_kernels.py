"""fastText's supervised top-1 prediction, compiled with numba over Arrow's UTF-8 buffers (bit-identical scores).

``fasttext``'s Python ``predict`` costs a Python string, a ``std::string`` copy, a ``std::stringstream`` and a
``std::string`` per character n-gram for every document; on short pages that is most of ``language_id``'s time.
This module runs the same computation in one compiled pass over a batch's offsets and bytes, step for step as
fastText's C++ does it (``src/dictionary.cc``, ``src/quantmatrix.cc``, ``src/productquantizer.cc``,
``src/densematrix.cc``, ``src/loss.cc``, ``src/fasttext.cc`` at the revision the ``fasttext-numpy2-wheel`` build
carries), so that labels and float32 scores are equal bit for bit:

* the text the stage gives fastText is the first ``max_chars`` code points with every ``\\s+`` run (RE2's ``\\s``:
  tab, newline, form feed, carriage return, space) replaced by one space, plus the ``"\\n"`` the Python wrapper
  appends. fastText's ``readWord`` splits on space, ``\\n``, ``\\r``, ``\\t``, ``\\v``, ``\\f`` and NUL and turns
  the final newline into the end-of-sentence token ``</s>``; so the tokens are the runs of bytes outside those
  seven, then ``</s>``. A literal ``</s>`` token ends the line early, as in ``getLine``;
* a token in the dictionary contributes its own row (unless it is a label), then its character n-grams; a token
  outside it contributes its n-grams only, and nothing when it starts with ``__label__``;
* n-grams are the ``minn``..``maxn`` code-point substrings of ``<token>`` (``computeSubwords``: a lead byte starts
  a character, continuation bytes ``10xxxxxx`` extend it, lone ``<``/``>`` excluded), hashed with 32-bit FNV-1a
  over *signed* chars (a byte >= 0x80 is sign-extended before the xor, as fastText's released models were
  trained), taken modulo ``bucket`` and mapped through the pruning index of a quantized model (``pushHash``);
* the hidden vector is the float32 sum of those rows in that order, times ``float32(1.0 / count)``: a dense
  matrix starts from the first row (``averageRowsFast``), a quantized one from zeros and adds
  ``norm * centroid`` per sub-vector (``addcode``);
* hierarchical softmax walks the Huffman tree depth first, left child first (``dfs``): a node's probability is
  ``1 / (1 + expf(-f))`` in float32, where ``f`` is the float32 dot product with the node's output row (for a
  quantized output matrix ``sum(x * centroid) * norm``), each child adds ``float32(log(double(p) + 1e-5))``; a
  branch is cut when its score is below ``log(threshold + 1e-5)`` or below the best leaf so far; a leaf with a
  score equal to the best replaces it (what ``std::push_heap``/``pop_heap`` do with ``k = 1``);
* the probability reported is ``expf`` of the best leaf's score.

No fast-math: every operation keeps fastText's order and float32/float64 types. ``expf`` and ``log`` are the
C library's, as in the ``fasttext`` extension. ``tests/test_language_id_kernel.py`` compares labels and score bits
with ``fasttext``'s ``predict`` on real and adversarial texts.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
MASK32 = 0xFFFFFFFF
PRUNE_NONE, PRUNE_ALL, PRUNE_MAP = -1, 0, 1  # pruneidx_size_ < 0, == 0, > 0
_LABEL_PREFIX = np.frombuffer(b"__label__", dtype=np.uint8)
_EOS = np.frombuffer(b"</s>", dtype=np.uint8)


@njit(cache=True, nogil=True, inline="always")
def _is_space(byte: np.uint8) -> bool:
    """fastText's ``readWord`` separators; RE2's ``\\s`` (replaced by a space first) is a subset of them."""
    return byte == 32 or byte == 10 or byte == 13 or byte == 9 or byte == 11 or byte == 12 or byte == 0


@njit(cache=True, nogil=True, inline="always")
def _fnv_step(h: np.int64, byte: np.uint8) -> np.int64:
    """One FNV-1a step over a signed char: bytes >= 0x80 are sign-extended to 32 bits before the xor."""
    value = np.int64(byte)
    if value >= 128:
        value |= 0xFFFFFF00
    return ((h ^ value) * FNV_PRIME) & MASK32


@njit(cache=True, nogil=True)
def _clip_end(data: np.ndarray, start: int, end: int, max_chars: int) -> int:
    """Byte position after the first ``max_chars`` code points (Arrow's ``utf8_slice_codeunits(0, max_chars)``)."""
    chars = 0
    for position in range(start, end):
        if (data[position] & 0xC0) != 0x80:
            if chars == max_chars:
                return position
            chars += 1
    return end


@njit(cache=True, nogil=True)
def _find_word(
    data: np.ndarray, start: int, end: int, h: np.int64, table: np.ndarray, blob: np.ndarray, starts: np.ndarray
) -> int:
    """``Dictionary::getId``: the word's id, or -1 (same open-addressing table, so the same answer)."""
    slot = h % table.size
    length = end - start
    while True:
        word = table[slot]
        if word == -1:
            return -1
        first = starts[word]
        if starts[word + 1] - first == length:
            same = True
            for offset in range(length):
                if blob[first + offset] != data[start + offset]:
                    same = False
                    break
            if same:
                return word
        slot = (slot + 1) % table.size


@njit(cache=True, nogil=True, inline="always")
def _starts_with(data: np.ndarray, start: int, end: int, prefix: np.ndarray) -> bool:
    if end - start < prefix.size:
        return False
    for offset in range(prefix.size):
        if data[start + offset] != prefix[offset]:
            return False
    return True


@njit(cache=True, nogil=True)
def _add_row(
    hidden: np.ndarray,
    row: int,
    first: bool,
    dense: np.ndarray,
    codes: np.ndarray,
    centroids: np.ndarray,
    nsubq: int,
    dsub: int,
    lastdsub: int,
    norm_codes: np.ndarray,
    norm_centroids: np.ndarray,
) -> None:
    """Add one input row to ``hidden`` as fastText's ``averageRowsToVector`` does (dense or quantized)."""
    if codes.size == 0:
        if first:
            for j in range(hidden.size):
                hidden[j] = dense[row, j]
        else:
            for j in range(hidden.size):
                hidden[j] += dense[row, j]
        return
    norm = np.float32(1.0)
    if norm_codes.size > 0:
        norm = norm_centroids[norm_codes[row]]
    code_base = row * nsubq
    for m in range(nsubq):
        code = np.int64(codes[code_base + m])
        if m == nsubq - 1:
            base = m * 256 * dsub + code * lastdsub
            width = lastdsub
        else:
            base = (m * 256 + code) * dsub
            width = dsub
        for n in range(width):
            hidden[m * dsub + n] += norm * centroids[base + n]


@njit(cache=True, nogil=True)
def _dot_row(
    hidden: np.ndarray,
    row: int,
    dense: np.ndarray,
    codes: np.ndarray,
    centroids: np.ndarray,
    nsubq: int,
    dsub: int,
    lastdsub: int,
    norm_codes: np.ndarray,
    norm_centroids: np.ndarray,
) -> np.float32:
    """``Matrix::dotRow``: dense ``sum(w * x)``; quantized ``sum(x * centroid) * norm`` (``mulcode``)."""
    total = np.float32(0.0)
    if codes.size == 0:
        for j in range(hidden.size):
            total += dense[row, j] * hidden[j]
        return total
    norm = np.float32(1.0)
    if norm_codes.size > 0:
        norm = norm_centroids[norm_codes[row]]
    code_base = row * nsubq
    for m in range(nsubq):
        code = np.int64(codes[code_base + m])
        if m == nsubq - 1:
            base = m * 256 * dsub + code * lastdsub
            width = lastdsub
        else:
            base = (m * 256 + code) * dsub
            width = dsub
        for n in range(width):
            total += hidden[m * dsub + n] * centroids[base + n]
    return total * norm


@njit(cache=True, nogil=True)
def _std_log(x: np.float32) -> np.float32:
    """fastText's ``std_log``: ``log(x + 1e-5)`` in double, returned as float."""
    return np.float32(math.log(np.float64(x) + 1e-5))


@njit(cache=True, nogil=True)
def _best_leaf(
    hidden: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    osz: int,
    stack_nodes: np.ndarray,
    stack_scores: np.ndarray,
    out_dense: np.ndarray,
    out_codes: np.ndarray,
    out_centroids: np.ndarray,
    out_nsubq: int,
    out_dsub: int,
    out_lastdsub: int,
    out_norm_codes: np.ndarray,
    out_norm_centroids: np.ndarray,
) -> tuple[int, np.float32]:
    """``HierarchicalSoftmaxLoss::dfs`` with k = 1 and threshold 0: (leaf, log-probability score)."""
    floor = _std_log(np.float32(0.0))
    best_node = -1
    best_score = np.float32(0.0)
    one = np.float32(1.0)
    depth = 1
    stack_nodes[0] = 2 * osz - 2
    stack_scores[0] = np.float32(0.0)
    while depth > 0:
        depth -= 1
        node = stack_nodes[depth]
        score = stack_scores[depth]
        if score < floor:
            continue
        if best_node >= 0 and score < best_score:
            continue
        if left[node] == -1 and right[node] == -1:
            best_node = node
            best_score = score
            continue
        f = _dot_row(
            hidden,
            node - osz,
            out_dense,
            out_codes,
            out_centroids,
            out_nsubq,
            out_dsub,
            out_lastdsub,
            out_norm_codes,
            out_norm_centroids,
        )
        f = one / (one + np.float32(math.exp(-f)))
        stack_nodes[depth] = right[node]
        stack_scores[depth] = score + _std_log(f)
        stack_nodes[depth + 1] = left[node]
        stack_scores[depth + 1] = score + _std_log(one - f)
        depth += 2
    return best_node, best_score


@njit(cache=True, nogil=True)
def predict_top1(
    data: np.ndarray,
    offsets: np.ndarray,
    max_chars: int,
    word_blob: np.ndarray,
    word_starts: np.ndarray,
    word_table: np.ndarray,
    entry_types: np.ndarray,
    nwords: int,
    eos_id: int,
    minn: int,
    maxn: int,
    bucket: int,
    prune_mode: int,
    prune_map: np.ndarray,
    in_dense: np.ndarray,
    in_codes: np.ndarray,
    in_centroids: np.ndarray,
    in_nsubq: int,
    in_dsub: int,
    in_lastdsub: int,
    in_norm_codes: np.ndarray,
    in_norm_centroids: np.ndarray,
    out_dense: np.ndarray,
    out_codes: np.ndarray,
    out_centroids: np.ndarray,
    out_nsubq: int,
    out_dsub: int,
    out_lastdsub: int,
    out_norm_codes: np.ndarray,
    out_norm_centroids: np.ndarray,
    tree_left: np.ndarray,
    tree_right: np.ndarray,
    dim: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top label (-1: fastText returns none) and its float32 probability for each text; also a NaN flag.

    ``data``/``offsets`` are a string array's bytes and offsets (``offsets[i]..offsets[i+1]`` is text ``i``).
    The flag marks texts whose hidden vector holds a NaN: fastText raises there, so the caller asks it.
    """
    count = offsets.size - 1
    labels = np.full(count, -1, dtype=np.int32)
    scores = np.zeros(count, dtype=np.float32)
    nan_seen = np.zeros(count, dtype=np.bool_)
    osz = tree_left.size // 2 + 1
    stack_nodes = np.zeros(2 * osz + 2, dtype=np.int32)
    stack_scores = np.zeros(2 * osz + 2, dtype=np.float32)
    hidden = np.zeros(dim, dtype=np.float32)
    longest = 0
    for i in range(count):
        longest = max(longest, offsets[i + 1] - offsets[i])
    wrapped = np.zeros(longest + 2, dtype=np.uint8)  # "<" + token + ">"
    for i in range(count):
        start = offsets[i]
        end = _clip_end(data, start, offsets[i + 1], max_chars)
        rows = 0
        for j in range(dim):
            hidden[j] = np.float32(0.0)
        position = start
        ended = False  # a literal "</s>" token ends the line, as in Dictionary::getLine
        while position < end and not ended:
            if _is_space(data[position]):
                position += 1
                continue
            token_start = position
            h = np.int64(FNV_OFFSET)
            while position < end and not _is_space(data[position]):
                h = _fnv_step(h, data[position])
                position += 1
            token_end = position
            wid = _find_word(data, token_start, token_end, h, word_table, word_blob, word_starts)
            is_eos = token_end - token_start == _EOS.size and _starts_with(data, token_start, token_end, _EOS)
            if is_eos:
                ended = True
            if wid >= 0:
                if entry_types[wid] != 0:
                    continue  # a label in the text: not an input
                _add_row(
                    hidden,
                    wid,
                    rows == 0,
                    in_dense,
                    in_codes,
                    in_centroids,
                    in_nsubq,
                    in_dsub,
                    in_lastdsub,
                    in_norm_codes,
                    in_norm_centroids,
                )
                rows += 1
                if is_eos or maxn <= 0:
                    continue  # initNgrams gives "</s>" no n-grams; maxn <= 0 means the word row alone
            elif is_eos or _starts_with(data, token_start, token_end, _LABEL_PREFIX):
                continue
            # computeSubwords over "<" + token + ">"
            length = token_end - token_start + 2
            wrapped[0] = 60
            for offset in range(token_end - token_start):
                wrapped[offset + 1] = data[token_start + offset]
            wrapped[length - 1] = 62
            for a in range(length):
                if (wrapped[a] & 0xC0) == 0x80:
                    continue
                gram = np.int64(FNV_OFFSET)
                b = a
                n = 1
                while b < length and n <= maxn:
                    gram = _fnv_step(gram, wrapped[b])
                    b += 1
                    while b < length and (wrapped[b] & 0xC0) == 0x80:
                        gram = _fnv_step(gram, wrapped[b])
                        b += 1
                    if n >= minn and not (n == 1 and (a == 0 or b == length)):
                        bucket_id = gram % bucket
                        row = -1
                        if prune_mode == PRUNE_NONE:
                            row = nwords + bucket_id
                        elif prune_mode == PRUNE_MAP:
                            mapped = prune_map[bucket_id]
                            if mapped >= 0:
                                row = nwords + mapped
                        if row >= 0:
                            _add_row(
                                hidden,
                                row,
                                rows == 0,
                                in_dense,
                                in_codes,
                                in_centroids,
                                in_nsubq,
                                in_dsub,
                                in_lastdsub,
                                in_norm_codes,
                                in_norm_centroids,
                            )
                            rows += 1
                    n += 1
        if not ended and eos_id >= 0:  # the "\n" fastText's wrapper appends reads as "</s>"
            _add_row(
                hidden,
                eos_id,
                rows == 0,
                in_dense,
                in_codes,
                in_centroids,
                in_nsubq,
                in_dsub,
                in_lastdsub,
                in_norm_codes,
                in_norm_centroids,
            )
            rows += 1
        if rows == 0:
            continue  # FastText::predict returns no prediction for an empty input
        scale = np.float32(1.0 / rows)
        for j in range(dim):
            hidden[j] *= scale
            if hidden[j] != hidden[j]:
                nan_seen[i] = True
        if nan_seen[i]:
            continue
        node, score = _best_leaf(
            hidden,
            tree_left,
            tree_right,
            osz,
            stack_nodes,
            stack_scores,
            out_dense,
            out_codes,
            out_centroids,
            out_nsubq,
            out_dsub,
            out_lastdsub,
            out_norm_codes,
            out_norm_centroids,
        )
        if node >= 0:
            labels[i] = node
            scores[i] = np.float32(math.exp(score))
    return labels, scores, nan_seen
