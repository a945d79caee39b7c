"""Trainer benchmark: tokenization + packing against datatrove's DocumentTokenizer, and CPU training speed.

One command: ``.venv/bin/python benchmarks/train_bench.py [--steps N]``.

* tokenize+pack: every document of the sample corpus, the Llama 3 ``tokenizer.json`` that Refinery bundles, one
  core each (Rust tokenizer threads limited to one as well). Refinery: ``encode_batch`` in batches of 1,000, begin/
  end-of-text added, packed into 8,192-token sequences with document ids, positions and labels (in memory).
  datatrove: ``DocumentTokenizer`` with the same file and ``<|end_of_text|>`` appended, unshuffled, writing its
  ``.ds`` token file and index to a temporary folder (its output form; it does no packing);
* train: ``tiny`` and ``proxy`` presets on a manifest of real sample documents, one core, one torch thread;
  tokens/s over ``--steps`` optimizer steps after one warm-up step (vocabulary building and loading excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the Rust tokenizer's thread pool: one core per contender
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import load_documents, peak_rss_mb, pin_one_core

TOKENIZE = ("refinery/tokenize+pack", "datatrove/tokenize")
TRAIN = ("refinery/train-tiny", "refinery/train-proxy")
BATCH = 1000


def _refinery_tokenize(texts: list[str]) -> int:
    from refinery.pipelines.models import load_tokenizer
    from refinery.training.packing import PackConfig, Packer, tokenize_documents

    tokenizer, config = load_tokenizer(), PackConfig(seq_len=8192)
    packer = Packer(config)
    for start in range(0, len(texts), BATCH):
        packer.add(tokenize_documents(texts[start : start + BATCH], tokenizer, config))
        packer.take()
    packer.finish("pad")
    return packer.stats.document_tokens


def _datatrove_tokenize(texts: list[str]) -> int:
    from datatrove.data import Document
    from datatrove.pipeline.tokens import DocumentTokenizer

    from refinery.pipelines.models import tokenizer_file

    with tempfile.TemporaryDirectory() as folder:
        step = DocumentTokenizer(
            output_folder=folder,
            tokenizer_name_or_path=str(tokenizer_file()),
            eos_token="<|end_of_text|>",
            shuffle_documents=False,
            batch_size=BATCH,
        )
        documents = (Document(text=t, id=str(i)) for i, t in enumerate(texts))
        step.run(documents)  # tokenizes and writes; returns nothing
        return int(step.stats["tokens"].total)


def _train(size: str, steps: int) -> dict:
    import torch
    from training_fixtures import build_manifest

    from refinery.training.trainer import Trainer, preset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        manifest = build_manifest(load_documents(), Path(folder) / "mix", per_bucket=120, max_chars=40_000)
        config = preset(size, token_budget=10**9, eval_sequences=1)
        trainer = Trainer(manifest, Path(folder) / "run", config)
        trainer.train_step()  # warm-up
        started = time.perf_counter()
        for _ in range(steps):
            loss = trainer.train_step()["loss"]
        seconds = time.perf_counter() - started
    return {"items": steps * config.tokens_per_step, "seconds": seconds, "loss": loss,
            "vocab": trainer.vocabulary.size, "params": sum(p.numel() for p in trainer.model.parameters())}  # fmt: skip


def worker(contender: str, steps: int) -> None:
    pin_one_core()
    if contender in TOKENIZE:
        texts = load_documents().column("text").to_pylist()
        started = time.perf_counter()
        tokens = (_refinery_tokenize if contender.startswith("refinery") else _datatrove_tokenize)(texts)
        result = {"items": tokens, "seconds": time.perf_counter() - started, "documents": len(texts)}
    else:
        result = _train(contender.rsplit("-", 1)[1], steps)
    print(json.dumps(result | {"peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=TOKENIZE + TRAIN, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per training contender")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    load_documents()  # extract once, outside every timing
    results = {}
    for contender in TOKENIZE + TRAIN:
        command = [sys.executable, __file__, "--worker", contender, "--steps", str(args.steps)]
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        results[contender] = json.loads(out.stdout.strip().splitlines()[-1])
    peer = results["datatrove/tokenize"]
    print(f"{'contender':<26}{'tokens':>12}{'seconds':>10}{'tokens/s':>12}{'peak RSS MB':>13}{'x rate':>8}")
    for contender, r in results.items():
        rate = r["items"] / r["seconds"]
        ratio = f"{rate / (peer['items'] / peer['seconds']):>8.2f}" if contender in TOKENIZE else f"{'':>8}"
        print(f"{contender:<26}{r['items']:>12,}{r['seconds']:>10.2f}{rate:>12,.0f}{r['peak_rss_mb']:>13.0f}{ratio}")
    for contender in TRAIN:
        r = results[contender]
        print(f"  {contender}: {r['params']:,} parameters, vocabulary {r['vocab']:,}, last loss {r['loss']:.3f}")
    print("one core per contender; x rate = ratio to datatrove's DocumentTokenizer on the same documents and file")


if __name__ == "__main__":
    main()
