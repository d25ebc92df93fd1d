"""The pipeline's ``params.yaml``: its schema, checked before any stage does work.

One block per stage, as DVC expects, so that each stage lists only the keys it reads:

* ``datasets``: name -> source URI, or a list of URIs merged into one folder (see
  :mod:`asymsr.sources`); ``fetch`` materialises each under ``data/raw/<name>``;
* ``data``: which dataset gives the training patches, which the validation images, and which
  (one or more) are the held-out test sets;
* ``validate``: minimum image size, expected image counts per dataset, patch sample size;
* ``prepare``: patch extraction (:class:`asymsr.prepare.PrepareConfig` fields except workers);
* ``tune``: the Optuna study per architecture: budget, sampler, pruner, storage and search
  space (:class:`asymsr.tuning.TuneSettings`);
* ``train``: ``common`` settings plus one block of overrides per architecture
  (:class:`asymsr.training.TrainConfig` fields);
* ``evaluate``: scales and the latency input size;
* ``register``: the MLflow experiment and the promotion gate (:class:`asymsr.registry.RegisterSettings`);
* ``profile``: the profile's name, recorded as a tag on every MLflow run.

Any wrong key, type or value raises :class:`ParamsError` naming the key, e.g.
``params.yaml: train.common.lr: Input should be a valid number``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from asymsr.fsutil import write_text
from asymsr.models import ARCHITECTURES
from asymsr.prepare import PrepareConfig
from asymsr.training import TrainConfig
from asymsr.tuning import TUNABLE


class ParamsError(ValueError):
    """``params.yaml`` is missing, not YAML, or breaks the schema; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class PrepareParams(_Strict):
    """Patch extraction settings (see :class:`asymsr.prepare.PrepareConfig`)."""

    patch_size: int = Field(41, ge=4)
    stride: int = Field(41, ge=1)
    scales: list[int] = Field(default_factory=lambda: [2, 3, 4], min_length=1)
    downsize_factors: list[float] = Field(default_factory=lambda: [1.0, 0.7, 0.5], min_length=1)
    skip_corrupt: bool = False

    def config(self, workers: int) -> PrepareConfig:
        return PrepareConfig(
            patch_size=self.patch_size,
            stride=self.stride,
            scales=tuple(self.scales),
            downsize_factors=tuple(self.downsize_factors),
            skip_corrupt=self.skip_corrupt,
            workers=workers,
        )


class TrainParams(_Strict):
    """``common`` training settings and per-architecture overrides (TrainConfig fields, without ``arch``)."""

    common: dict[str, Any] = Field(default_factory=dict)
    arch: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("arch")
    @classmethod
    def _known_architectures(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(value) - set(ARCHITECTURES))
        if unknown:
            raise ValueError(f"unknown architectures {unknown}; known: {sorted(ARCHITECTURES)}")
        return value

    def config(self, arch: str) -> TrainConfig:
        """The resolved :class:`TrainConfig` of ``arch`` (common settings, then its overrides)."""
        return TrainConfig.from_dict({**self.common, **self.arch.get(arch, {}), "arch": arch})


class ValidateParams(_Strict):
    """Great Expectations checks of the fetched images and the prepared patches."""

    min_size: int = Field(41, ge=1)
    expected_counts: dict[str, int] = Field(default_factory=dict)
    patch_sample: int | None = Field(20000, ge=1)


class EvaluateParams(_Strict):
    scales: list[int] = Field(default_factory=lambda: [2, 3, 4], min_length=1)
    latency_size: int = Field(256, ge=8)


class RegisterParams(_Strict):
    """MLflow experiment and promotion gate (see :class:`asymsr.registry.RegisterSettings`)."""

    experiment: str = Field("asymsr", min_length=1)
    candidate: str = "asym_vdsr"
    reference: str = "vdsr"
    max_psnr_drop: float = Field(0.2, ge=0)
    use_stages: bool = False

    @field_validator("candidate", "reference")
    @classmethod
    def _known_architecture(cls, value: str) -> str:
        if value not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {value!r}; known: {sorted(ARCHITECTURES)}")
        return value


class SearchDimensionParams(_Strict):
    """One dimension of a search space: a numeric range (optionally log scale) or choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SearchDimensionParams:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs choices")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} dimension needs low < high, got low={self.low}, high={self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log-scale dimension needs low > 0, got {self.low}")
        return self


class TuneSpace(_Strict):
    """Dimensions shared by every architecture, and per-architecture additions or replacements."""

    common: dict[str, SearchDimensionParams] = Field(default_factory=dict)
    arch: dict[str, dict[str, SearchDimensionParams]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tunable(self) -> TuneSpace:
        unknown_arch = sorted(set(self.arch) - set(ARCHITECTURES))
        if unknown_arch:
            raise ValueError(f"unknown architectures {unknown_arch}; known: {sorted(ARCHITECTURES)}")
        names = set(self.common).union(*[set(dims) for dims in self.arch.values()])
        unknown = sorted(names - set(TUNABLE))
        if unknown:
            raise ValueError(f"{unknown} cannot be tuned; tunable training settings: {list(TUNABLE)}")
        return self


class TuneParams(_Strict):
    """The Optuna study of each architecture (see :class:`asymsr.tuning.TuneSettings`)."""

    trials: int = Field(4, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    epochs: int = Field(3, ge=1)
    steps_per_epoch: int | None = Field(10, ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(1, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    storage: str | None = None
    heartbeat_s: int = Field(10, ge=1)
    grace_s: int = Field(30, ge=2)
    workers: int = Field(1, ge=1)
    space: TuneSpace = Field(default_factory=TuneSpace)


class DataRoles(_Strict):
    """Which fetched dataset (a key of ``datasets``) plays which role."""

    train: str
    val: str
    test: list[str] = Field(min_length=1)


class Params(_Strict):
    """The whole ``params.yaml``."""

    profile: str = "custom"
    datasets: dict[str, str | list[str]] = Field(min_length=1)
    data: DataRoles
    validation: ValidateParams = Field(default_factory=ValidateParams, alias="validate")  # BaseModel has .validate
    prepare: PrepareParams = Field(default_factory=PrepareParams)
    tune: TuneParams = Field(default_factory=TuneParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    registry: RegisterParams = Field(default_factory=RegisterParams, alias="register")  # ABCMeta has .register


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate ``path``; also resolves every architecture's TrainConfig to check it.

    Raises:
        ParamsError: with the file name and the dotted key of every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"parameters file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from error
    return validate_params(raw if raw is not None else {}, str(path))


def validate_params(raw: dict[str, Any], source: str) -> Params:
    """Check parsed parameters (schema, dataset roles, every resolved TrainConfig, prepare).

    Raises:
        ParamsError: ``source`` and the dotted key of every problem.
    """
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        problems = [f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None
    roles = {"train": [params.data.train], "val": [params.data.val], "test": params.data.test}
    for role, names in roles.items():
        for name in names:
            if name not in params.datasets:
                known = sorted(params.datasets)
                raise ParamsError(f"{source}: data.{role}: {name!r} is not a key of datasets ({known})")
    for arch in ARCHITECTURES:
        try:
            params.train.config(arch)
        except ValueError as error:
            raise ParamsError(f"{source}: train (resolved for {arch}): {error}") from None
    try:
        params.prepare.config(workers=1)
    except ValueError as error:
        raise ParamsError(f"{source}: prepare: {error}") from None
    return params


def profiles_dir() -> Path:
    """Where profiles live: ``$ASYMSR_PROFILES`` (set in the container image), else ``./profiles``."""
    return Path(os.environ.get("ASYMSR_PROFILES", "profiles"))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied recursively (mappings merge, anything else replaces)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_profile(
    name: str, overrides: dict[str, Any], out: str | os.PathLike[str], profiles: str | os.PathLike[str] | None = None
) -> Params:
    """Profile ``name`` with ``overrides`` merged in, validated, and written to ``out`` as YAML.

    This is how a run that has no ``params.yaml`` of its own (a Kubeflow run) gets one, e.g.
    ``resolve_profile("paper", {"tune": {"trials": 40}}, "params.yaml")``.

    Raises:
        ParamsError: unknown profile, or the merged parameters break the schema (key named).
    """
    source = Path(profiles or profiles_dir()) / f"{name}.yaml"
    if not source.is_file():
        known = sorted(path.stem for path in source.parent.glob("*.yaml"))
        raise ParamsError(f"unknown profile {name!r} in {source.parent}; known: {known}")
    merged = merge(yaml.safe_load(source.read_text()) or {}, overrides)
    params = validate_params(merged, f"profile {name!r} with overrides {overrides}")
    write_text(out, yaml.safe_dump(merged, sort_keys=False))
    return params


def activate_profile(
    name: str, profiles: str | os.PathLike[str] = "profiles", target: str | os.PathLike[str] = "params.yaml"
) -> Path:
    """Validate ``profiles/<name>.yaml`` and copy it onto ``target`` (atomically); returns ``target``.

    Raises:
        ParamsError: unknown profile (the message lists the known ones) or an invalid one.
    """
    source = Path(profiles) / f"{name}.yaml"
    if not source.is_file():
        known = sorted(path.stem for path in Path(profiles).glob("*.yaml"))
        raise ParamsError(f"unknown profile {name!r}; known: {known}")
    load_params(source)
    write_text(target, source.read_text())
    return Path(target)
