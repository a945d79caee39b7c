"""Transformer student, FineWeb-Edu style: a frozen sentence encoder and a small trained head on its embeddings.

Embeddings come from ``refinery.dedup.encoder.TextEncoder`` (the ``embed`` stage's encoder: mean-pooled,
L2-normalised), so a corpus already embedded for semantic dedup can be scored from the same vectors. The head is
a linear layer or a one-hidden-layer MLP, trained full-batch with AdamW on cross-entropy against the teacher's
label probabilities when the label set has them (distillation: more signal per document than the hard label),
else the hard labels; classes are weighted by inverse frequency so a rare label is not ignored. Saved as
``head.safetensors`` plus ``student.json`` (encoder reference, head shape, classes): no pickle anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from refinery.classifiers.students.base import read_config, write_config

HEAD_FILE = "head.safetensors"


def build_head(dim: int, classes: int, hidden: int) -> Any:
    import torch

    if hidden:
        return torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, classes))
    return torch.nn.Sequential(torch.nn.Linear(dim, classes))


def embed(texts: list[str], encoder_path: str, max_tokens: int, batch_size: int = 32) -> np.ndarray:
    from refinery.dedup.encoder import TextEncoder

    encoder = TextEncoder(model_path=encoder_path, max_tokens=max_tokens, device="auto", batch_size=batch_size)
    return encoder.encode(texts)


def train_head(
    embeddings: np.ndarray,
    targets: np.ndarray,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    class_weights: np.ndarray,
    seed: int,
) -> Any:
    """Full-batch AdamW on soft or hard targets; deterministic for a seed (one thread, fixed init)."""
    import torch

    torch.manual_seed(seed)
    head = build_head(embeddings.shape[1], targets.shape[1], hidden)
    x = torch.from_numpy(embeddings)
    y = torch.from_numpy(targets.astype(np.float32))
    w = torch.from_numpy(class_weights.astype(np.float32))
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        optimiser.zero_grad()
        log_probabilities = torch.log_softmax(head(x), dim=1)
        loss = -((y * log_probabilities) * w).sum(dim=1).mean()
        loss.backward()
        optimiser.step()
    return head.eval()


class TransformerStudent:
    kind = "transformer"

    def __init__(self, head: Any, config: dict[str, Any], encoder: Any = None) -> None:
        self.head = head
        self.config = config
        self.task = config["task"]
        self.classes = config["classes"]
        self._encoder = encoder

    @classmethod
    def train(
        cls,
        texts: list[str],
        labels: np.ndarray,
        classes: list[str],
        task: str,
        output: str | Path,
        prompt: str = "",
        probabilities: np.ndarray | None = None,
        encoder_path: str | None = None,
        max_tokens: int = 256,
        head: str = "linear",
        hidden: int = 256,
        epochs: int = 300,
        lr: float = 1e-2,
        weight_decay: float = 1e-3,
        seed: int = 0,
        embeddings: np.ndarray | None = None,
    ) -> TransformerStudent:
        from safetensors.torch import save_file

        from refinery.pipelines.models import DEFAULT_ENCODER

        encoder_path = encoder_path or DEFAULT_ENCODER
        if embeddings is None:
            embeddings = embed(texts, encoder_path, max_tokens)
        k = len(classes)
        targets = probabilities if probabilities is not None else np.eye(k, dtype=np.float32)[labels]
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        class_weights = np.where(counts > 0, len(labels) / (k * np.maximum(counts, 1)), 0.0)
        hidden_units = hidden if head == "mlp" else 0
        model = train_head(embeddings, targets, hidden_units, epochs, lr, weight_decay, class_weights, seed)
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        save_file({k_: v.detach().contiguous() for k_, v in model.state_dict().items()}, str(output / HEAD_FILE))
        config = {
            "kind": cls.kind,
            "task": task,
            "classes": classes,
            "prompt": prompt,
            "encoder": encoder_path,
            "max_tokens": max_tokens,
            "dim": int(embeddings.shape[1]),
            "head": head,
            "hidden": hidden_units,
            "weights": HEAD_FILE,
            "training": {
                "documents": len(labels),
                "soft_targets": probabilities is not None,
                "epochs": epochs,
                "lr": lr,
                "weight_decay": weight_decay,
                "seed": seed,
            },
        }
        write_config(output, config)
        return cls(model, config)

    @classmethod
    def load(cls, model_dir: str | Path) -> TransformerStudent:
        from safetensors.torch import load_file

        config = read_config(model_dir)
        head = build_head(config["dim"], len(config["classes"]), config["hidden"])
        head.load_state_dict(load_file(str(Path(model_dir) / config["weights"])))
        return cls(head.eval(), config)

    def encoder(self) -> Any:
        if self._encoder is None:
            from refinery.dedup.encoder import TextEncoder

            self._encoder = TextEncoder(model_path=self.config["encoder"], max_tokens=self.config["max_tokens"])
        return self._encoder

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.predict_proba_embeddings(self.encoder().encode(texts))

    def predict_proba_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return torch.softmax(self.head(torch.from_numpy(embeddings)), dim=1).numpy()
