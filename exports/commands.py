"""CLI verb of the exports family: ``refinery export MANIFEST --format megatron|datatrove --output DIR``.

Heavy imports stay inside the handler so ``refinery --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from refinery.pipelines.commands import register_command


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="a manifest.json written by refinery shards")
    parser.add_argument("--format", required=True, choices=("megatron", "datatrove"), help="the trainer's format")
    parser.add_argument("--output", required=True, help="export folder: export.json, blends, one dataset per bucket")
    parser.add_argument("--bos-token", help="BOS token (default: the manifest's, <|begin_of_text|> for Llama 3)")
    parser.add_argument("--eos-token", help="EOS/EOD token (default: the manifest's, <|end_of_text|> for Llama 3)")
    parser.add_argument("--keep-parts", action="store_true", help="Megatron: keep the per-shard parts in _work/")
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: embedded")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")


@register_command(
    "export", "tokenize a mix manifest into Megatron .bin/.idx or datatrove/nanotron .ds datasets", _configure_export
)
def export(args: argparse.Namespace) -> int:
    from refinery.mixes.manifest import ManifestError

    from .exporter import export_manifest
    from .lineage import load_export
    from .shard_task import ExportError

    try:
        path = export_manifest(
            args.manifest,
            args.format,
            args.output,
            address=args.address,
            num_cpus=args.num_cpus,
            bos_token=args.bos_token,
            eos_token=args.eos_token,
            keep_parts=args.keep_parts,
        )
    except (ManifestError, ExportError, FileNotFoundError) as error:
        print(f"refinery export: {error}", file=sys.stderr)
        return 2
    record = load_export(path)
    print(f"{'dataset':<36}{'weight':>10}{'documents':>11}{'tokens':>14}")
    for dataset in record["datasets"]:
        print(f"{dataset['name']:<36}{dataset['weight']:>10.6f}{dataset['documents']:>11,}{dataset['tokens']:>14,}")
    print(f"{len(record['files'])} files, {args.format} format; export manifest: {path}")
    return 0
