"""``ablate(run_dir, config, output)``: the whole ablation in its numbered steps.

1. Open the finished run; check every named stage ran in it.
2. Held-out targets: a seeded slice per bucket of the run's output, plus the user's sets (``heldout/``).
3. Training data per variant (``variants/NAME/`` + ``NAME.manifest.json``): ``output`` (the run's output), one per
   configured variant (the output + that stage group's rejections), ``unfiltered`` (the output + every stage's
   rejections but ingest's); held-out documents and their duplicates removed from all (:mod:`.variants`).
4. One compact vocabulary over the largest variant, shared by every proxy (losses comparable across variants).
5. Proxies: every variant at every seed, the same preset and token budget, as Ray tasks through the spine's
   executor; finished proxies (``proxies/*/result.json`` with the current fingerprint) are never retrained.
6. The table (``ablation.json``), a plot (``ablation.png``) and an HTML page (``report.html``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refinery.pipelines.executor import Resources, map_tasks
from refinery.pipelines.models import DEFAULT_TOKENIZER
from refinery.pipelines.storage import atomic_output, file_digest, filesystem, write_json_file

from . import results as res
from . import sources, variants
from .config import AblateConfig, load_config
from .proxies import ProxyJob, finished, proxy_fingerprint, train_proxy

REPORT = "ablation.json"


def variant_stages(view: sources.RunView, config: AblateConfig) -> dict[str, list[str]]:
    """Every variant's put-back stages: ``output`` none, each configured group, ``unfiltered`` all but ingest."""
    stages = {res.BASELINE: []}
    stages.update({variant.label: list(variant.stages) for variant in config.variants})
    if config.include_unfiltered:
        stages["unfiltered"] = [s for s in view.stage_segments if s != "ingest"]
    return stages


def build_data(view: sources.RunView, config: AblateConfig, output: Path, tokenizer: str) -> dict[str, Path]:
    """Steps 2 and 3: the held-out targets and every variant's shards and manifest; returns manifest per variant.

    Every document is read and tokenized once: the union of the output and every rejection any variant puts back;
    each variant is a mask over it (its ``stage`` null, or one of the variant's stages).
    """
    column = config.heldout.column
    kept = sources.kept_documents(view, column)
    heldout = variants.choose_heldout(kept, config.heldout, output)
    if not heldout.files:
        raise sources.AblationInputError("no bucket is large enough to hold out a target; lower heldout.fraction")
    heldout_entries = variants.heldout_entries(output, heldout, tokenizer)
    stages = variant_stages(view, config)
    wanted = sorted({stage for group in stages.values() for stage in group})
    union = pa.concat_tables([kept, sources.rejected_documents(view, wanted, column)])
    union = variants.with_tokens(variants.training_rows(union, heldout), tokenizer)
    manifests: dict[str, Path] = {}
    for name, group in stages.items():
        stage = union.column("stage")
        mask = pc.or_kleene(pc.is_null(stage), pc.is_in(stage, value_set=pa.array(group, pa.string())))
        shards = variants.write_variant(
            union.filter(pc.fill_null(mask, False)), output, Path("variants") / name, config.shards,
            "refinery-ablation-order",
        )  # fmt: skip
        selection = {"method": "refinery ablate", "variant": name, "stages": group}
        manifests[name] = variants.write_manifest(
            output / f"{name}.manifest.json", shards, heldout_entries, tokenizer, view.fingerprint, selection
        )
    return manifests


def shared_vocabulary(manifest: Path, config: AblateConfig, tokenizer: str) -> tuple[Any, str]:
    """Step 4: the compact vocabulary of the proxy preset over ``manifest`` and a digest of it."""
    import numpy as np

    from refinery.pipelines.models import load_tokenizer
    from refinery.training.trainer import preset
    from refinery.training.vocab import FULL, build_vocabulary

    max_size = preset(config.proxy.config, **config.proxy.overrides).vocab_max
    vocabulary = FULL if max_size is None else build_vocabulary(manifest, load_tokenizer(tokenizer), max_size)
    ids = np.zeros(0, np.int64) if vocabulary.ids is None else np.asarray(vocabulary.ids, np.int64)
    digest = hashlib.sha256(ids.tobytes() + bytes([int(vocabulary.rare)])).hexdigest()
    return vocabulary, digest


def run_proxies(jobs: list[ProxyJob], progress: bool) -> dict[str, dict[str, Any]]:
    """Step 5: train what is not finished; every result by job name."""
    done = {job.name: finished(Path(job.folder), job.fingerprint) for job in jobs}
    todo = [job for job in jobs if done[job.name] is None]
    if progress:
        print(f"ablate: {len(jobs) - len(todo)} proxies done before, {len(todo)} to train", file=sys.stderr)
    trained = map_tasks(
        train_proxy, todo, resources=Resources(cpus=1), retries=1, description="ablate: proxies" if progress else None
    )
    for job, result in zip(todo, trained, strict=True):
        done[job.name] = result
    return {name: result for name, result in done.items() if result is not None}


def ablate(
    run_dir: str | Path,
    config: AblateConfig | str | Path | dict[str, Any],
    output: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the ablation (resuming what is done) and return the report written to ``output/ablation.json``."""
    from refinery.pipelines.ray_session import ray_session

    config = load_config(config)
    output = Path(output)
    view = sources.open_run(run_dir)  # step 1
    for variant in config.variants:
        sources.check_stages(view, variant.stages)
    stages = variant_stages(view, config)
    tokenizer = view.tokenizer or DEFAULT_TOKENIZER
    output.mkdir(parents=True, exist_ok=True)
    manifests = build_data(view, config, output, tokenizer)  # steps 2-3
    largest = manifests.get("unfiltered") or max(manifests.values(), key=lambda p: p.stat().st_size)
    vocabulary, vocabulary_digest = shared_vocabulary(largest, config, tokenizer)  # step 4
    jobs = []
    for name, manifest in manifests.items():
        digest = file_digest(manifest)[1]
        for seed in config.seeds:
            jobs.append(
                ProxyJob(
                    variant=name,
                    seed=seed,
                    manifest=str(manifest),
                    folder=str(output / "proxies" / f"{name}-s{seed}"),
                    fingerprint=proxy_fingerprint(digest, vocabulary_digest, config.proxy, seed),
                    proxy=config.proxy.model_dump(),
                    vocabulary=vocabulary,
                )
            )
    with ray_session(config.ray.address, config.ray.num_cpus):
        results = run_proxies(jobs, progress)  # step 5
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for job in jobs:
        by_variant.setdefault(job.variant, {})[job.seed] = results[job.name]
    table = res.ablation_table(by_variant, list(config.seeds))  # step 6
    first = by_variant[res.BASELINE][config.seeds[0]]
    scale = (
        f"proxy {config.proxy.config}: {first['parameters']:,} parameters, {first['steps']} steps, "
        f"{first['tokens']:,} tokens per proxy"
    )
    res.plot(table, output / "ablation.png", scale)
    report = {
        "name": config.name,
        "run_dir": str(Path(run_dir)),
        "run_fingerprint": view.fingerprint,
        "config": config.model_dump(mode="json"),
        "scale": scale,
        "variants": {name: {"manifest": manifests[name].name, "stages": stages[name]} for name in manifests},
        "table": table,
        "proxies": {job.name: results[job.name] for job in jobs},
    }
    write_json_file(output / REPORT, report)
    write_page(report, table, output, Path(run_dir), scale)
    return report


def write_page(report: dict[str, Any], table: dict[str, Any], output: Path, run_dir: Path, scale: str) -> Path:
    """``report.html`` in the shared report style, and a link to it from the run's report (best effort)."""
    import html

    from refinery.pipelines.report import register_page, write_report
    from refinery.pipelines.report_page import page

    title = f"Refinery ablation: {report['name']} · from {run_dir.name}"
    back = ""
    if (run_dir / "report.html").exists():
        href = os.path.relpath((run_dir / "report.html").resolve(), output.resolve())
        back = f'<p><a href="{html.escape(href)}">← the run report</a></p>'
    path = output / "report.html"
    body = f"<h1>{html.escape(title)}</h1>{back}{res.section_html(table, 'ablation.png', scale)}"
    with atomic_output(filesystem(str(output))[0], str(path)) as temporary:
        Path(temporary).write_text(page(title, body))
    try:
        register_page(str(run_dir), "ablation", title, str(path.resolve()))
        write_report(str(run_dir))
    except (OSError, ValueError, KeyError):
        pass  # a read-only or moved run directory: the ablation page stands alone
    return path
