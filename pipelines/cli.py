"""``refinery``: run a recipe, redraw a run's report, or check a recipe without running it.

    refinery run [RECIPE] [--address ADDR] [--num-cpus N] [--output DIR]
    refinery report RUN_DIR
    refinery validate RECIPE
    refinery stages

With no recipe, ``run`` uses ``recipes/llama3.yaml`` from the current folder: the bundled sample corpus.
Exit codes: 0 done, 1 some shards failed (rerun to retry only those), 2 invalid recipe or arguments,
3 accounting mismatch (documents lost or invented: a bug, reported loudly).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from refinery.pipelines.recipe import RecipeError, load_recipe

DEFAULT_RECIPE = Path("recipes/llama3.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery", description="Refinery: pretraining data pipelines on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run (or resume) a recipe")
    run.add_argument("recipe", nargs="?", default=str(DEFAULT_RECIPE), help="recipe YAML (default: %(default)s)")
    run.add_argument("--address", help="Ray cluster address (auto, HOST:PORT, ray://HOST:PORT); default: embedded")
    run.add_argument("--num-cpus", type=int, help="CPUs for the embedded Ray (default: all)")
    run.add_argument("--max-in-flight", type=int, help="tasks submitted at once (default: 2 x CPUs)")
    run.add_argument("--output", help="run directory (overrides the recipe's output_dir)")
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.add_argument("--fresh", action="store_true", help="delete a previous run in the run directory first")
    report = commands.add_parser("report", help="write report.html and report.json for a run directory")
    report.add_argument("run_dir")
    validate = commands.add_parser("validate", help="validate a recipe and print its plan")
    validate.add_argument("recipe")
    commands.add_parser("stages", help="list the stages a recipe can use, with their parameters")
    from refinery.pipelines.commands import command_registry

    for command in command_registry().values():
        command.configure(commands.add_parser(command.name, help=command.help))
    return parser


def _load(path: str, output: str | None = None):
    overrides = {"output_dir": str(Path(output).resolve()) if output and "://" not in output else output}
    return load_recipe(path, {k: v for k, v in overrides.items() if v})


def _run(args: argparse.Namespace) -> int:
    from refinery.pipelines.accounting import AccountingError
    from refinery.pipelines.report import tail_at_line, terminal_table
    from refinery.pipelines.runner import RunDirectoryConflict, run_recipe
    from refinery.pipelines.shards import InputNotFoundError, ShardNameCollision
    from refinery.pipelines.unique_ids import DuplicateIdError

    recipe = _load(args.recipe, args.output)
    try:
        result = run_recipe(
            recipe,
            address=args.address,
            num_cpus=args.num_cpus,
            max_in_flight=args.max_in_flight,
            show_progress=not args.quiet,
            fresh=args.fresh,
        )
    except (RunDirectoryConflict, InputNotFoundError, ShardNameCollision, DuplicateIdError) as error:
        print(f"refinery: {error}", file=sys.stderr)
        return 2
    except AccountingError as error:
        print(f"refinery: ACCOUNTING MISMATCH: {error}", file=sys.stderr)
        return 3
    print(terminal_table(result.summary))
    print(f"run directory: {result.run_dir}  (report: {result.run_dir}/report.html)")
    if result.failures:
        for failure in result.failures:
            error = tail_at_line(failure["error"], 400)
            print(f"FAILED shard {failure['shard']} ({failure['file']}): {error}", file=sys.stderr)
        if result.blocked:
            print(
                f"refinery: stopped before segment {result.blocked['segment']} ({result.blocked['stage']}): a global "
                f"stage needs every shard, and {len(result.blocked['unfinished_shards'])} failed",
                file=sys.stderr,
            )
        print("refinery: some shards failed; run the same command again to retry only those", file=sys.stderr)
        return 1
    return 0


def _validate(args: argparse.Namespace) -> int:
    from refinery.pipelines.plan import plan_segments
    from refinery.pipelines.shards import InputNotFoundError, ShardNameCollision, discover_shards

    recipe = _load(args.recipe)
    problems = []
    counts = []
    for spec in recipe.inputs:
        try:
            counts.append(f"  input {spec.name} ({spec.format}): {len(discover_shards(spec))} shards")
        except (InputNotFoundError, ShardNameCollision) as error:
            problems.append(str(error))
    if problems:
        for problem in problems:
            print(f"refinery: {problem}", file=sys.stderr)
        return 2
    print(f"recipe {recipe.name!r} is valid (fingerprint {recipe.fingerprint()})")
    for line in counts:
        print(line)
    for segment in plan_segments(recipe.stages, recipe.fingerprint()):
        print(f"  segment {segment.index} ({segment.kind}): {' -> '.join(segment.stage_names)}")
    return 0


def _stages() -> int:
    from refinery.pipelines.stages import stage_registry

    for name, cls in sorted(stage_registry().items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name} ({cls.kind}): {doc}")
        for field_name, info in cls.model_fields.items():
            kind = getattr(info.annotation, "__name__", None) or str(info.annotation).replace("typing.", "")
            default = info.get_default(call_default_factory=True)
            print(f"    {field_name}: {kind} = {default!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "stages":
            return _stages()
        if args.command != "report":
            from refinery.pipelines.commands import command_registry

            return command_registry()[args.command].handler(args)
        return _report(args)
    except RecipeError as error:
        print(f"refinery: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrefinery: interrupted; run the same command again to resume where it stopped", file=sys.stderr)
        return 130


def _report(args: argparse.Namespace) -> int:
    from refinery.pipelines import storage
    from refinery.pipelines.report import write_report

    fs, root = storage.filesystem(args.run_dir)
    if not fs.exists(storage.join(root, "run.json")):
        print(f"refinery: {args.run_dir} is not a finished run directory (no run.json)", file=sys.stderr)
        return 2
    write_report(args.run_dir)
    print(f"wrote {args.run_dir}/report.html and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
