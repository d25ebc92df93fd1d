"""The one schema: ``params.yaml`` and every configuration the library runs on.

One block per stage, as DVC expects, so that each stage lists only the keys it reads:

* ``datasets``: name -> source URI, or a list of URIs merged into one folder
  (:mod:`asymsr.data.sources`); ``fetch`` materialises each under ``data/raw/<name>``;
* ``data``: which dataset gives the training patches, which the validation images, and which
  (one or more) are the held-out test sets;
* ``validate`` (:class:`ValidateConfig`), ``prepare`` (:class:`PrepareConfig`), ``tune``
  (:class:`TuneConfig`), ``train`` (:class:`TrainParams`: ``common`` plus per-architecture
  overrides of :class:`TrainConfig`), ``evaluate`` (:class:`EvaluateConfig`), ``register``
  (:class:`RegisterConfig`);
* ``profile``: the profile's name, recorded as a tag on every MLflow run.

These classes are not a layer over the library's settings: :func:`asymsr.training.loop.train`
takes a :class:`TrainConfig`, :func:`asymsr.data.prepare.prepare` a :class:`PrepareConfig`,
and so on. Every default is written here once, and every field's description is the help
text of its ``asymsr`` flag.

Numbers are strict (``True`` is not a number, ``"16"`` is not an integer); a YAML ``1e-4``,
which YAML 1.1 reads as a string, is read as the number it looks like. Any wrong key, type or
value raises :class:`ParamsError` naming the dotted key, e.g.
``params.yaml: train.common.lr: Input should be greater than 0``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from asymsr.nn.architectures import ARCHITECTURES
from asymsr.sr.scales import SUPPORTED_SCALES, check_scale
from asymsr.util.fs import write_text

DEFAULT_TILE = 512  # side of the tiles that inference on large images runs in, pixels (bounds memory)
TUNABLE = ("lr", "optimizer", "momentum", "weight_decay", "clip_mode", "clip", "batch_size", "loss", "lr_gamma")


class ParamsError(ValueError):
    """``params.yaml`` is missing, not YAML, or breaks the schema; the message names the key."""


def _known_arch(name: str) -> str:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return name


ArchName = Annotated[str, AfterValidator(_known_arch)]
Scale = Annotated[int, AfterValidator(check_scale)]
Fraction = Annotated[float, Field(gt=0, le=1)]


def _scales() -> list[int]:
    return list(SUPPORTED_SCALES)


class Config(BaseModel):
    """Strict, closed and immutable: a typo is an error, never a silently ignored key."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _tuples_as_lists(cls, values: Any) -> Any:
        """Python callers write ``scales=(2, 3)``; strict mode alone would refuse a tuple for a list."""
        if isinstance(values, dict):
            return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}
        return values


class PrepareConfig(Config):
    """Patch extraction; the defaults are VDSR's."""

    patch_size: int = Field(41, ge=4, description="patch side in pixels")
    stride: int = Field(41, ge=1, description="step between patches in pixels")
    scales: list[Scale] = Field(default_factory=_scales, min_length=1, description="scales mixed in one patch set")
    downsize_factors: list[Fraction] = Field(
        default_factory=lambda: [1.0, 0.7, 0.5],
        min_length=1,
        description="extra down-sized copies of each image, factors in (0, 1]",
    )
    skip_corrupt: bool = Field(False, description="skip unreadable images (listed in the manifest) instead of failing")


class TrainConfig(Config):
    """Training settings. Defaults follow the VDSR paper except where noted."""

    arch: ArchName = Field("vdsr", description="registered architecture name (vdsr or asym_vdsr)")
    arch_overrides: dict[str, Any] = Field(
        default_factory=dict, description='keyword overrides for the architecture, e.g. {"init": "he_fan_out"}'
    )
    init: str | None = Field(
        None,
        description="initial weights instead of the seeded draw: a checkpoint or an .npz of import-weights' layout, "
        "optionally pinned as PATH#sha256=<hex> (with epochs 0: use them as they are)",
    )
    epochs: int = Field(80, ge=0, description="number of epochs (paper: 80); 0 with init = the given weights")
    steps_per_epoch: int | None = Field(None, ge=1, description="batches per epoch; none = one pass over all patches")
    batch_size: int = Field(64, ge=1, description="patches per step, the global batch under torchrun (paper: 64)")
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="sgd (with momentum, paper) or adam")
    lr: float = Field(0.1, gt=0, description="initial learning rate (paper: 0.1 with SGD)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (paper: 0.9); ignored by Adam")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty (paper: 1e-4)")
    lr_step_epochs: int = Field(20, ge=1, description="multiply the lr by lr_gamma every this many epochs (paper: 20)")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="multiplicative lr decay per step, in (0, 1]")
    clip_mode: Literal["none", "norm", "adjustable"] = Field(
        "norm",
        description="none; norm: global gradient norm <= clip; adjustable: the paper's clipping of each "
        "gradient element to [-clip/lr, clip/lr] at the current lr",
    )
    clip: float = Field(0.4, ge=0, description="the bound for clip_mode, > 0 unless clip_mode is none")
    loss: Literal["mse", "l1"] = Field("mse", description="pixel loss")
    loss_reduction: Literal["mean", "sum"] = Field(
        "mean", description="mean over pixels, or sum as the reference PyTorch VDSR does"
    )
    seed: int = Field(0, description="seeds the initial weights and the batch order")
    device: str = Field("auto", description="auto (CUDA if present, else CPU), cpu, cuda, cuda:1 ...")
    amp: bool = Field(False, description="float16 mixed precision with gradient scaling (CUDA only; ignored on CPU)")
    channels_last: bool = Field(False, description="use the channels-last memory format (faster on GPUs and some CPUs)")
    workers: int = Field(0, ge=0, description="DataLoader worker processes (0 = load in the training process)")
    val_scales: list[Scale] = Field(default_factory=_scales, description="scales of the per-epoch validation PSNR")
    val_crop: int | None = Field(
        256, ge=1, description="centre-crop validation images to this many pixels per side; none = whole images"
    )

    @model_validator(mode="after")
    def _clip_bound(self) -> TrainConfig:
        if self.clip_mode != "none" and not self.clip > 0:
            raise ValueError(f"clip={self.clip!r} must be > 0 with clip_mode={self.clip_mode!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON- and checkpoint-safe values."""
        return self.model_dump(mode="json")


def optional_fields(model: type[Config], name: str, exclude: tuple[str, ...] = ()) -> type[Config]:
    """``model`` with every field optional (None when not given): overrides that are merged later.

    Derived from ``model``, so each field, its constraints and its description exist once.
    """
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in exclude:
            continue
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        shown = {"cli": {"default": info.get_default(call_default_factory=True)}}  # the --help text shows it
        fields[field_name] = (Optional[annotation], Field(None, description=info.description, json_schema_extra=shown))  # noqa: UP045
    return create_model(name, __base__=Config, __doc__=f"Optional overrides of {model.__name__}.", **fields)


TrainOverrides = optional_fields(TrainConfig, "TrainOverrides", exclude=("arch",))
PrepareOverrides = optional_fields(PrepareConfig, "PrepareOverrides")


def given(values: BaseModel) -> dict[str, Any]:
    """The fields that were given (None included, when given explicitly) as plain values."""
    return values.model_dump(mode="json", exclude_unset=True)


class TrainParams(Config):
    """``common`` training settings and per-architecture overrides (TrainConfig fields, without ``arch``)."""

    common: TrainOverrides = Field(default_factory=TrainOverrides)  # type: ignore[valid-type]
    arch: dict[ArchName, TrainOverrides] = Field(default_factory=dict)  # type: ignore[valid-type]

    def config(self, arch: str, **extra: Any) -> TrainConfig:
        """The resolved :class:`TrainConfig` of ``arch``: defaults, ``common``, its overrides, then ``extra``."""
        specific = self.arch.get(arch)
        values = {**given(self.common), **(given(specific) if specific else {}), **extra, "arch": arch}
        return TrainConfig.model_validate(values)


class DistillLoss(Config):
    """Weights of the distillation loss of ``compress`` (see :mod:`asymsr.training.distill`)."""

    teacher: float = Field(1.0, ge=0, description="MSE of the student's output to the teacher's")
    label: float = Field(0.0, ge=0, description="MSE of the student's output to the HR label")
    feature: float = Field(0.0, ge=0, description="mean MSE of each block's activation to the teacher's")
    scale_balance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="weigh each patch's output MSE by (teacher's MSE to HR at its scale) ** -scale_balance: "
        "0 counts every patch alike, 1 makes a dB at x2 count as much as a dB at x4",
    )
    teacher_views: Literal[1, 2, 4, 8] = Field(
        1,
        description="the teacher's output is its mean over this many flips of the input (1: itself; 2: + a "
        "horizontal flip; 4: + vertical and both; 8: + the transposes): a target above the teacher, "
        "for views-1 more teacher passes per step",
    )

    @model_validator(mode="after")
    def _some_loss(self) -> DistillLoss:
        if self.teacher + self.label + self.feature <= 0:
            raise ValueError("at least one of teacher, label, feature must be > 0")
        if self.feature > 0 and self.teacher_views > 1:  # block features of a mean of passes mean nothing
            raise ValueError("feature > 0 needs teacher_views 1 (features are compared pass by pass)")
        return self


# Fine-tuning settings of ``compress`` unless compress.finetune says otherwise: Adam at a small
# lr (the closed form is already close), no weight decay (it would pull the factors to zero).
DISTILL_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "batch_size": 16,
    "steps_per_epoch": 100,
    "clip_mode": "norm",
    "clip": 1.0,
}


class CompressConfig(Config):
    """``asymsr compress``: a trained VDSR -> an Asym_VDSR (closed form, refit, distillation)."""

    teacher: str | None = Field(
        None,
        description="teacher when the stage is not given one: a checkpoint, an .npz, a models:/ URI, or a "
        "path or https URL with #sha256=<hex>",
    )
    rank: int = Field(64, ge=1, description="width between each pair's 3x1 and 1x3 (64 = the original Asym_VDSR)")
    refit: bool = Field(True, description="data-aware least-squares refit of the 1x3 factors, kept only if better")
    refit_patches: int = Field(256, ge=1, description="training patches the refit solves on (as many again judge it)")
    refit_sweeps: int = Field(
        0, ge=0, description="alternating sweeps that re-solve the 3x1 factors too (0 = the 1x3 factors only)"
    )
    steps: int = Field(400, ge=0, description="distillation fine-tuning steps; 0 = closed form (and refit) only")
    loss: DistillLoss = Field(default_factory=DistillLoss)
    finetune: TrainOverrides = Field(  # type: ignore[valid-type]
        default_factory=TrainOverrides, description="TrainConfig fields of the fine-tuning (lr, batch_size, ...)"
    )

    @model_validator(mode="after")
    def _objective_is_the_loss_block(self) -> CompressConfig:
        fixed = sorted({"loss", "loss_reduction", "arch_overrides", "epochs", "init"} & set(given(self.finetune)))
        if fixed:
            raise ValueError(
                f"finetune: {fixed} are set by compress (the objective is compress.loss; epochs come from steps)"
            )
        return self

    def finetune_config(self, channels: int = 64, depth: int = 20, **extra: Any) -> TrainConfig:
        """The fine-tuning's :class:`TrainConfig`: ``steps`` split into epochs of ``steps_per_epoch``.

        Steps that do not fill a whole epoch round up to one (``steps`` 250 in epochs of 100 runs
        300); a ``steps`` below ``steps_per_epoch`` is one epoch of exactly ``steps``.
        """
        values = {**DISTILL_DEFAULTS, **given(self.finetune), **extra}
        per_epoch = values.get("steps_per_epoch") or DISTILL_DEFAULTS["steps_per_epoch"]
        per_epoch = min(per_epoch, max(1, self.steps))
        overrides = {"channels": channels, "depth": depth, "rank": self.rank}
        values.update(
            arch="asym_vdsr",
            arch_overrides=overrides,
            steps_per_epoch=per_epoch,
            epochs=-(-self.steps // per_epoch),  # 0 steps: no epochs, the initial weights are the model
        )
        return TrainConfig.model_validate(values)


class ValidateConfig(Config):
    """Great Expectations checks of the fetched images and the prepared patches."""

    min_size: int = Field(41, ge=1, description="minimum image height and width, pixels")
    expected_counts: dict[str, int] = Field(
        default_factory=dict, description="images per dataset; Set5, Set14, B100, Urban100, T91, BSD200 are known"
    )
    patch_sample: int | None = Field(20000, ge=1, description="patch rows checked (deterministic sample); none = all")


class EvaluateConfig(Config):
    """The held-out evaluation."""

    scales: list[Scale] = Field(default_factory=_scales, min_length=1, description="scales evaluated")
    latency_size: int = Field(256, ge=8, description="square input side for the latency measurement, pixels")


class RegisterConfig(Config):
    """MLflow experiment and the promotion gate (see :mod:`asymsr.mlops.promotion`)."""

    experiment: str = Field("asymsr", min_length=1, description="MLflow experiment of the pipeline runs")
    candidate: ArchName = Field("asym_vdsr", description="architecture that competes for the champion alias")
    candidate_runs: list[str] | None = Field(
        None,
        min_length=1,
        description="model folders of the candidate architecture (trained, compressed) that compete; the best "
        "on the same evaluation data goes to the gate (default: [candidate])",
    )
    reference: ArchName = Field("vdsr", description="architecture it is compared with in the same run")
    max_psnr_drop: float = Field(
        0.2, ge=0, description="dB of mean test PSNR the candidate may lose against the reference"
    )
    use_stages: bool = Field(
        True,
        description="also move the promoted version to the Production stage and the previous one to Archived "
        "(stages are deprecated upstream; the champion alias is always set)",
    )

    @model_validator(mode="after")
    def _distinct_runs(self) -> RegisterConfig:
        runs = self.runs()
        if len(set(runs)) != len(runs) or self.reference in runs:
            raise ValueError(f"candidate_runs: each run once, and not the reference {self.reference!r}; got {runs}")
        return self

    def runs(self) -> list[str]:
        """The candidate's runs (folders under models/), in order."""
        return list(self.candidate_runs or [self.candidate])


class SearchDimension(Config):
    """One tunable training setting: a numeric range (optionally log scale) or choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SearchDimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical dimension needs choices")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} dimension needs low < high, got low={self.low}, high={self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"a log-scale dimension needs low > 0, got {self.low}")
        return self

    def suggest(self, trial: Any, name: str) -> Any:
        """Draw this dimension from an ``optuna.Trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]


class TuneSpace(Config):
    """Dimensions shared by every architecture, and per-architecture additions or replacements."""

    common: dict[str, SearchDimension] = Field(default_factory=dict)
    arch: dict[ArchName, dict[str, SearchDimension]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tunable(self) -> TuneSpace:
        names = set(self.common).union(*[set(dims) for dims in self.arch.values()])
        unknown = sorted(names - set(TUNABLE))
        if unknown:
            raise ValueError(f"{unknown} cannot be tuned; tunable training settings: {list(TUNABLE)}")
        return self

    def for_arch(self, arch: str) -> dict[str, SearchDimension]:
        """The common dimensions, then ``arch``'s (which add or replace)."""
        return {**self.common, **self.arch.get(arch, {})}


class TuneConfig(Config):
    """An Optuna study per architecture (see :mod:`asymsr.training.tuning`)."""

    trials: int = Field(4, ge=1, description="counted trials per study; re-running continues the study up to this")
    timeout_s: float | None = Field(None, gt=0, description="stop starting new trials after this many seconds")
    epochs: int = Field(3, ge=1, description="training budget of one trial, epochs")
    steps_per_epoch: int | None = Field(10, ge=1, description="training budget of one trial, steps per epoch")
    sampler: Literal["tpe", "random"] = Field("tpe", description="the sampler, seeded with seed")
    seed: int = Field(0, description="sampler seed")
    pruner: Literal["median", "hyperband", "none"] = Field("median", description="stops poor trials early")
    startup_trials: int = Field(1, ge=0, description="trials that are never pruned")
    warmup_epochs: int = Field(0, ge=0, description="no trial is pruned before epoch warmup_epochs + 1")
    storage: str | None = Field(
        None, description="SQLAlchemy URL of the study storage (postgresql://...); none = local SQLite"
    )
    heartbeat_s: int = Field(10, ge=1, description="trial heartbeat interval, seconds")
    grace_s: int = Field(30, ge=2, description="a running trial silent this long is failed and replaced, seconds")
    workers: int = Field(1, ge=1, description="processes on this machine sharing the study")
    space: TuneSpace = Field(default_factory=TuneSpace)

    def objective_key(self, arch: str, base: TrainConfig) -> dict[str, Any]:
        """What defines the objective (not the number of trials, nor how many run at once)."""
        space = self.space.for_arch(arch)
        return {
            "space": {name: dim.model_dump(mode="json") for name, dim in sorted(space.items())},
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "base": {k: v for k, v in base.to_dict().items() if k not in space and k != "device"},
        }


class DataRoles(Config):
    """Which fetched dataset (a key of ``datasets``) plays which role."""

    train: str
    val: str
    test: list[str] = Field(min_length=1)


class Params(Config):
    """The whole ``params.yaml``."""

    profile: str = "custom"
    datasets: dict[str, str | list[str]] = Field(min_length=1)
    data: DataRoles
    validation: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")  # BaseModel has .validate
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    train: TrainParams = Field(default_factory=TrainParams)
    compress: CompressConfig = Field(default_factory=CompressConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    registry: RegisterConfig = Field(default_factory=RegisterConfig, alias="register")  # ABCMeta has .register

    @model_validator(mode="before")
    @classmethod
    def _costly_blocks_are_explicit(cls, values: Any) -> Any:
        """``train`` and ``evaluate`` may not be left out: their defaults are the paper's schedule
        (SGD for 80 epochs: hours on a CPU) and its full protocol, which nobody wants by accident."""
        if isinstance(values, dict):
            missing = [key for key in ("train", "evaluate") if key not in values]
            if missing:
                raise ValueError(
                    f"the {' and '.join(missing)} block{'s are' if len(missing) > 1 else ' is'} missing; declare "
                    f"{'them' if len(missing) > 1 else 'it'} (see profiles/quick.yaml), even as `{missing[0]}: {{}}` "
                    "for the paper's defaults"
                )
        return values

    def test_folders(self, root: str | os.PathLike[str]) -> list[Path]:
        """``root/<name>`` for every ``data.test`` dataset."""
        return [Path(root) / name for name in self.data.test]


# ------------------------------------------------------------------ reading and writing


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; a number written like that is a number here."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."),
)


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML file with :class:`_Loader`; a syntax error becomes a :class:`ParamsError`."""
    path = Path(path)
    try:
        return parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from error


def parse_yaml(text: str) -> Any:
    """YAML text read as parameters files are read (``1e-4`` is a number), e.g. the VALUE of a
    ``KEY=VALUE`` override.

    Raises:
        yaml.YAMLError: ``text`` is not valid YAML.
    """
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def problems(error: ValidationError, prefix: str = "") -> str:
    """``key.path: message`` for every error, joined by ``; ``."""
    parts = []
    for item in error.errors():
        key = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's own error
        parts.append(f"{key}: {message}" if key else message)
    return "; ".join(parts)


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate ``path``; also resolves every architecture's TrainConfig to check it.

    Raises:
        ParamsError: with the file name and the dotted key of every problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"parameters file not found: {path}")
    raw = read_yaml(path)
    return validate_params(raw if raw is not None else {}, str(path))


def validate_params(raw: dict[str, Any], source: str) -> Params:
    """Check parsed parameters (schema, dataset roles, every resolved TrainConfig).

    Raises:
        ParamsError: ``source`` and the dotted key of every problem.
    """
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of blocks, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(f"{source}: {problems(error)}") from None
    roles = {"train": [params.data.train], "val": [params.data.val], "test": params.data.test}
    for role, names in roles.items():
        for name in names:
            if name not in params.datasets:
                raise ParamsError(
                    f"{source}: data.{role}: {name!r} is not a key of datasets ({sorted(params.datasets)})"
                )
    for arch in ARCHITECTURES:
        try:
            params.train.config(arch)
        except ValidationError as error:
            raise ParamsError(f"{source}: train (resolved for {arch}): {problems(error)}") from None
    try:
        params.compress.finetune_config()
    except ValidationError as error:
        raise ParamsError(f"{source}: compress.finetune (resolved): {problems(error)}") from None
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


def _profile_file(name: str, profiles: str | os.PathLike[str] | None) -> Path:
    source = Path(profiles or profiles_dir()) / f"{name}.yaml"
    if not source.is_file():
        known = sorted(path.stem for path in source.parent.glob("*.yaml"))
        raise ParamsError(f"unknown profile {name!r}; known: {known}")
    return source


def resolve_profile(
    name: str, overrides: dict[str, Any], out: str | os.PathLike[str], profiles: str | os.PathLike[str] | None = None
) -> Params:
    """Profile ``name`` with ``overrides`` merged in, validated, and written to ``out`` as YAML.

    This is how a run that has no ``params.yaml`` of its own (a Kubeflow run) gets one, e.g.
    ``resolve_profile("paper", {"tune": {"trials": 40}}, "params.yaml")``. Nothing is written
    when the result is invalid.

    Raises:
        ParamsError: unknown profile, or the merged parameters break the schema (key named).
    """
    merged = merge(read_yaml(_profile_file(name, profiles)) or {}, overrides)
    params = validate_params(merged, f"profile {name!r} with overrides {overrides}")
    write_text(out, yaml.safe_dump(merged, sort_keys=False))
    return params


def activate_profile(
    name: str, profiles: str | os.PathLike[str] | None = None, target: str | os.PathLike[str] = "params.yaml"
) -> Path:
    """Validate ``profiles/<name>.yaml`` and copy it onto ``target`` (atomically); returns ``target``.

    Raises:
        ParamsError: unknown profile (the message lists the known ones) or an invalid one.
    """
    source = _profile_file(name, profiles)
    load_params(source)
    write_text(target, source.read_text())
    return Path(target)
