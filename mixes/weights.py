"""The weights file: which buckets go into a mix, how much of each, and how the output is cut into shards.

YAML (or the same dict from Python)::

    bucket_column: source            # or [source, lang]: buckets are the value combinations, joined by "/"
    total_tokens: null               # output training tokens; null: the largest total every cap allows
    max_epochs: 1.0                  # default cap on repeats of a bucket's documents
    shard_rows: null                 # target rows per output shard, or
    shard_bytes: 128000000           # target bytes per output shard (estimated from the input's bytes per row)
    heldout_fraction: 0.0            # default share of a bucket's documents held out for evaluation
    heldout_max_documents: null      # default cap on held-out documents per bucket
    heldout_seed: 0                  # the held-out sets depend on this seed only (not on weights or --seed)
    buckets:
      python_docs: {weight: 0.5, max_epochs: 4}
      debian_handbook: {weight: 0.3}
      debian_copyright: {tokens: 200000}          # an absolute target instead of a share
      "*": {weight: 0.1}                          # every bucket not named above (each gets this weight)

``weight`` is a share of the output's training tokens; shares are normalised over the buckets that have one,
and they fill what the ``tokens`` buckets leave of ``total_tokens``. A bucket named nowhere (and no ``"*"``)
is left out of the mix. A bucket that would need more than its ``max_epochs`` is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_SHARD_BYTES = 128_000_000
OTHERS = "*"


class BucketWeight(BaseModel):
    """One bucket's share (``weight``) or absolute target (``tokens``), its repeat cap and held-out set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float | None = Field(default=None, ge=0.0)
    tokens: int | None = Field(default=None, ge=0)
    max_epochs: float | None = Field(default=None, gt=0.0)
    heldout_fraction: float | None = Field(default=None, ge=0.0, lt=1.0)
    heldout_max_documents: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_target(self) -> BucketWeight:
        if (self.weight is None) == (self.tokens is None):
            raise ValueError("give exactly one of weight (a share of the output) or tokens (a target count)")
        return self


class WeightsSpec(BaseModel):
    """A validated weights file; :meth:`bucket` gives the effective settings of any bucket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket_column: str | list[str] = "source"
    total_tokens: int | None = Field(default=None, gt=0)
    max_epochs: float = Field(default=1.0, gt=0.0)
    shard_rows: int | None = Field(default=None, gt=0)
    shard_bytes: int | None = Field(default=None, gt=0)
    heldout_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    heldout_max_documents: int | None = Field(default=None, ge=0)
    heldout_seed: int = 0
    buckets: dict[str, BucketWeight]

    @field_validator("total_tokens", mode="before")
    @classmethod
    def _float_tokens(cls, value: Any) -> Any:
        """Accept ``15e12`` (YAML reads it as a float or a string)."""
        if isinstance(value, str):
            value = float(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> WeightsSpec:
        if not self.buckets:
            raise ValueError("buckets: name at least one bucket")
        if self.shard_rows is not None and self.shard_bytes is not None:
            raise ValueError("give shard_rows or shard_bytes, not both")
        if not self.columns:
            raise ValueError("bucket_column: name at least one column")
        return self

    @property
    def columns(self) -> list[str]:
        return [self.bucket_column] if isinstance(self.bucket_column, str) else list(self.bucket_column)

    def bucket(self, name: str) -> BucketWeight | None:
        """The bucket's settings with the file's defaults filled in; ``None`` if it is not in the mix."""
        own = self.buckets.get(name, self.buckets.get(OTHERS))
        if own is None:
            return None
        return own.model_copy(
            update={
                "max_epochs": own.max_epochs if own.max_epochs is not None else self.max_epochs,
                "heldout_fraction": (
                    own.heldout_fraction if own.heldout_fraction is not None else self.heldout_fraction
                ),
                "heldout_max_documents": (
                    own.heldout_max_documents if own.heldout_max_documents is not None else self.heldout_max_documents
                ),
            }
        )

    def heldout_settings(self) -> dict[str, Any]:
        """What the held-out sets depend on: the column(s), the held-out seed and fractions/caps per bucket."""
        return {
            "columns": self.columns,
            "heldout_seed": self.heldout_seed,
            "heldout_fraction": self.heldout_fraction,
            "heldout_max_documents": self.heldout_max_documents,
            "buckets": {
                name: [b.heldout_fraction, b.heldout_max_documents] for name, b in sorted(self.buckets.items())
            },
        }


def load_weights(source: str | Path | dict[str, Any] | WeightsSpec) -> WeightsSpec:
    """A :class:`WeightsSpec` from a YAML file, a dict or a spec; a ``ValueError`` names the bad field."""
    if isinstance(source, WeightsSpec):
        return source
    if isinstance(source, str | Path):
        data = yaml.safe_load(Path(source).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{source}: a weights file is a mapping with a 'buckets' key")
    else:
        data = dict(source)
    return WeightsSpec.model_validate(data)
