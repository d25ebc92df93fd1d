"""``asymsr prepare``: HR image folders -> a memory-mapped set of VDSR training patches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asymsr.schema.params import PrepareConfig, PrepareOverrides, given
from asymsr.stages._base import StageArgs, StageResult, arg, params_arg, read_params

NAME = "prepare"
HELP = "Cut HR image folders into a memory-mapped set of VDSR training patches."


class Args(StageArgs):
    images: list[Path] = arg(..., "folders of HR images", positional=True)
    out: Path = arg(..., "output patch folder (written under a temporary name, then renamed)")
    settings: PrepareOverrides = arg(PrepareOverrides(), "", flatten=True)  # type: ignore[valid-type]
    workers: int = arg(min(2, os.cpu_count() or 1), "worker processes (the output does not depend on it)")
    quiet: bool = arg(False, "no progress bars")
    force: bool = arg(False, "replace --out even if it is not an earlier patch set (it holds no manifest.json)")
    params: Path | None = params_arg()


class Result(StageResult):
    out: Path
    count: int
    counts_per_scale: dict[str, int]
    skipped: int

    def describe(self) -> str:
        return (
            f"wrote {self.count} patches to {self.out} (per scale: {self.counts_per_scale}; "
            f"skipped images: {self.skipped})"
        )


def config_of(args: Args) -> PrepareConfig:
    """The ``prepare`` block of ``--params`` (or the defaults) with the flags' overrides."""
    params = read_params(args.params)
    values: dict[str, Any] = params.prepare.model_dump() if params else {}
    values.update(given(args.settings))
    return PrepareConfig.model_validate(values)


def run(args: Args) -> Result:
    from asymsr.data.prepare import prepare

    manifest = prepare(
        args.images, args.out, config_of(args), workers=args.workers, progress=not args.quiet, force=args.force
    )
    return Result(
        out=args.out,
        count=manifest["count"],
        counts_per_scale=manifest["counts_per_scale"],
        skipped=len(manifest["skipped"]),
    )
