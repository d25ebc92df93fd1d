"""``asymsr upscale``: super-resolve a user's photo, or a folder of them (luminance by the model, chroma bicubic)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from asymsr.schema.params import DEFAULT_TILE
from asymsr.stages._base import StageArgs, StageResult, arg

NAME = "upscale"
HELP = "Super-resolve an image file, or every image in a folder, (luminance by the model, chroma bicubic) to PNG."


class Args(StageArgs):
    input: Path = arg(
        ..., "image file (PNG, JPEG, BMP, WebP, TIFF; gray or colour), or a folder of them", positional=True
    )
    output: Path = arg(..., "PNG file to write; for a folder INPUT, the folder to write NAME.png into", positional=True)
    scale: int = arg(..., "2, 3 or 4")
    model: str = arg(..., "'bicubic', a checkpoint (.pt), or an MLflow URI such as models:/asym_vdsr@champion")
    device: str = arg("auto", "auto, cpu, cuda, cuda:N")
    tile: int = arg(DEFAULT_TILE, "output tile side in pixels: memory grows with it, not with the photo", ge=16)
    deploy: Literal["auto", "as_trained"] = arg(
        "auto",
        "auto: run the fastest equivalent form on this device (as trained or fused, NCHW or channels_last, "
        "row kernel), chosen by timing; as_trained: the network as stored",
    )
    force: bool = arg(False, "folder mode: replace PNGs that already exist in OUTPUT")


class Result(StageResult):
    outputs: list[Path]
    scale: int
    model: str
    deploy: str | None

    def describe(self) -> str:
        lines = [f"deploy form: {self.deploy}"] if self.deploy else []
        written = str(self.outputs[0]) if len(self.outputs) == 1 else f"{len(self.outputs)} images"
        return "\n".join([*lines, f"wrote {written} (x{self.scale}, {self.model})"])


def plan(args: Args) -> list[tuple[Path, Path]]:
    """(input, output) pairs, every one checked before any model loads.

    Raises:
        ValueError: a bad scale, input or output (one line naming it).
    """
    from asymsr.eval.upscale import check_output_path, check_scale
    from asymsr.util.images import image_size, list_images

    check_scale(args.scale)
    if args.input.is_dir():
        if args.output.exists() and not args.output.is_dir():
            raise ValueError(f"output {args.output}: INPUT is a folder, so OUTPUT must be a folder too")
        if args.output.resolve() == args.input.resolve():
            raise ValueError(f"output {args.output} is the input folder; choose another so no input is replaced")
        pairs = [(path, args.output / f"{path.stem}.png") for path in list_images(args.input)]
        names = [target.name for _, target in pairs]
        clash = next((name for name in names if names.count(name) > 1), None)
        if clash is not None:
            raise ValueError(f"{args.input}: two images would both be written as {clash}")
        existing = [str(target) for _, target in pairs if target.exists()]
        if existing and not args.force:
            raise ValueError(f"{existing[0]} exists ({len(existing)} outputs do); pass --force to replace them")
    else:
        pairs = [(args.input, args.output)]
    for source, target in pairs:
        image_size(source)  # exists, is an image, and is within the pixel limit: from its header only
        check_output_path(source, target)
    return pairs


def run(args: Args) -> Result:
    from asymsr.eval.upscale import upscale_file
    from asymsr.mlops.loading import load_predictor

    pairs = plan(args)
    predictor = load_predictor(args.model, device=args.device, tile=args.tile, deploy=args.deploy)
    written = [upscale_file(source, target, args.scale, predictor) for source, target in pairs]
    deploy = predictor.deploy.describe() if predictor.deploy is not None else None
    return Result(outputs=written, scale=args.scale, model=predictor.name, deploy=deploy)
