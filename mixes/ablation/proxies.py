"""One proxy of an ablation: a variant's manifest, a seed, the shared vocabulary → losses per held-out target.

Resume works like the mix optimizer's: ``proxies/VARIANT-sSEED/result.json`` is written atomically and last and
carries a fingerprint of everything the proxy depends on (the variant manifest's sha256, which covers its data and
targets; the vocabulary; the trainer settings; the seed). A proxy whose result carries the current fingerprint is
never trained again; any other starts from a clean folder.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refinery.pipelines.storage import fingerprint, write_json_file

from .config import ProxySettings

RESULT = "result.json"


@dataclass(frozen=True)
class ProxyJob:
    variant: str
    seed: int
    manifest: str
    folder: str
    fingerprint: str
    proxy: dict[str, Any]
    vocabulary: Any  # refinery.training.vocab.Vocabulary

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


def proxy_fingerprint(manifest_sha256: str, vocabulary_digest: str, proxy: ProxySettings, seed: int) -> str:
    return fingerprint({"manifest": manifest_sha256, "vocabulary": vocabulary_digest, "proxy": proxy.model_dump(),
                        "seed": seed})  # fmt: skip


def finished(folder: Path, expected: str) -> dict[str, Any] | None:
    """The proxy's result if it finished with the ``expected`` fingerprint, else None."""
    try:
        result = json.loads((folder / RESULT).read_text())
    except (OSError, ValueError):
        return None
    return result if result.get("fingerprint") == expected and result.get("complete") else None


def train_proxy(job: ProxyJob) -> dict[str, Any]:
    """Train the proxy (inside a Ray task: one torch thread) and write its ``result.json`` last."""
    from refinery.training.api import train_on_manifest

    folder = Path(job.folder)
    if folder.exists():  # a killed attempt's or another fingerprint's folder
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    summary = train_on_manifest(
        job.manifest,
        config=job.proxy["config"],
        token_budget=job.proxy["token_budget"],
        seed=job.seed,
        output_dir=folder / "train",
        vocabulary=job.vocabulary,
        eval_sequences=job.proxy["eval_sequences"],
        **job.proxy["overrides"],
    )
    shutil.rmtree(folder / "train" / "checkpoints", ignore_errors=True)  # never resumed from
    result = {
        "variant": job.variant,
        "seed": job.seed,
        "fingerprint": job.fingerprint,
        "losses": summary["eval_losses"],
        "tokens": summary["tokens"],
        "steps": summary["steps"],
        "parameters": summary["parameters"],
        "train_seconds": round(time.perf_counter() - started, 3),
        "complete": True,
    }
    write_json_file(folder / RESULT, result)
    return result
