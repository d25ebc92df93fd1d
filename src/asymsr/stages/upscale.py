"""``asymsr upscale``: super-resolve a user's image file (luminance by the model, chroma bicubic)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from asymsr.schema.params import DEFAULT_TILE
from asymsr.stages._base import StageArgs, StageResult, arg

NAME = "upscale"
HELP = "Super-resolve an image file (luminance by the model, chroma bicubic) to PNG."


class Args(StageArgs):
    input: Path = arg(..., "image file (PNG, JPEG, BMP, WebP, TIFF; gray or colour)", positional=True)
    output: Path = arg(..., "PNG file to write", positional=True)
    scale: int = arg(..., "2, 3 or 4")
    model: str = arg(..., "'bicubic', a checkpoint (.pt), or an MLflow URI such as models:/asym_vdsr@champion")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N")
    tile: int = arg(DEFAULT_TILE, "tile side for large images, in pixels", ge=1)
    deploy: Literal["auto", "as_trained"] = arg(
        "auto",
        "auto: run the fastest equivalent form on this device (as trained or fused, NCHW or channels_last, "
        "row kernel), chosen by timing; as_trained: the network as stored",
    )


class Result(StageResult):
    output: Path
    scale: int
    model: str
    deploy: str | None

    def describe(self) -> str:
        lines = [f"deploy form: {self.deploy}"] if self.deploy else []
        return "\n".join([*lines, f"wrote {self.output} (x{self.scale}, {self.model})"])


def run(args: Args) -> Result:
    from asymsr.eval.upscale import upscale_file
    from asymsr.mlops.loading import load_predictor

    predictor = load_predictor(args.model, device=args.device, tile=args.tile, deploy=args.deploy)
    written = upscale_file(args.input, args.output, args.scale, predictor)
    deploy = predictor.deploy.describe() if predictor.deploy is not None else None
    return Result(output=written, scale=args.scale, model=predictor.name, deploy=deploy)
