"""``asymsr import-weights``: published VDSR weights (an .npz of conv00..conv19) -> a checkpoint."""

from __future__ import annotations

from pathlib import Path

from asymsr.stages._base import StageArgs, StageResult, arg

NAME = "import-weights"
HELP = "Turn published VDSR weights (.npz of conv00..conv19) into a checkpoint."


class Args(StageArgs):
    weights: Path = arg(..., ".npz file of plain arrays", positional=True)
    arch: str = arg("vdsr", "architecture the arrays belong to")
    out: Path = arg(..., "checkpoint to write")


class Result(StageResult):
    weights: Path
    arch: str
    out: Path

    def describe(self) -> str:
        return f"imported {self.weights} as {self.arch} into {self.out}"


def run(args: Args) -> Result:
    from asymsr.nn.checkpoint import model_payload, save_checkpoint
    from asymsr.nn.reference_weights import load_npz_weights

    model = load_npz_weights(args.weights, arch=args.arch)
    save_checkpoint(args.out, model_payload(args.arch, model))
    return Result(weights=args.weights, arch=args.arch, out=args.out)
