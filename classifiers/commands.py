"""CLI verbs of the classifier loop: ``refinery label``, ``refinery train-classifier``, ``refinery eval-classifier``.

Heavy imports (torch, transformers, fastText, scikit-learn) stay inside the handlers so ``refinery --help`` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from refinery.pipelines.commands import register_command


def _configure_label(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a finished run directory (its run.json lists the kept shards)")
    parser.add_argument("--prompt", required=True, help="quality | edu | domain | topic | *_paraphrase | a YAML path")
    parser.add_argument("--teacher", choices=["local", "http"], default="local")
    parser.add_argument("--output", required=True, help="the label set folder (created; reused to resume)")
    parser.add_argument("--size", type=int, default=1000, help="documents to sample (first use of --output only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-rejected", action="store_true", help="sample rejected documents too")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N sampled documents")
    parser.add_argument("--split", choices=["all", "train", "test"], default="all", help="test: held-out only")
    parser.add_argument("--same-as", default=None, help="only documents already labelled under this prompt")
    parser.add_argument("--max-tokens", type=int, default=256, help="document tokens shown to the teacher")
    parser.add_argument("--store-chars", type=int, default=6000, help="characters of each document kept in the set")
    parser.add_argument("--chunk-size", type=int, default=64, help="documents per written part (resume granularity)")
    parser.add_argument("--retry-errors", action="store_true", help="ask again where the teacher failed")
    parser.add_argument("--address", default=None, help="Ray address for the sampling tasks (default: embedded)")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded Ray (default: all)")
    local = parser.add_argument_group("local teacher")
    local.add_argument("--model", default=None, help="model folder, .gguf or package:DIST/file (default: SmolLM2)")
    local.add_argument("--batch-size", type=int, default=8)
    http = parser.add_argument_group("http teacher (OpenAI-compatible chat completions)")
    http.add_argument("--base-url", default=None, help="e.g. http://127.0.0.1:8000/v1")
    http.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    http.add_argument("--concurrency", type=int, default=4)
    http.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    http.add_argument("--max-retries", type=int, default=4)
    http.add_argument("--rate-limit", type=float, default=None, help="requests per second (default: unlimited)")


@register_command("label", "label a sample of a run's output with a teacher LLM", _configure_label)
def label(args: argparse.Namespace) -> int:
    from refinery.classifiers.labelling import store
    from refinery.classifiers.labelling.prompts import load_prompt
    from refinery.classifiers.labelling.run import ensure_sample, label_documents, needs_sample
    from refinery.pipelines.models import DEFAULT_TEACHER
    from refinery.pipelines.ray_session import ray_session

    prompt = load_prompt(args.prompt)
    sample_args = (args.run_dir, args.output, args.size, args.seed, args.include_rejected, args.store_chars)
    if needs_sample(args.output):
        with ray_session(args.address, args.num_cpus):
            documents = ensure_sample(*sample_args)
    else:
        documents = ensure_sample(*sample_args)
    if args.teacher == "local":
        from refinery.classifiers.labelling.local import LocalTeacher

        teacher = LocalTeacher(args.model or DEFAULT_TEACHER, batch_size=args.batch_size)
    else:
        from refinery.classifiers.labelling.http import HttpTeacher

        if not args.base_url or not args.model:
            print("refinery label --teacher http needs --base-url and --model", file=sys.stderr)
            return 2
        teacher = HttpTeacher(
            args.base_url,
            args.model,
            api_key_env=args.api_key_env,
            concurrency=args.concurrency,
            timeout_s=args.timeout,
            max_retries=args.max_retries,
            requests_per_second=args.rate_limit,
        )
    settings = store.sample_settings(args.output)
    store_chars = settings.get("store_chars", args.store_chars)
    if store_chars != args.store_chars:
        print(
            f"refinery label: {args.output} stores texts clipped to {store_chars} characters (fixed when it was "
            f"sampled); --store-chars {args.store_chars} is ignored",
            file=sys.stderr,
        )
    summary = label_documents(
        documents,
        args.output,
        prompt,
        teacher,
        max_tokens=args.max_tokens,
        chunk_size=args.chunk_size,
        limit=args.limit,
        retry_errors=args.retry_errors,
        split=args.split,
        same_as=args.same_as,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
        store_chars=store_chars,
    )
    summary["command"] = " ".join(["refinery", *sys.argv[1:]]) if sys.argv[0].endswith("refinery") else None
    summary["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    store.record_labelling(args.output, summary)
    print(json.dumps(summary))
    return 0


def _configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("labels", help="a label set folder written by refinery label")
    parser.add_argument("--prompt", required=True, help="which prompt's labels to learn (quality, edu, domain, ...)")
    parser.add_argument("--kind", choices=["fasttext", "transformer"], required=True)
    parser.add_argument(
        "--task", choices=["binary", "ordinal", "multiclass"], default=None, help="default: the prompt's"
    )
    parser.add_argument("--output", required=True, help="the student folder to write")
    parser.add_argument("--teacher-name", default=None, help="when the label set holds several teachers' labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--all", action="store_true", help="train on every document (no held-out split)")
    fasttext = parser.add_argument_group("fasttext")
    fasttext.add_argument("--epoch", type=int, default=25)
    fasttext.add_argument("--word-ngrams", type=int, default=2)
    fasttext.add_argument("--dim", type=int, default=16)
    fasttext.add_argument("--bucket", type=int, default=20_000)
    transformer = parser.add_argument_group("transformer")
    transformer.add_argument("--encoder", default=None, help="encoder reference (default: all-MiniLM-L6-v2)")
    transformer.add_argument("--head", choices=["linear", "mlp"], default="linear")
    transformer.add_argument("--max-tokens", type=int, default=256)
    transformer.add_argument("--epochs", type=int, default=300)


@register_command("train-classifier", "train a fastText or transformer student on a label set", _configure_train)
def train_classifier(args: argparse.Namespace) -> int:
    from refinery.classifiers.dataset import load_labelled

    data = load_labelled(args.labels, args.prompt, args.teacher_name)
    task = args.task or data.task
    train = data if args.all else data.split(test=False)
    if len(set(train.labels.tolist())) < 2:
        print(f"the teacher gave a single label to every training document of {args.prompt!r}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if args.kind == "fasttext":
        from refinery.classifiers.students.fasttext_student import FastTextStudent

        FastTextStudent.train(
            train.texts,
            train.labels,
            data.classes,
            task,
            args.output,
            prompt=args.prompt,
            epoch=args.epoch,
            word_ngrams=args.word_ngrams,
            dim=args.dim,
            bucket=args.bucket,
            seed=args.seed,
        )
    else:
        from refinery.classifiers.students.transformer_student import TransformerStudent

        TransformerStudent.train(
            train.texts,
            train.labels,
            data.classes,
            task,
            args.output,
            prompt=args.prompt,
            probabilities=train.probabilities,
            encoder_path=args.encoder,
            max_tokens=args.max_tokens,
            head=args.head,
            epochs=args.epochs,
            seed=args.seed,
        )
    from refinery.classifiers.provenance import record_training

    record_training(args.output, args.labels, data, train, every_document=args.all)
    print(
        json.dumps(
            {"output": args.output, "documents": len(train.ids), "seconds": round(time.perf_counter() - started, 1)}
        )
    )
    return 0


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", help="a student folder written by refinery train-classifier")
    parser.add_argument("labels", help="the label set it was trained on (its held-out split is used)")
    parser.add_argument("--output", default=None, help="where eval.json and confusion.png go (default MODEL_DIR/eval)")
    parser.add_argument(
        "--allow-training-overlap",
        action="store_true",
        help="evaluate even where held-out documents were training documents (marked in the output)",
    )
    parser.add_argument("--run", default=None, help="the run the labels were sampled from: its report links eval.html")


@register_command("eval-classifier", "evaluate a student against its teacher on held-out labels", _configure_eval)
def eval_classifier(args: argparse.Namespace) -> int:
    from refinery.classifiers.evaluation import evaluate
    from refinery.classifiers.provenance import TrainingOverlapError

    try:
        result = evaluate(args.model_dir, args.labels, args.output, args.allow_training_overlap, run_dir=args.run)
    except TrainingOverlapError as error:
        print(f"refinery eval-classifier: {error}", file=sys.stderr)
        return 2
    honesty = result["training_overlap"]
    if honesty["status"] != "disjoint":
        print(f"refinery eval-classifier: WARNING: {honesty['message']}", file=sys.stderr)
    line = {name: result["student"][name] for name in ("accuracy", "macro_f1", "spearman")}
    extra = {k: v for k, v in result.items() if k in ("student_f1_over_ceiling",)}
    print(json.dumps({"student": line, **extra, "training_overlap": honesty["status"]}))
    for name, values in [*result["baselines"].items(), ("teacher_self_agreement", result["teacher_self_agreement"])]:
        if values:
            print(json.dumps({name: {m: values[m] for m in ("accuracy", "macro_f1", "spearman")}}))
    return 0
