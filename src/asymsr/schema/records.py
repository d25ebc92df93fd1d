"""Typed records: what the stages write as JSON and read back, each with a schema version.

* :class:`EvaluationSummary` (``asymsr evaluate``'s metrics file, also DVC metrics) and
  :class:`PerImageScores`;
* :class:`TrainingHistory` (``history.json`` of a training run, also a DVC plot) of
  :class:`EpochRecord`;
* :class:`CompressionRecord` (``compression.json`` of ``asymsr compress``);
* :class:`StudySummary` (``study.json`` of an Optuna study);
* :class:`RegistryRecord` (``registry.json``: the registered versions and the promotion
  :class:`Decision` over :class:`Figures`).

Every file carries ``schema_version``; :meth:`Record.read` refuses a file of another kind or
version with a one-line error naming the file and the key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import Self

from asymsr.util.fs import write_json

SCHEMA_VERSION = 1


class RecordError(ValueError):
    """A record file is missing, not JSON, or not of the expected kind and version."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Record(_Closed):
    """A JSON file written from, and read back through, its model."""

    schema_version: Literal[1] = SCHEMA_VERSION

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write as indented JSON, atomically; returns ``path``."""
        write_json(path, self.model_dump(mode="json"))
        return Path(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Self:
        """Read and validate ``path``.

        Raises:
            FileNotFoundError: no such file.
            RecordError: not JSON, or not a valid record of this kind (the key is named).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{cls.__name__} file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RecordError(f"{path}: not JSON ({error})") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: Any, source: str) -> Self:
        """Validate already parsed JSON; ``source`` names it in errors."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            item = error.errors()[0]
            key = ".".join(str(part) for part in item["loc"]) or "(top level)"
            raise RecordError(
                f"{source}: not a version-{SCHEMA_VERSION} {cls.__name__}: {key}: {item['msg']}"
            ) from None


# ------------------------------------------------------------------ evaluation


class Scores(_Closed):
    """PSNR (dB) and SSIM of one image, or the mean over a dataset, at one scale."""

    psnr: float
    ssim: float


class DeployRecord(_Closed):
    """The fastest deploy form of a network on a device, and what the choice was based on."""

    form: str  # as_trained, fused or row_kernel
    memory_format: str  # nchw or channels_last
    timings_ms: dict[str, float]  # median ms of every "<form>/<format>" candidate
    device: str
    size: int  # side of the square test input, pixels
    repeats: int  # timed rounds per candidate


class Efficiency(_Closed):
    """Cost figures of the network as stored (whatever form computed the scores).

    The bicubic baseline has ``params`` 0 and nothing else. ``latency_ms`` is the fastest
    deploy form's median (``deploy``); ``latency_ms_as_trained`` the stored network's in NCHW.
    """

    arch: str
    params: int
    model_bytes: int | None = None
    macs_per_pixel: float | None = None
    latency_ms: float | None = None
    latency_ms_as_trained: float | None = None
    latency_ms_as_trained_min: float | None = None
    latency_ms_as_trained_max: float | None = None
    latency_input: list[int] | None = None
    latency_repeats: int | None = None
    device: str | None = None
    threads: int | None = None
    deploy: DeployRecord | None = None

    @property
    def has_latency(self) -> bool:
        return self.latency_ms is not None


class EvaluationSummary(Record):
    """``asymsr evaluate``'s summary: mean scores per dataset and scale, and the model's costs."""

    model: str  # the architecture, or "bicubic"
    source: str | None = None  # checkpoint path or model URI
    scores: dict[str, dict[str, Scores]]  # dataset -> "x<scale>" -> mean over its images
    efficiency: Efficiency

    def cases(self) -> list[tuple[str, str]]:
        """(dataset, scale key) pairs, in order."""
        return [(dataset, scale) for dataset, by_scale in self.scores.items() for scale in by_scale]

    def mean(self, metric: Literal["psnr", "ssim"] = "psnr") -> float:
        """Mean of ``metric`` over every dataset and scale."""
        values = [getattr(self.scores[d][s], metric) for d, s in self.cases()]
        if not values:
            raise ValueError("an evaluation summary without scores has no mean")
        return sum(values) / len(values)


class PerImageScores(Record):
    """Scores of every image: dataset -> "x<scale>" -> file name -> scores."""

    scores: dict[str, dict[str, dict[str, Scores]]]


# ------------------------------------------------------------------ training


class EpochRecord(_Closed):
    """What one finished training epoch reports."""

    epoch: int
    step: int
    loss: float
    lr: float
    seconds: float
    patches_per_second: float
    val_psnr: float | None = None
    val_psnr_per_scale: dict[str, float] = Field(default_factory=dict)
    val_bicubic_psnr: float | None = None


class TrainingHistory(Record):
    """``history.json``: one record per finished epoch, resumed ones included."""

    arch: str
    epochs: list[EpochRecord]


# ------------------------------------------------------------------ tuning


class LayerFitRecord(_Closed):
    """How well one middle layer's rank-r pair fits the teacher's 3x3 kernel."""

    layer: int
    energy_kept: float
    relative_error: float


class CompressionStep(_Closed):
    """One step of a compression: its validation PSNR (dB, when validated) and time."""

    name: Literal["teacher", "bicubic", "closed_form", "refit", "distilled"]
    val_psnr: float | None = None
    val_psnr_per_scale: dict[str, float] = Field(default_factory=dict)
    teacher_mse: float | None = None  # output MSE to the teacher on held-out training patches
    seconds: float = 0.0
    kept: bool = True


class CompressionRecord(Record):
    """``compression.json``: where the model came from and what each step gave."""

    teacher: str
    teacher_sha256: str
    rank: int
    parameters: int
    teacher_parameters: int
    steps: int
    loss: dict[str, float]
    scale_weights: dict[str, float] | None = None  # each scale's loss weight (loss.scale_balance > 0)
    layers: list[LayerFitRecord]
    history: list[CompressionStep]
    finished: bool = False  # False while (or if) the fine-tuning has not ended


class StudySummary(Record):
    """``study.json``: an Optuna study of one architecture after its budget."""

    study: str
    arch: str
    storage: str  # without password
    trials: int
    counted: int
    states: dict[str, int]  # COMPLETE, PRUNED, FAIL among the counted trials
    best_trial: int
    best_value_db: float
    best_params: dict[str, Any]
    mlflow_run_id: str
    plots: list[str] = Field(default_factory=list)


# ------------------------------------------------------------------ registry


class Figures(_Closed):
    """What the promotion gate compares for one model version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean_psnr: float  # over every evaluation dataset and scale, dB
    params: int
    model_bytes: int  # of the inference checkpoint
    version: str | None = None  # registry version, when registered


class DecisionFigures(_Closed):
    """The numbers a decision was made on (recorded as a tag of the version)."""

    candidate: Figures
    reference: Figures
    champion: Figures | None
    psnr_drop_db: float
    max_psnr_drop_db: float


class Decision(_Closed):
    """The gate's verdict and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: Literal["promoted", "rejected"]
    reason: str
    figures: DecisionFigures

    @property
    def promote(self) -> bool:
        return self.label == "promoted"


class RegistryRecord(Record):
    """``registry.json``: what one ``asymsr register`` recorded and decided."""

    fingerprint: str  # of every input: models, metrics, settings, evaluation data
    parent_run_id: str
    versions: dict[str, str]  # the pipeline's run (vdsr, asym_vdsr, asym_vdsr_compressed) -> its version
    decision: Decision
    unchanged: bool  # True when these inputs were registered before and nothing changed
    candidate_run: str | None = None  # the run whose version was judged (the best candidate)
