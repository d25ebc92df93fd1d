"""``asymsr report``: evaluation summaries side by side, with plots and a visual comparison of crops."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import field_validator

from asymsr.stages._base import StageArgs, StageResult, arg, parse_pairs

NAME = "report"
HELP = "Compare evaluation summaries side by side (the first is the reference), with plots and crops."


class Args(StageArgs):
    metrics: list[Path] = arg(..., "summary JSON files from `asymsr evaluate`", positional=True)
    labels: list[str] | None = arg(None, "comma-separated column names (default: the files' stems)")
    out: Path | None = arg(None, "also write the Markdown report here")
    plot_out: Path | None = arg(None, "also write the PSNR gains as JSON rows for `dvc plots`")
    headline: Path | None = arg(
        None, "also write the headline figures (mean PSNR, parameters, latency per model) as JSON for `dvc metrics`"
    )
    plots_dir: Path | None = arg(
        None,
        "write psnr_vs_params.png and psnr_vs_latency.png here; --out then gets the full report with links",
        metavar="DIR",
    )
    visual_model: list[str] = arg(
        [],
        "a model for the visual comparison, LABEL=CHECKPOINT (repeatable, in column order; may be 'bicubic' "
        "or a models:/ URI)",
        repeat=True,
        metavar="LABEL=MODEL",
    )
    visual_images: Path | None = arg(None, "images for the visual comparison (visual_x<scale>.png)", metavar="DIR")
    visual_count: int = arg(3, "first N images of DIR by name", ge=1)
    visual_scale: int = arg(4, "scale of the visual comparison")
    visual_crop: int = arg(96, "crop side in pixels")
    device: str = arg("auto", "device for the visual models")

    @field_validator("visual_model")
    @classmethod
    def _pairs(cls, value: list[str]) -> list[str]:
        parse_pairs(value, "--visual-model")  # raises, naming the malformed one
        return value


class Result(StageResult):
    table: str
    written: list[Path]

    def describe(self) -> str:
        return self.table


def _check(args: Args) -> list[str]:
    labels = args.labels or [path.stem for path in args.metrics]
    if len(labels) != len(args.metrics):
        raise ValueError(f"--labels has {len(labels)} names for {len(args.metrics)} metrics files")
    visual = bool(args.visual_model or args.visual_images)
    if visual and not args.plots_dir:
        raise ValueError("--visual-model and --visual-images need --plots-dir")
    if visual and not (args.visual_model and args.visual_images):
        raise ValueError("--visual-model and --visual-images must be given together")
    return labels


def run(args: Args) -> Result:
    from asymsr.eval.report import comparison_report, comparison_table, gain_rows, headline
    from asymsr.schema.records import EvaluationSummary
    from asymsr.util.fs import write_json, write_text

    labels = _check(args)
    summaries = {label: EvaluationSummary.read(path) for label, path in zip(labels, args.metrics, strict=True)}
    written: list[Path] = []
    if args.plots_dir:
        base = args.out.parent if args.out else Path.cwd()
        pngs = _plots(args, summaries)
        table = comparison_report(summaries, {caption: os.path.relpath(png, base) for caption, png in pngs.items()})
        written += pngs.values()
    else:
        table = comparison_table(summaries)
    if args.out:
        write_text(args.out, table)
        written.append(args.out)
    if args.plot_out:
        write_json(args.plot_out, gain_rows(summaries))
        written.append(args.plot_out)
    if args.headline:
        write_json(args.headline, headline(summaries))
        written.append(args.headline)
    return Result(table=table, written=written)


def _plots(args: Args, summaries: dict[str, Any]) -> dict[str, Path]:
    """Write the report's PNGs into ``--plots-dir``; returns caption -> file."""
    from asymsr.eval.plots import COST_PLOTS, report_plots, summaries_with_cost
    from asymsr.mlops.loading import load_predictor
    from asymsr.util.images import list_images

    for cost, (name, _) in COST_PLOTS.items():
        if not summaries_with_cost(summaries, cost):
            print(f"asymsr report: no summary has {cost!r}; {name} not written", file=sys.stderr)
    models = parse_pairs(args.visual_model, "--visual-model")
    predictors = {label: load_predictor(spec, device=args.device) for label, spec in models.items()}
    images = list_images(args.visual_images)[: args.visual_count] if args.visual_images else []
    return report_plots(summaries, args.plots_dir, predictors, images, args.visual_scale, args.visual_crop)
