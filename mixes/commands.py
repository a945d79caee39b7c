"""CLI verbs of the mixes family: ``refinery shards``, ``refinery project`` (``refinery verify``: exports/commands.py).

Heavy imports stay inside the handlers so ``refinery --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from refinery.pipelines.commands import register_command


def _configure_shards(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory (run.json lists its kept shards)")
    parser.add_argument("--weights", required=True, help="weights YAML (buckets, weights or tokens, max_epochs...)")
    parser.add_argument("--output", required=True, help="output directory: manifest.json, shards/, heldout/")
    parser.add_argument("--seed", type=int, default=0, help="sampling, shard assignment and order (default 0)")
    parser.add_argument("--tokenizer", help="tokenizer for runs without n_tokens (default: bundled Llama 3)")
    parser.add_argument("--megatron-blend", help="also write a Megatron --data-path blend (w1 prefix1 ...) here")
    parser.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: embedded")
    parser.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")


@register_command("shards", "write weighted, shuffled Parquet shards and manifest.json from a run", _configure_shards)
def shards(args: argparse.Namespace) -> int:
    from refinery.pipelines.manifest import load_manifest

    from .sampling import MixPlanError
    from .writer import write_mix

    try:
        path = write_mix(
            args.run_dir,
            args.weights,
            args.output,
            seed=args.seed,
            tokenizer=args.tokenizer,
            address=args.address,
            num_cpus=args.num_cpus,
            megatron_blend=args.megatron_blend,
        )
    except (MixPlanError, FileNotFoundError) as error:
        print(f"refinery shards: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # an invalid weights file (pydantic names the field)
        print(f"refinery shards: invalid weights: {error}", file=sys.stderr)
        return 2
    manifest = load_manifest(path)
    print(f"{'bucket':<28}{'declared':>9}{'realised':>9}{'documents':>11}{'tokens':>14}{'epochs':>8}{'held out':>10}")
    for name, bucket in manifest["buckets"].items():
        print(
            f"{name:<28}{bucket['declared_share']:>9.4f}{bucket['realised_share']:>9.4f}{bucket['documents']:>11,}"
            f"{bucket['tokens']:>14,}{bucket['epochs']:>8.3f}{bucket['heldout_documents']:>10,}"
        )
    print(
        f"{len(manifest['shards'])} shards, {manifest['total_documents']:,} documents, "
        f"{manifest['total_tokens']:,} tokens; manifest: {path}"
    )
    return 0


def _configure_project(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("--tokens", type=float, help="output tokens to plan for, e.g. 15e12")
    parser.add_argument("--cores", type=int, default=1, help="CPUs the run had (global phases' wall x cores)")
    parser.add_argument("--compare", metavar="LARGER_RUN", help="report how well this run predicts a larger run")
    parser.add_argument("--sample-documents", type=int, default=2000, help="kept documents tokenised (default 2000)")
    parser.add_argument("--tokenizer", help="tokenizer (default: the recipe's token_count one, else Llama 3)")


@register_command("project", "project core-hours and input size for a target output token count", _configure_project)
def project(args: argparse.Namespace) -> int:
    from .projection import compare_runs, comparison_table, project_run, projection_table, write_projection

    if args.compare:
        try:
            comparison = compare_runs(args.run_dir, args.compare)
        except (FileNotFoundError, ValueError) as error:
            print(f"refinery project: {error}", file=sys.stderr)
            return 2
        print(comparison_table(comparison))
        if args.tokens is None:
            return 0
    if args.tokens is None:
        print("refinery project: give --tokens, --compare LARGER_RUN or both", file=sys.stderr)
        return 2
    try:
        projection = project_run(args.run_dir, args.tokens, args.sample_documents, args.tokenizer, args.cores)
    except (FileNotFoundError, ValueError) as error:
        print(f"refinery project: {error}", file=sys.stderr)
        return 2
    path = write_projection(args.run_dir, projection)
    from refinery.pipelines.report import write_report

    write_report(args.run_dir)  # the report now includes the projection section
    print(projection_table(projection))
    print(f"wrote {path} and added it to {args.run_dir}/report.html")
    return 0
