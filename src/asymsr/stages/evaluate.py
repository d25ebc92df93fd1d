"""``asymsr evaluate``: PSNR/SSIM of a model (or bicubic) on dataset folders, plus its cost figures."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from asymsr.schema.params import DEFAULT_TILE, EvaluateConfig
from asymsr.schema.records import EvaluationSummary
from asymsr.stages._base import StageArgs, StageResult, arg, default_of, params_arg, read_params

NAME = "evaluate"
HELP = "Score a model (or bicubic) with PSNR/SSIM on dataset folders; adds parameters, bytes, MACs and latency."


class Args(StageArgs):
    model: str = arg(
        ..., "'bicubic', a checkpoint (.pt) from train or import-weights, or an MLflow URI (models:/vdsr/1)"
    )
    data: list[Path] | None = arg(None, "dataset folder; repeat for several (named by folder name)", repeat=True)
    data_root: Path | None = arg(None, "with --params and no --data: evaluate on DATA_ROOT/<name> for data.test")
    scales: list[int] | None = arg(
        None, f"comma-separated scales (default: evaluate.scales, {default_of(EvaluateConfig, 'scales')})"
    )
    out: Path = arg(..., "summary JSON")
    per_image_out: Path | None = arg(None, "per-image JSON (default: <out stem>.per_image.json)")
    table_out: Path | None = arg(None, "Markdown table (default: <out stem>.md)")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N")
    tile: int = arg(DEFAULT_TILE, "tile side for large images, in pixels", ge=1)
    latency: bool = arg(True, "measure the latency of the fastest deploy form and of the network as trained")
    latency_size: int | None = arg(
        None,
        f"square input side for latency, pixels (default: evaluate.latency_size, "
        f"{default_of(EvaluateConfig, 'latency_size')})",
        ge=8,
    )
    deploy: Literal["as_trained", "auto"] = arg(
        "as_trained", "as_trained: score the network as stored; auto: score its fastest equivalent form on this device"
    )
    quiet: bool = arg(False, "no progress bars")
    params: Path | None = params_arg()


class Result(StageResult):
    summary: EvaluationSummary
    table: str
    out: Path

    def describe(self) -> str:
        return self.table


def folders_of(args: Args) -> list[Path]:
    """``--data`` folders, or ``DATA_ROOT/<name>`` for every ``data.test`` dataset of ``--params``."""
    if args.data:
        return args.data
    params = read_params(args.params)
    if params is None or args.data_root is None:
        raise ValueError("give --data DIR, or --params with --data-root to evaluate on the data.test datasets")
    return params.test_folders(args.data_root)


def settings_of(args: Args) -> EvaluateConfig:
    """The ``evaluate`` block of ``--params`` (or the defaults) with the flags' overrides."""
    params = read_params(args.params)
    block = params.evaluate if params else EvaluateConfig()
    values = block.model_dump()
    if args.scales is not None:
        values["scales"] = args.scales
    if args.latency_size is not None:
        values["latency_size"] = args.latency_size
    return EvaluateConfig.model_validate(values)


def run(args: Args) -> Result:
    from asymsr.eval.evaluation import evaluate, markdown_table
    from asymsr.mlops.loading import load_predictor

    folders, settings = folders_of(args), settings_of(args)
    predictor = load_predictor(args.model, device=args.device, tile=args.tile, deploy=args.deploy)
    summary = evaluate(
        predictor,
        folders,
        settings.scales,
        args.out,
        latency_size=settings.latency_size if args.latency else None,
        per_image_out=args.per_image_out,
        table_out=args.table_out,
        progress=not args.quiet,
    )
    return Result(summary=summary, table=markdown_table(summary, predictor.name), out=args.out)
