"""``refinery train MANIFEST --config tiny|proxy|150m|1b --output DIR [--tokens N] [--seed S] [--resume]``."""

from __future__ import annotations

import argparse

from refinery.pipelines.commands import register_command

CONFIGS = ("tiny", "proxy", "150m", "1b")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="manifest.json written by `refinery shards`")
    parser.add_argument("--config", choices=CONFIGS, default="tiny", help="model size and training preset")
    parser.add_argument("--output", required=True, help="run folder: log.jsonl, loss.png, checkpoints, summary")
    parser.add_argument("--tokens", type=int, default=None, help="token budget (default: the preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument(
        "--verify-shards",
        action="store_true",
        help="hash every shard before training (default: sizes only; `refinery verify` is the same full check)",
    )


@register_command("train", "train a decoder on a manifest's shards; held-out loss per bucket", _configure)
def train_command(args: argparse.Namespace) -> int:
    import json

    from refinery.training.trainer import TrainingError, preset, train

    config = preset(args.config, token_budget=args.tokens, seed=args.seed, seq_len=args.seq_len)
    try:
        summary = train(
            args.manifest,
            args.output,
            config,
            resume=args.resume,
            progress=not args.quiet,
            verify_shards=args.verify_shards,
        )
    except TrainingError as error:
        print(f"refinery train: {error}")
        return 2
    print(json.dumps({k: summary[k] for k in ("steps", "tokens", "eval_losses", "mean_eval_loss")}, indent=2))
    return 0
