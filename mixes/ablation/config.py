"""The ablation config (YAML): which stages to put back, the held-out targets, the proxy scale and the seeds.

Validated completely before anything runs, like a recipe: unknown keys and wrong types are errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class VariantSettings(_Strict):
    """One ablation: the run's output with the rejections of ``stages`` put back."""

    stages: list[str] = Field(min_length=1)
    name: str | None = None  # default: the stage names joined by "+"

    @property
    def label(self) -> str:
        return self.name or "+".join(self.stages)


class HeldoutSettings(_Strict):
    """The targets: a held-out slice of every bucket of the run's output, plus any set the user names."""

    column: str = "source"
    fraction: float = Field(default=0.1, gt=0, lt=1)
    max_documents: int = Field(default=200, ge=1)
    seed: int = 0
    sets: dict[str, str] = Field(default_factory=dict)  # name -> Parquet file with a `text` column

    @field_validator("sets")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"held-out set name {name!r}: use letters, digits, '.', '_' or '-'")
        return value


class ProxySettings(_Strict):
    """The trainer preset and budget shared by every proxy (same as the mix optimizer's ``proxy`` block)."""

    config: str = "tiny"
    token_budget: int = Field(default=200_000, gt=0)
    eval_sequences: int = Field(default=16, ge=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class RaySettings(_Strict):
    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)


class AblateConfig(_Strict):
    name: str = "ablation"
    variants: list[VariantSettings] = Field(min_length=1)
    include_unfiltered: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    shards: int = Field(default=16, ge=1, le=4096)  # key-range shards per variant (shared across variants)
    heldout: HeldoutSettings = HeldoutSettings()
    proxy: ProxySettings = ProxySettings()
    ray: RaySettings = RaySettings()

    @model_validator(mode="after")
    def _unique(self) -> AblateConfig:
        labels = [v.label for v in self.variants]
        reserved = {"output", "unfiltered"}
        if len(set(labels)) != len(labels):
            raise ValueError(f"variant names repeat: {labels}")
        if reserved & set(labels):
            raise ValueError(f"variant names {sorted(reserved)} are reserved")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")
        return self


class AblateConfigError(ValueError):
    """An ablation config that does not validate (every problem listed)."""


def load_config(source: str | Path | dict[str, Any] | AblateConfig) -> AblateConfig:
    """Parse a YAML file, a dict or a config; relative held-out set paths are relative to the YAML file."""
    if isinstance(source, AblateConfig):
        return source
    base = None
    if isinstance(source, str | Path):
        base = Path(source).parent
        data = yaml.safe_load(Path(source).read_text()) or {}
    else:
        data = dict(source)
    if base is not None and isinstance(data.get("heldout"), dict) and isinstance(data["heldout"].get("sets"), dict):
        data["heldout"] = dict(data["heldout"])
        data["heldout"]["sets"] = {k: str((base / v).resolve()) for k, v in data["heldout"]["sets"].items()}
    try:
        return AblateConfig.model_validate(data)
    except ValidationError as error:
        raise AblateConfigError(str(error)) from None
