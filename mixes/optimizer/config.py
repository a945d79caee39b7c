"""The mix optimizer's configuration (``MIX.yaml``), validated completely before anything runs.

One file says what a bucket is, how the candidate mixes are drawn, how each proxy trains, what the proxies are
scored on, how the fit and the search work, how the result is validated and how the chosen mix is written. Every
random choice derives from ``seed`` (candidates, held-out mixes, the search) or from the proxy seeds, so the same
run directory and config give the same proxies, the same fit and the same chosen mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .fit import FAMILIES as FIT_FAMILIES

FAMILIES = tuple(FIT_FAMILIES)  # the fit's registry, in its tie-break order


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BucketSettings(_Strict):
    """Which buckets take part and how often each may repeat (per bucket ``max_epochs`` overrides the default)."""

    column: str | list[str] = "source"  # any kept column or a list: [domain, lang] -> "code/en"
    include: list[str] | None = None  # None: every bucket of the run
    max_epochs: float = Field(default=4.0, gt=0.0)
    max_epochs_by_bucket: dict[str, float] = Field(default_factory=dict)
    heldout_fraction: float = Field(default=0.05, gt=0.0, lt=1.0)
    heldout_max_documents: int | None = Field(default=200, gt=0)
    heldout_seed: int = 0

    @property
    def columns(self) -> list[str]:
        return [self.column] if isinstance(self.column, str) else list(self.column)

    def cap(self, bucket: str) -> float:
        return float(self.max_epochs_by_bucket.get(bucket, self.max_epochs))


class CandidateSettings(_Strict):
    """K Dirichlet samples around the natural mix, ``alpha = concentration × natural`` (larger: closer)."""

    count: int = Field(default=32, ge=1)
    concentrations: list[float] = Field(default_factory=lambda: [1.0, 4.0, 16.0])
    max_draws: int = Field(default=100_000, ge=1)  # rejection sampling gives up (error) after this many draws
    min_weight: float = Field(default=0.0, ge=0.0, lt=1.0)  # floor mixed in: w = min_weight/n + (1-min_weight) w

    @field_validator("concentrations")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(c <= 0 for c in value):
            raise ValueError("give at least one concentration, every one > 0")
        return value


class ProxySettings(_Strict):
    """How every proxy trains: the trainer's preset, the same token budget and seed for all candidates."""

    config: Literal["tiny", "proxy", "150m", "1b"] = "proxy"
    token_budget: int = Field(default=1_000_000, gt=0)
    seed: int = 0
    eval_sequences: int = Field(default=32, gt=0)  # held-out sequences per target set (more: less noisy losses)
    overrides: dict[str, Any] = Field(default_factory=dict)  # other TrainConfig fields (seq_len, lr, ...)
    vocabulary_tokens: int = Field(default=20_000_000, gt=0)  # the shared compact vocabulary sees at most this
    shard_rows: int | None = Field(default=None, gt=0)  # proxy mixes' shard size (default: the writer's)

    @field_validator("overrides")
    @classmethod
    def _no_reserved(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = {"token_budget", "seed", "eval_sequences", "size"} & set(value)
        if reserved:
            raise ValueError(f"set {sorted(reserved)} with the proxy's own fields, not in overrides")
        return value


class QualityTarget(_Strict):
    """Top documents by a score column, taken from the held-out sets (so never trained on)."""

    column: str = "quality_score"
    top_fraction: float = Field(default=0.25, gt=0.0, le=1.0)
    weight: float = Field(default=1.0, ge=0.0)


class TargetSettings(_Strict):
    """What a proxy is scored on; the objective is ``sum(weight × loss)`` over the targets."""

    buckets: bool = True  # the held-out slice of every bucket
    bucket_weights: dict[str, float] = Field(default_factory=dict)  # default 1 per bucket
    quality: QualityTarget | None = Field(default_factory=QualityTarget)  # used only when the column exists


class FitSettings(_Strict):
    """Regressions of each target loss on the weights; the family with the best cross-validated Spearman wins."""

    families: list[str] = Field(default_factory=lambda: list(FAMILIES))
    folds: int = Field(default=5, ge=2)

    @field_validator("families")
    @classmethod
    def _registered(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in FIT_FAMILIES]
        if unknown:
            raise ValueError(f"unknown fit families {unknown}; known: {', '.join(FIT_FAMILIES)}")
        return value


class SearchSettings(_Strict):
    """Search of the feasible simplex for the lowest predicted objective (deterministic)."""

    samples: int = Field(default=50_000, ge=100)
    top: int = Field(default=64, ge=1)  # RegMix: the mean of the best predicted mixes is a robust answer
    refine_steps: int = Field(default=200, ge=0)
    within_observed: bool = True  # keep each weight inside the range the fitted proxies covered
    seed: int = 0


class ValidationSettings(_Strict):
    """Proxies never used in the fit, and the chosen mix against natural and uniform over several seeds."""

    heldout_mixes: int = Field(default=8, ge=0)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])


class OutputSettings(_Strict):
    """The chosen mix as written for training (through the shards writer)."""

    total_tokens: int | None = Field(default=None, gt=0)  # None: the most every bucket's max_epochs allows
    shard_bytes: int | None = Field(default=None, gt=0)
    shard_rows: int | None = Field(default=None, gt=0)
    seed: int = 0

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _float_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = float(value)
        return int(value) if isinstance(value, float) and value.is_integer() else value


class RaySettings(_Strict):
    address: str | None = None
    num_cpus: int | None = Field(default=None, gt=0)
    workers: int | None = Field(default=None, gt=0)  # proxies training at once (default: the cluster's CPUs)


class MixConfig(_Strict):
    """A whole ``refinery mix`` configuration (see docs/mix.md)."""

    name: str = Field(default="mix", pattern=r"^[a-z0-9_-]+$")
    seed: int = 0
    buckets: BucketSettings = Field(default_factory=BucketSettings)
    candidates: CandidateSettings = Field(default_factory=CandidateSettings)
    proxy: ProxySettings = Field(default_factory=ProxySettings)
    targets: TargetSettings = Field(default_factory=TargetSettings)
    fit: FitSettings = Field(default_factory=FitSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    ray: RaySettings = Field(default_factory=RaySettings)

    @model_validator(mode="after")
    def _check(self) -> MixConfig:
        if not self.targets.buckets and self.targets.quality is None:
            raise ValueError("targets: enable the bucket held-out sets or a quality target")
        if not self.fit.families:
            raise ValueError("fit.families: name at least one of " + ", ".join(FAMILIES))
        return self


def load_config(source: str | Path | dict[str, Any] | MixConfig) -> MixConfig:
    """A validated :class:`MixConfig` from a YAML path, a dict or a config; errors name the field."""
    if isinstance(source, MixConfig):
        return source
    if isinstance(source, str | Path):
        data = yaml.safe_load(Path(source).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a mix config is a mapping")
    else:
        data = dict(source)
    return MixConfig.model_validate(data)
