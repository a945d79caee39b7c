"""CLI verbs of the exports family, what trainers run: ``refinery export`` and ``refinery verify``.

``verify`` checks a mix's ``manifest.json`` (the spine's manifest contract) or an export's ``export.json``: it lives
here, at the top of the layers, because it reads both.

Heavy imports stay inside the handler so ``refinery --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from refinery.pipelines.commands import register_command


def _configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="a manifest.json written by refinery shards (a path or an fsspec URL)")
    parser.add_argument("--format", required=True, choices=("megatron", "datatrove"), help="the trainer's format")
    parser.add_argument(
        "--output",
        required=True,
        help="export folder, a local path or an fsspec URL (s3://, gs://, ...): export.json, blends, one dataset "
        "per bucket",
    )
    parser.add_argument("--bos-token", help="BOS token (default: the manifest's, <|begin_of_text|> for Llama 3)")
    parser.add_argument("--eos-token", help="EOS/EOD token (default: the manifest's, <|end_of_text|> for Llama 3)")
    parser.add_argument(
        "--tokenizer-name",
        help="datatrove: the tokenizer named in .ds.metadata, which nanotron loads with AutoTokenizer "
        "(a Hugging Face name or folder; default: the manifest's tokenizer reference)",
    )
    parser.add_argument("--keep-parts", action="store_true", help="Megatron: keep the per-shard parts in _work/")
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: embedded")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")


@register_command(
    "export", "tokenize a mix manifest into Megatron .bin/.idx or datatrove/nanotron .ds datasets", _configure_export
)
def export(args: argparse.Namespace) -> int:
    from refinery.pipelines.manifest import ManifestError

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
            tokenizer_name=args.tokenizer_name,
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


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("manifest", help="a manifest.json (refinery shards) or export.json (refinery export)")


@register_command(
    "verify",
    "check every file a manifest or export.json lists (size and sha256); non-zero exit on any mismatch",
    _configure_verify,
)
def verify(args: argparse.Namespace) -> int:
    from refinery.pipelines.manifest import Manifest, ManifestError

    from .lineage import is_export_manifest, load_export, verify_export

    try:
        if is_export_manifest(args.manifest):
            problems, files = verify_export(args.manifest), len(load_export(args.manifest)["files"])
        else:
            manifest = Manifest.read(args.manifest)
            problems, files = manifest.verify(full=True), len(manifest.entries())
    except ManifestError as error:
        print(f"refinery verify: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"BAD {problem}", file=sys.stderr)
    if problems:
        print(f"refinery verify: {len(problems)} bad file(s) in {args.manifest}", file=sys.stderr)
        return 1
    print(f"ok: {files} files match {args.manifest}")
    return 0
