"""The recipe: a YAML file that says what to read, which stages to run in which order, and where to write.

It is validated completely before anything runs. YAML is read with ``safe_load`` and stages are looked up by
name in the stage registry, so no recipe can execute code. Every validation problem is reported with its
location (``stages[2] (language_id) -> min_score``), what was expected and what was given.

Relative paths in a recipe are resolved against the folder that holds the recipe file, so a recipe means the
same thing whatever the current directory is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from refinery.pipelines import storage
from refinery.pipelines.stages import Stage, stage_registry

NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"


class RecipeError(ValueError):
    """A recipe that cannot run; the message names every problem with its location."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """One named input: files of one format, from local paths or any fsspec URL (globs allowed)."""

    name: str = Field(pattern=NAME_PATTERN, description="the source name written on every document")
    format: Literal["warc", "jsonl", "parquet"]
    paths: list[str] = Field(min_length=1)
    text_field: str = "text"
    id_field: str | None = None
    url_field: str | None = "url"
    date_field: str | None = "date"
    extractor: Literal["resiliparse", "trafilatura"] = "resiliparse"
    extraction_timeout_s: float = Field(default=10.0, gt=0)
    max_document_bytes: int = Field(default=20_000_000, gt=0)
    max_html_depth: int = Field(default=5_000, gt=0, description="deeper pages are rejected before extraction")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class RayOptions(_Strict):
    """Where and how wide to run. ``address=None`` starts an embedded local Ray."""

    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1)
    max_in_flight: int | None = Field(default=None, ge=1, description="tasks submitted at once")
    task_retries: int = Field(default=3, ge=0, description="retries of a task whose worker died")


class Recipe(_Strict):
    """A whole run: inputs, the ordered stages, the output folder, Ray options and the seed."""

    name: str = Field(pattern=NAME_PATTERN)
    output_dir: str
    seed: int = 0
    batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    inputs: list[InputSpec] = Field(min_length=1)
    stages: list[Stage] = Field(default_factory=list)
    ray: RayOptions = Field(default_factory=RayOptions)

    @field_validator("stages", mode="before")
    @classmethod
    def _build_stages(cls, value: Any) -> list[Stage]:
        """Every stage is validated, and every problem of every stage reported at once."""
        if not isinstance(value, list):
            raise ValueError("expected a list of stages, each a mapping with a 'stage' key")
        stages, problems = [], []
        for index, entry in enumerate(value):
            try:
                stages.append(build_stage(index, entry))
            except ValueError as error:
                problems.append(str(error))
        if problems:
            raise ValueError(" | ".join(problems))
        return stages

    @model_validator(mode="after")
    def _plannable(self) -> Recipe:
        """The stages must form a valid plan (e.g. no two stages adding the same column)."""
        from refinery.pipelines.plan import plan_segments

        try:
            plan_segments(self.stages, "")
        except ValueError as error:
            raise ValueError(f"stages: {error}") from None
        return self

    @model_validator(mode="after")
    def _unique_input_names(self) -> Recipe:
        names = [spec.name for spec in self.inputs]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"input names must be unique; repeated: {duplicated}")
        return self

    def stage_config(self) -> list[dict[str, Any]]:
        """The stages as plain data (name + parameters), in order."""
        return [{"stage": stage.stage_name, **stage.model_dump(mode="json")} for stage in self.stages]

    def to_data(self) -> dict[str, Any]:
        """The recipe as plain data, the form it is saved in inside the run directory."""
        data = self.model_dump(mode="json", exclude={"stages"})
        data["stages"] = self.stage_config()
        return data

    def fingerprint(self) -> str:
        """A hash of everything that decides the output bytes (not Ray placement options)."""
        data = self.to_data()
        data.pop("ray")
        data.pop("output_dir")
        return storage.fingerprint(data, 16)


def build_stage(index: int, entry: Any) -> Stage:
    """Validate one recipe stage entry (``{stage: NAME, **params}``) into a stage object."""
    if not isinstance(entry, dict) or "stage" not in entry:
        raise ValueError(f"stages[{index}]: expected a mapping with a 'stage' key, got {entry!r}")
    params = dict(entry)
    name = params.pop("stage")
    registry = stage_registry()
    if name not in registry:
        known = ", ".join(sorted(registry))
        raise ValueError(f"stages[{index}]: unknown stage {name!r}; known stages: {known}")
    problems = _scalar_type_problems(registry[name], params)
    if problems:
        raise ValueError(f"stages[{index}] ({name}): {'; '.join(problems)}")
    try:
        return registry[name](**params)
    except ValidationError as error:
        raise ValueError(f"stages[{index}] ({name}): {describe_errors(error)}") from None


def _scalar_type_problems(cls: type[Stage], params: dict[str, Any]) -> list[str]:
    """Numbers must be numbers: ``min_chars: true`` or ``min_chars: "100"`` is a mistake, not a value to coerce.

    Pydantic's lax mode would accept both; a strict model would also refuse YAML lists for tuple fields, so the
    check is made here, on the recipe's own values, for fields typed ``int``/``float`` (optionally ``None``).
    """
    problems = []
    for key, value in params.items():
        field = cls.model_fields.get(key)
        if field is None:
            continue
        allowed = {arg for arg in getattr(field.annotation, "__args__", (field.annotation,)) if arg is not type(None)}
        if not allowed or not allowed <= {int, float}:
            continue
        if isinstance(value, bool | str) or (float not in allowed and isinstance(value, float)):
            expected = "an integer" if allowed == {int} else "a number"
            problems.append(f"{key}: expected {expected} (given: {value!r})")
    return problems


def describe_errors(error: ValidationError) -> str:
    """One line per problem: location, what was expected, what was given."""
    lines = []
    for problem in error.errors():
        location = " -> ".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field (check its spelling against the stage's parameters)"
        given = problem.get("input")
        shown = "" if problem["type"] in ("missing", "value_error") else f" (given: {given!r})"
        if isinstance(given, dict | list):
            shown = ""
        lines.append(f"{location}: {message}{shown}" if location else f"{message}{shown}")
    return "; ".join(lines)


def _resolve(path: str, base: Path) -> str:
    """Make a local relative path absolute against ``base``; URLs and absolute paths are left alone."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://", path) or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def parse_recipe(data: dict[str, Any], base_dir: Path) -> Recipe:
    """Validate recipe data; relative local paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise RecipeError("a recipe must be a YAML mapping")
    data = dict(data)
    if isinstance(data.get("output_dir"), str):
        data["output_dir"] = _resolve(data["output_dir"], base_dir)
    inputs = data.get("inputs")
    if isinstance(inputs, list):
        resolved = []
        for spec in inputs:
            if isinstance(spec, dict) and isinstance(spec.get("paths"), list):
                spec = {
                    **spec,
                    "paths": [_resolve(p, base_dir) if isinstance(p, str) else p for p in spec["paths"]],
                }
            resolved.append(spec)
        data["inputs"] = resolved
    try:
        return Recipe(**data)
    except ValidationError as error:
        raise RecipeError(f"invalid recipe: {describe_errors(error)}") from None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file; ``overrides`` replace top-level keys before validation."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe not found: {path}") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path} is not valid YAML: {error}") from None
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_recipe(data, path.resolve().parent)
