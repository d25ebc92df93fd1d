"""``asymsr fetch``: materialise a dataset source as an image folder with a checksum manifest."""

from __future__ import annotations

from pathlib import Path

from asymsr.stages._base import StageArgs, StageResult, arg, params_arg, read_params

NAME = "fetch"
HELP = "Materialise a dataset source (builtin:skimage/<split>, a folder, s3://, https://...#sha256=) with a manifest."


class Args(StageArgs):
    source: str | None = arg(
        None,
        "builtin:skimage/train|val|test, a folder of images, s3://bucket/prefix or https://host/set.zip#sha256=HEX",
        positional=True,
    )
    dataset: str | None = arg(None, "instead of SOURCE: the dataset of this name in --params")
    out: Path = arg(..., "target folder (written under a temporary name, then renamed)")
    force: bool = arg(False, "replace --out even if it is not an earlier fetch (it holds no MANIFEST.sha256)")
    params: Path | None = params_arg()


class Result(StageResult):
    source: str | list[str]
    out: Path
    files: int

    def describe(self) -> str:
        return f"fetched {self.files} files from {self.source} into {self.out}"


def source_of(args: Args) -> str | list[str]:
    """The source to fetch: SOURCE, or ``datasets.<dataset>`` of the parameters."""
    if (args.source is None) == (args.dataset is None):
        raise ValueError("give either a SOURCE or --dataset NAME (with --params)")
    if args.dataset is None:
        return args.source
    params = read_params(args.params)
    if params is None:
        raise ValueError("--dataset needs --params to look the source up")
    if args.dataset not in params.datasets:
        raise KeyError(f"{args.params}: datasets.{args.dataset} is not declared; declared: {sorted(params.datasets)}")
    return params.datasets[args.dataset]


def run(args: Args) -> Result:
    from asymsr.data.sources import fetch

    source = source_of(args)
    files = fetch(source, args.out, force=args.force)
    return Result(source=source, out=args.out, files=len(files))
