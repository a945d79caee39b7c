"""GPU check for ``embed``: docs/s of Refinery's encoder on one GPU against sentence-transformers on the same GPU.

One command (on a machine with a CUDA GPU and the project installed): ``.venv/bin/python benchmarks/gpu_embed.py``.
Sized to finish in well under 3 minutes on one GPU: model loads (~10 s each), a warm-up, then each contender
encodes the same texts (the sample corpus's documents, repeated to ``--docs``, 256 tokens) three times and the
best time is kept. Contenders:

* ``refinery/embed-bf16`` — :class:`refinery.dedup.encoder.TextEncoder` on ``cuda`` as the stage runs it
  (bfloat16 weights, length-sorted batches, batch ``--batch-size``);
* ``sentence-transformers/fp32`` — ``SentenceTransformer.encode`` with its defaults on ``cuda`` (float32);
* ``sentence-transformers/bf16`` — the same with bfloat16 weights (``model_kwargs={"dtype": bfloat16}``),
  the fair comparison of the pipeline around the model.

Also prints the minimum cosine between Refinery's bf16 embeddings and sentence-transformers' fp32 ones (the
cost of bf16 in agreement) and the anchors: NeMo Curator's nightly embedding floor of ~875 docs/s per GPU,
FineWeb-Edu's ~1,050 docs/s per GPU with a BERT-base-sized classifier. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import load_documents


def _timed(encode, texts: list[str], repeats: int) -> tuple[float, np.ndarray]:
    import torch

    best, vectors = float("inf"), None
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        vectors = encode(texts)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, np.asarray(vectors, dtype=np.float32)


def main() -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from refinery.dedup.encoder import TextEncoder
    from refinery.pipelines.models import DEFAULT_ENCODER, resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this benchmark needs one")
    corpus = load_documents().column("text").to_pylist()
    texts = (corpus * (args.docs // len(corpus) + 1))[: args.docs]
    results: dict[str, dict] = {"gpu": {"name": torch.cuda.get_device_name(0)}}

    ours = TextEncoder(device="cuda", batch_size=args.batch_size)
    ours.encode(texts[: args.batch_size])
    seconds, reference = _timed(ours.encode, texts, args.repeats)
    results["refinery/embed-bf16"] = {"docs": len(texts), "seconds": seconds, "docs_per_s": len(texts) / seconds}
    del ours
    torch.cuda.empty_cache()

    path = str(resolve_model_path(DEFAULT_ENCODER))
    for name, kwargs in (
        ("sentence-transformers/fp32", {}),
        ("sentence-transformers/bf16", {"dtype": torch.bfloat16}),
    ):
        model = SentenceTransformer(path, device="cuda", local_files_only=True, model_kwargs=kwargs or None)
        encode = lambda batch, m=model: m.encode(batch, batch_size=args.batch_size, normalize_embeddings=True)  # noqa: E731
        encode(texts[: args.batch_size])
        seconds, vectors = _timed(encode, texts, args.repeats)
        results[name] = {
            "docs": len(texts),
            "seconds": seconds,
            "docs_per_s": len(texts) / seconds,
            "min_cosine_to_refinery": float(np.min(np.sum(vectors * reference, axis=1))),
        }
        del model
        torch.cuda.empty_cache()

    print(f"GPU: {results['gpu']['name']}")
    for name, r in results.items():
        if name != "gpu":
            extra = (
                f"  min cosine to refinery {r['min_cosine_to_refinery']:.5f}" if "min_cosine_to_refinery" in r else ""
            )
            print(f"{name:<30}{r['docs']:>8} docs {r['seconds']:>8.2f} s {r['docs_per_s']:>10.0f} docs/s{extra}")
    print("anchors: NeMo Curator nightly floor ~875 docs/s per GPU; FineWeb-Edu ~1,050 docs/s per GPU (BERT-base)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
