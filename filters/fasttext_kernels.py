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
  ``norm * centroid`` per sub-vector (``addcode``). The caller passes a quantized input matrix already expanded
  to those float32 products (one IEEE multiplication each, so the same values), which makes every row one
  contiguous read;
* hierarchical softmax walks the Huffman tree depth first, left child first (``dfs``): a node's probability is
  ``1 / (1 + expf(-f))`` in float32, where ``f`` is the float32 dot product with the node's output row (for a
  quantized output matrix ``sum(x * centroid) * norm``, the caller passing the centroids expanded per row and
  the norms apart), each child adds ``float32(log(double(p) + 1e-5))``; a
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


@njit(cache=True, nogil=True)
def _is_space(byte: np.uint8) -> bool:
    """fastText's ``readWord`` separators; RE2's ``\\s`` (replaced by a space first) is a subset of them."""
    return byte == 32 or byte == 10 or byte == 13 or byte == 9 or byte == 11 or byte == 12 or byte == 0


@njit(cache=True, nogil=True)
def _fnv_step(h: np.int64, byte: np.uint8) -> np.int64:
    """One FNV-1a step over a signed char: bytes >= 0x80 are sign-extended to 32 bits before the xor."""
    return ((h ^ (np.int64(np.int8(byte)) & MASK32)) * FNV_PRIME) & MASK32


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


@njit(cache=True, nogil=True)
def _starts_with(data: np.ndarray, start: int, end: int, prefix: np.ndarray) -> bool:
    if end - start < prefix.size:
        return False
    for offset in range(prefix.size):  # noqa: SIM110 (a loop numba compiles; no generator)
        if data[start + offset] != prefix[offset]:
            return False
    return True


@njit(cache=True, nogil=True)
def subword_rows(
    wrapped: np.ndarray,
    length: int,
    minn: int,
    maxn: int,
    bucket: int,
    nwords: int,
    prune_mode: int,
    prune_map: np.ndarray,
    rows: np.ndarray,
    count: int,
) -> int:
    """``computeSubwords`` + ``pushHash`` over ``wrapped[:length]`` ("<" + token + ">"): rows appended at ``count``.

    Returns the new count. A lead byte starts a character and continuation bytes (``10xxxxxx``) extend it; the
    n-grams of ``minn``..``maxn`` characters are hashed (FNV-1a over signed chars) modulo ``bucket``, except the
    lone ``<`` and ``>``; a pruned model keeps only the buckets its pruning index maps.
    """
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
                if prune_mode == PRUNE_NONE:
                    rows[count] = nwords + bucket_id
                    count += 1
                elif prune_mode == PRUNE_MAP:
                    mapped = prune_map[bucket_id]
                    if mapped >= 0:
                        rows[count] = nwords + mapped
                        count += 1
            n += 1
    return count


@njit(cache=True, nogil=True)
def vocabulary_rows(
    word_blob: np.ndarray,
    word_starts: np.ndarray,
    entry_types: np.ndarray,
    eos_id: int,
    minn: int,
    maxn: int,
    bucket: int,
    nwords: int,
    prune_mode: int,
    prune_map: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``Dictionary::initNgrams``: each word's input rows (its own id, then its n-grams), as CSR (starts, rows).

    Labels get no rows (``getLine`` never adds them); ``</s>`` gets its id only; ``maxn <= 0`` gives the id only.
    """
    size = word_starts.size - 1
    longest = 0
    for word in range(size):
        longest = max(longest, word_starts[word + 1] - word_starts[word])
    wrapped = np.zeros(longest + 2, dtype=np.uint8)
    scratch = np.zeros((longest + 2) * (maxn + 1) + 1, dtype=np.int64)
    starts = np.zeros(size + 1, dtype=np.int64)
    pieces = []
    total = 0
    for word in range(size):
        count = 0
        if entry_types[word] == 0:
            scratch[0] = word
            count = 1
            if word != eos_id and maxn > 0:
                length = word_starts[word + 1] - word_starts[word] + 2
                wrapped[0] = 60
                for offset in range(length - 2):
                    wrapped[offset + 1] = word_blob[word_starts[word] + offset]
                wrapped[length - 1] = 62
                count = subword_rows(wrapped, length, minn, maxn, bucket, nwords, prune_mode, prune_map, scratch, 1)
        pieces.append(scratch[:count].copy())
        total += count
        starts[word + 1] = total
    rows = np.zeros(total, dtype=np.int32)
    for word in range(size):
        rows[starts[word] : starts[word + 1]] = pieces[word]
    return starts, rows


@njit(cache=True, nogil=True)
def _add_row(hidden: np.ndarray, matrix: np.ndarray, row: int, first: bool) -> None:
    if first:
        for j in range(hidden.size):
            hidden[j] = matrix[row, j]
    else:
        for j in range(hidden.size):
            hidden[j] += matrix[row, j]


@njit(cache=True, nogil=True)
def _std_log(x: np.float32) -> np.float32:
    """fastText's ``std_log``: ``log(x + 1e-5)`` in double, returned as float."""
    return np.float32(math.log(np.float64(x) + 1e-5))


@njit(cache=True, nogil=True)
def _best_leaf(
    hidden: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    output: np.ndarray,
    output_norms: np.ndarray,
    stack_nodes: np.ndarray,
    stack_scores: np.ndarray,
) -> tuple[int, np.float32]:
    """``HierarchicalSoftmaxLoss::dfs`` with k = 1 and threshold 0: (leaf, log-probability score)."""
    osz = left.size // 2 + 1
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
        row = node - osz
        f = np.float32(0.0)
        for j in range(hidden.size):
            f += hidden[j] * output[row, j]
        f = f * output_norms[row]
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
    vocab_row_starts: np.ndarray,
    vocab_rows: np.ndarray,
    eos_id: int,
    minn: int,
    maxn: int,
    bucket: int,
    nwords: int,
    prune_mode: int,
    prune_map: np.ndarray,
    input_rows: np.ndarray,
    input_from_zero: bool,
    output: np.ndarray,
    output_norms: np.ndarray,
    tree_left: np.ndarray,
    tree_right: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top label (-1: fastText returns none) and its float32 probability for each text; also a NaN flag.

    ``data``/``offsets`` are a string array's bytes and offsets (``offsets[i]..offsets[i+1]`` is text ``i``).
    The flag marks texts whose hidden vector holds a NaN (fastText raises there), for the caller to hand back.
    """
    count = offsets.size - 1
    labels = np.full(count, -1, dtype=np.int32)
    scores = np.zeros(count, dtype=np.float32)
    nan_seen = np.zeros(count, dtype=np.bool_)
    stack_nodes = np.zeros(tree_left.size + 2, dtype=np.int32)
    stack_scores = np.zeros(tree_left.size + 2, dtype=np.float32)
    dim = input_rows.shape[1]
    hidden = np.zeros(dim, dtype=np.float32)
    longest = 0
    for i in range(count):
        longest = max(longest, offsets[i + 1] - offsets[i])
    longest = min(longest, 4 * max_chars)  # a token lies within the clipped text: max_chars code points
    wrapped = np.zeros(longest + 2, dtype=np.uint8)  # "<" + token + ">"
    token_rows = np.zeros((longest + 2) * (max(maxn, 0) + 1) + 1, dtype=np.int64)
    for i in range(count):
        start = offsets[i]
        end = _clip_end(data, start, offsets[i + 1], max_chars)
        added = 0
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
            ended = token_end - token_start == _EOS.size and _starts_with(data, token_start, token_end, _EOS)
            wid = _find_word(data, token_start, token_end, h, word_table, word_blob, word_starts)
            if wid >= 0:  # its rows as initNgrams computed them (none for a label)
                for k in range(vocab_row_starts[wid], vocab_row_starts[wid + 1]):
                    _add_row(hidden, input_rows, vocab_rows[k], added == 0 and not input_from_zero)
                    added += 1
                continue
            if ended or _starts_with(data, token_start, token_end, _LABEL_PREFIX):
                continue  # "</s>" outside the dictionary adds nothing; so does an unknown "__label__..."
            length = token_end - token_start + 2
            wrapped[0] = 60
            for offset in range(length - 2):
                wrapped[offset + 1] = data[token_start + offset]
            wrapped[length - 1] = 62
            found = subword_rows(wrapped, length, minn, maxn, bucket, nwords, prune_mode, prune_map, token_rows, 0)
            for k in range(found):
                _add_row(hidden, input_rows, token_rows[k], added == 0 and not input_from_zero)
                added += 1
        if not ended and eos_id >= 0:  # the "\n" fastText's wrapper appends reads as "</s>"
            for k in range(vocab_row_starts[eos_id], vocab_row_starts[eos_id + 1]):
                _add_row(hidden, input_rows, vocab_rows[k], added == 0 and not input_from_zero)
                added += 1
        if added == 0:
            continue  # FastText::predict returns no prediction for an empty input
        scale = np.float32(1.0 / added)
        for j in range(dim):
            hidden[j] *= scale
            if hidden[j] != hidden[j]:
                nan_seen[i] = True
        if nan_seen[i]:
            continue
        node, score = _best_leaf(hidden, tree_left, tree_right, output, output_norms, stack_nodes, stack_scores)
        if node >= 0:
            labels[i] = node
            scores[i] = np.float32(math.exp(score))
    return labels, scores, nan_seen
