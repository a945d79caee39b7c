"""The trainer: a manifest in, a trained decoder, held-out losses per bucket, logs, a plot and checkpoints out.

Order of work: check every file of the manifest (that it exists with its recorded size; with ``verify_shards``
its sha256 too, which reads every byte: ``refinery verify`` is the same full check) and refuse to start on any
mismatch; check the
tokenizer against the manifest's record; build the vocabulary (compact for ``tiny``/``proxy``, see
:mod:`refinery.training.vocab`); then train with AdamW (decoupled weight decay on matrices only), linear warm-up
and cosine decay to ``min_lr_ratio × lr``, gradient accumulation (the loss of a step is normalised by the exact
number of labelled tokens of all its micro-batches, so accumulation changes no number), gradient clipping, bf16
autocast on CUDA, and the document-masked attention of :mod:`refinery.training.attention`.

Output folder::

    config.json          the training and model configuration, the manifest's sha256, the vocabulary size
    vocabulary.safetensors  the compact vocabulary's ids (small sizes)
    log.jsonl            one line per step (loss, lr, grad norm, tokens, tokens/s) and per evaluation
    loss.png             training loss and held-out losses per bucket against tokens
    summary.json         final held-out losses per bucket and their mean, tokens, steps, packing counters
    checkpoints/step-NNNNNN/  see :mod:`refinery.training.checkpoint`

Resume (``resume=True``) restores the newest complete checkpoint — weights, optimizer, RNG, data position and the
packer's buffer — and drops log lines written after it, so the loss curve of a resumed run equals the curve of an
uninterrupted one (the learning rate is a function of the step alone).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from refinery.pipelines.manifest import Manifest, ManifestError, location
from refinery.pipelines.models import DEFAULT_TOKENIZER, file_sha256, load_tokenizer, tokenizer_file
from refinery.pipelines.storage import file_digest
from refinery.training.attention import build_mask, default_backend
from refinery.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from refinery.training.data import ManifestStream, heldout_batches
from refinery.training.model import SIZES, Decoder, count_parameters
from refinery.training.packing import PackConfig, PackedBatch
from refinery.training.vocab import FULL, Vocabulary, build_vocabulary, load_vocabulary, save_vocabulary


class TrainingError(RuntimeError):
    """A run that must not start (corrupt manifest, another run's output folder, wrong tokenizer)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a run besides the manifest (``size`` names a :data:`SIZES` entry)."""

    size: str = "tiny"
    seq_len: int = 256
    micro_batch: int = 4
    grad_accum: int = 2
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    max_warmup_steps: int = 2000
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    token_budget: int = 200_000
    seed: int = 0
    eval_every: int = 0  # steps; 0 = at the end only
    eval_sequences: int = 16  # per bucket
    checkpoint_every: int = 0  # steps; 0 = at the end only
    vocab_max: int | None = 8192  # compact vocabulary cap; None = the full Llama 3 vocabulary
    overflow: str = "carry"
    reset_positions: bool = True
    backend: str | None = None  # None: flex on CUDA, sdpa on CPU
    loss_chunk_rows: int | None = None  # None: CPU_LOSS_CHUNK_ROWS on CPU, whole logits on CUDA; 0: whole logits
    read_rows: int = 64  # documents tokenized per read: bounds how far the packer reads ahead
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.micro_batch * self.grad_accum

    @property
    def total_steps(self) -> int:
        return max(1, self.token_budget // self.tokens_per_step)

    @property
    def warmup_steps(self) -> int:
        return max(1, min(self.max_warmup_steps, round(self.warmup_fraction * self.total_steps)))

    def pack(self) -> PackConfig:
        return PackConfig(seq_len=self.seq_len, overflow=self.overflow, reset_positions=self.reset_positions)  # type: ignore[arg-type]


#: Defaults per size: the small ones sized for CPU, the large ones for one GPU at 8,192 tokens.
PRESETS: dict[str, TrainConfig] = {
    "tiny": TrainConfig(),
    "proxy": TrainConfig(
        size="proxy", seq_len=512, micro_batch=4, grad_accum=2, lr=2e-3, vocab_max=16384, token_budget=1_000_000
    ),
    "150m": TrainConfig(
        size="150m", seq_len=8192, micro_batch=2, grad_accum=16, lr=6e-4, vocab_max=None,
        token_budget=3_000_000_000, eval_every=500, eval_sequences=32, checkpoint_every=500,
    ),
    "1b": TrainConfig(
        size="1b", seq_len=8192, micro_batch=1, grad_accum=64, lr=3e-4, vocab_max=None,
        token_budget=20_000_000_000, eval_every=500, eval_sequences=32, checkpoint_every=250,
    ),
}  # fmt: skip


#: Tokens projected and scored at a time by the CPU loss (:mod:`refinery.training.loss`): 256 × 16,384 float32
#: logits are 16 MB, small enough to stay cached and to be reused by the allocator instead of page-faulted anew.
CPU_LOSS_CHUNK_ROWS = 256


def loss_chunk_rows(config: TrainConfig, device: torch.device) -> int:
    """The chunk the loss is computed in on ``device`` (0: the whole logits at once)."""
    if config.loss_chunk_rows is not None:
        return config.loss_chunk_rows
    return CPU_LOSS_CHUNK_ROWS if device.type == "cpu" else 0


def preset(size: str, **overrides: Any) -> TrainConfig:
    """The preset of ``size`` with ``overrides`` (``None`` values are ignored)."""
    if size not in PRESETS:
        raise ValueError(f"unknown config {size!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[size], **{k: v for k, v in overrides.items() if v is not None})


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine to ``min_lr_ratio × lr`` at the last step."""
    warmup, total = config.warmup_steps, config.total_steps
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _to_device(batch: PackedBatch, vocabulary: Vocabulary, table: np.ndarray | None, device: torch.device):
    tokens = torch.from_numpy(vocabulary.encode(batch.tokens, table)).to(device)
    labels = torch.from_numpy(vocabulary.encode(batch.labels, table)).to(device)
    return (
        tokens,
        labels,
        torch.from_numpy(batch.position_ids).to(device),
        torch.from_numpy(batch.document_ids).to(device),
    )


class Trainer:
    """One run. :meth:`run` trains to the budget (or ``stop_after_steps`` more steps) and returns the summary."""

    def __init__(
        self,
        manifest_path: str | Path,
        output_dir: str | Path,
        config: TrainConfig,
        resume: bool = False,
        progress: bool = False,
        vocabulary: Vocabulary | None = None,
        device: str | None = None,
        verify_shards: bool = False,
    ):
        self.manifest_path, self.output = location(manifest_path), Path(output_dir)
        self.config, self.resume, self.progress = config, resume, progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if not resume and latest_checkpoint(self.output / "checkpoints") is not None:
            raise TrainingError(f"{self.output} holds a run already: pass resume=True (--resume) or another folder")
        self.backend = config.backend or default_backend(self.device)
        self.loss_chunk_rows = loss_chunk_rows(config, self.device)
        self._check_manifest(verify_shards)
        self.tokenizer = load_tokenizer(self._tokenizer_reference)
        self.vocabulary = self._vocabulary(vocabulary)
        self._write_config()
        torch.manual_seed(config.seed)
        model_config = replace(SIZES[config.size], vocab_size=self.vocabulary.size)
        self.model = Decoder(model_config).to(self.device)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
            betas=config.betas,
            fused=self.device.type == "cuda",
        )
        self.table = self.vocabulary.table()
        self.stream = ManifestStream(self.manifest_path, config.pack(), config.seed, self.tokenizer, config.read_rows)
        self.heldout = heldout_batches(self.manifest_path, config.pack(), self.tokenizer, config.eval_sequences)
        self.step = 0
        self.log_path = self.output / "log.jsonl"
        if resume and (checkpoint := latest_checkpoint(self.output / "checkpoints")) is not None:
            state, arrays = load_checkpoint(checkpoint, self.model, self.optimizer)
            self.step = state["step"]
            self.stream.load_state(arrays, state["data"])
            self._truncate_log(self.step)
        elif self.log_path.exists():
            self.log_path.unlink()

    # -- set-up --------------------------------------------------------------------------------------------------
    def _check_manifest(self, full: bool) -> None:
        """Sizes of every file (one stat each) by default; their sha256 too when ``full`` (reads every byte)."""
        manifest = Manifest.read(self.manifest_path)
        problems = manifest.verify(full=full)
        if problems:
            raise TrainingError(
                f"{self.manifest_path}: refusing to train, {len(problems)} bad file(s):\n  " + "\n  ".join(problems)
            )
        recorded = manifest.tokenizer
        self._tokenizer_reference = DEFAULT_TOKENIZER
        for reference in (recorded.get("reference"), DEFAULT_TOKENIZER):
            if reference and _tokenizer_sha256(reference) == recorded.get("sha256", None):
                self._tokenizer_reference = reference
                break
        else:
            if recorded.get("sha256"):
                raise TrainingError(f"{self.manifest_path}: no local tokenizer matches the manifest's sha256")
        self.manifest_sha256 = file_digest(self.manifest_path)[1]

    def _vocabulary(self, given: Vocabulary | None) -> Vocabulary:
        path = self.output / "vocabulary.safetensors"
        if given is not None:
            vocabulary = given
        elif self.config.vocab_max is None:
            return FULL
        elif self.resume and path.exists():
            return load_vocabulary(path)
        else:
            vocabulary = build_vocabulary(self.manifest_path, self.tokenizer, self.config.vocab_max)
        if vocabulary.ids is not None:
            save_vocabulary(vocabulary, path)
        return vocabulary

    def _write_config(self) -> None:
        record = {
            "train": asdict(self.config),
            "model": SIZES[self.config.size].as_dict() | {"vocab_size": self.vocabulary.size},
            "manifest": str(self.manifest_path),
            "manifest_sha256": self.manifest_sha256,
            "tokenizer": self._tokenizer_reference,
            "vocabulary": {
                "size": self.vocabulary.size,
                "rare": self.vocabulary.rare,
                "rare_fraction": self.vocabulary.rare_fraction,
            },
        }
        path = self.output / "config.json"
        if self.resume and path.exists():
            old = json.loads(path.read_text())
            # a field added to TrainConfig since the run started counts as its default (which the run had)
            defaults = json.loads(json.dumps(asdict(TrainConfig())))
            old["train"] = {**defaults, **old.get("train", {})}
            if old != json.loads(json.dumps(record)):
                raise TrainingError(f"{path}: the folder holds a run of another configuration or manifest")
        self.output.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    def _truncate_log(self, step: int) -> None:
        if not self.log_path.exists():
            return
        kept = [line for line in self.log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        self.log_path.write_text("".join(line + "\n" for line in kept))

    # -- training ------------------------------------------------------------------------------------------------
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def train_step(self) -> dict[str, float]:
        config = self.config
        lr = learning_rate(self.step, config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self.stream.next_batch(config.micro_batch) for _ in range(config.grad_accum)]
        labelled = sum(int((b.labels != -100).sum()) for b in batches)
        self.model.train()
        total = 0.0
        for batch in batches:
            tokens, labels, positions, documents = _to_device(batch, self.vocabulary, self.table, self.device)
            with self._autocast():
                mask = build_mask(documents, self.backend)  # type: ignore[arg-type]
                loss = self.model.loss(tokens, labels, positions, mask, chunk_rows=self.loss_chunk_rows)
            (loss / max(1, labelled)).backward()
            total += float(loss.detach())
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": total / max(1, labelled), "lr": lr, "grad_norm": float(grad_norm), "labelled": labelled}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean next-token loss per held-out bucket (over its labelled tokens)."""
        self.model.eval()
        losses = {}
        for bucket, packed in sorted(self.heldout.items()):
            total, count = 0.0, 0
            for start in range(0, len(packed), self.config.micro_batch):
                part = PackedBatch(
                    *(
                        a[start : start + self.config.micro_batch]
                        for a in (packed.tokens, packed.document_ids, packed.position_ids, packed.labels)
                    )
                )
                tokens, labels, positions, documents = _to_device(part, self.vocabulary, self.table, self.device)
                with self._autocast():
                    mask = build_mask(documents, self.backend)  # type: ignore[arg-type]
                    total += float(self.model.loss(tokens, labels, positions, mask, chunk_rows=self.loss_chunk_rows))
                count += int((labels != -100).sum())
            losses[bucket] = total / max(1, count)
        return losses

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _checkpoint(self) -> None:
        arrays, position = self.stream.state()
        save_checkpoint(self.output / "checkpoints", self.step, self.model, self.optimizer, arrays, {"data": position})

    def run(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to the budget; with ``stop_after_steps``, stop (after a checkpoint) once that many steps ran."""
        config = self.config
        total_steps = config.total_steps
        stop = total_steps if stop_after_steps is None else min(total_steps, self.step + stop_after_steps)
        started, start_step = time.perf_counter(), self.step
        eval_losses: dict[str, float] = {}
        while self.step < stop:
            metrics = self.train_step()
            elapsed = time.perf_counter() - started
            rate = (self.step - start_step) * config.tokens_per_step / max(elapsed, 1e-9)
            self._log(
                {
                    "event": "step",
                    "step": self.step,
                    "tokens": self.step * config.tokens_per_step,
                    **metrics,
                    "tokens_per_s": round(rate, 1),
                }
            )
            if self.progress:
                sys.stderr.write(
                    f"\rstep {self.step}/{total_steps}  tokens {self.step * config.tokens_per_step:,}  "
                    f"loss {metrics['loss']:.3f}  lr {metrics['lr']:.2e}  {rate:,.0f} tok/s   "
                )
                sys.stderr.flush()
            last = self.step == total_steps
            if self.heldout and (last or (config.eval_every and self.step % config.eval_every == 0)):
                eval_losses = self.evaluate()
                self._log(
                    {
                        "event": "eval",
                        "step": self.step,
                        "tokens": self.step * config.tokens_per_step,
                        "losses": eval_losses,
                        "mean": _mean(eval_losses),
                    }
                )
            if self.step == stop or (config.checkpoint_every and self.step % config.checkpoint_every == 0):
                self._checkpoint()
        if self.progress:
            sys.stderr.write("\n")
        if self.step == total_steps and not eval_losses and self.heldout:
            eval_losses = self.evaluate()
        from refinery.training.plot import plot_log

        plot_log(self.log_path, self.output / "loss.png")
        summary = {
            "steps": self.step,
            "total_steps": total_steps,
            "finished": self.step == total_steps,
            "tokens": self.step * config.tokens_per_step,
            "eval_losses": eval_losses,
            "mean_eval_loss": _mean(eval_losses),
            "parameters": count_parameters(self.model),
            "non_embedding_parameters": count_parameters(self.model, embedding=False),
            "vocab_size": self.vocabulary.size,
            "backend": self.backend,
            "device": self.device.type,
            "packing": self.stream.packer.stats.as_dict(),
            "bucket_documents": dict(sorted(self.stream.bucket_documents.items())),
            "output_dir": str(self.output),
        }
        (self.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _tokenizer_sha256(reference: str) -> str | None:
    try:
        return file_sha256(tokenizer_file(reference))
    except FileNotFoundError:
        return None


def _mean(losses: dict[str, float]) -> float | None:
    """Unweighted mean over buckets: every bucket's held-out set counts the same, whatever its size."""
    return float(np.mean(list(losses.values()))) if losses else None


def train(
    manifest_path: str | Path,
    output_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    progress: bool = False,
    vocabulary: Vocabulary | None = None,
    stop_after_steps: int | None = None,
    verify_shards: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Train ``config`` on a manifest (see the module docstring); returns the summary written to summary.json.

    ``verify_shards`` hashes every file before starting; by default only their sizes are checked. ``device`` None:
    CUDA when visible, else CPU."""
    try:
        trainer = Trainer(
            manifest_path,
            output_dir,
            config,
            resume=resume,
            progress=progress,
            vocabulary=vocabulary,
            verify_shards=verify_shards,
            device=device,
        )
    except ManifestError as error:
        raise TrainingError(str(error)) from None
    return trainer.run(stop_after_steps=stop_after_steps)
