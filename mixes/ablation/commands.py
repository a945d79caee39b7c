"""``refinery ablate RUN_DIR --config ABLATE.yaml --output DIR``: filter ablations as a CLI verb."""

from __future__ import annotations

import argparse
import sys

from refinery.pipelines.commands import register_command


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--config", required=True, help="ablation config YAML (recipes/ablations/llama3_filters.yaml)")
    parser.add_argument("--output", required=True, help="output directory: ablation.json, ablation.png, report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


@register_command("ablate", "train proxies with and without each stage's decisions; report the loss deltas", _configure)
def ablate_command(args: argparse.Namespace) -> int:
    from .config import AblateConfigError, load_config
    from .run import ablate
    from .sources import AblationInputError

    try:
        config = load_config(args.config)
    except (OSError, AblateConfigError) as error:
        print(f"refinery ablate: invalid config {args.config}: {error}", file=sys.stderr)
        return 2
    try:
        report = ablate(args.run_dir, config, args.output, progress=not args.quiet)
    except AblationInputError as error:
        print(f"refinery ablate: {error}", file=sys.stderr)
        return 2
    from .results import table_text

    print(table_text(report["table"]))
    print(f"report: {args.output}/report.html")
    return 0
