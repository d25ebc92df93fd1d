"""``asymsr validate``: Great Expectations checks of an image folder or a patch set."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from asymsr.schema.params import ValidateConfig
from asymsr.stages._base import StageArgs, StageResult, arg, default_of, params_arg, read_params

NAME = "validate"
HELP = "Check an image folder or a patch set with Great Expectations; writes OUT.json and OUT.html, fails on error."


class Args(StageArgs):
    kind: Literal["images", "patches"] = arg(..., "what FOLDER holds: images or patches", positional=True)
    folder: Path = arg(..., "image folder, or patch folder written by `asymsr prepare`", positional=True)
    out: Path = arg(..., "report path without suffix (OUT.json and OUT.html)")
    expected_count: int | None = arg(
        None, "images: expected number of files (default: validate.expected_counts, or the known Set5, Set14, ...)"
    )
    min_size: int | None = arg(
        None, f"images: minimum height and width (default: validate.min_size, {default_of(ValidateConfig, 'min_size')})"
    )
    sample: int | None = arg(
        None, f"patches: rows checked (default: validate.patch_sample, {default_of(ValidateConfig, 'patch_sample')})"
    )
    params: Path | None = params_arg()


class Result(StageResult):
    summary: str
    json_report: Path
    html_report: Path
    success: bool

    def describe(self) -> str:
        return f"{self.summary}\nreport: {self.json_report}, {self.html_report}"


def run(args: Args) -> Result:
    """Validate, write both reports, then raise :class:`ValidationFailed` if a check failed."""
    from asymsr.data.validation import raise_on_failure, validate_images, validate_patches

    params = read_params(args.params)
    settings = params.validation if params else ValidateConfig()
    if args.kind == "images":
        expected = args.expected_count or settings.expected_counts.get(args.folder.name)
        report = validate_images(args.folder, expected_count=expected, min_size=args.min_size or settings.min_size)
    else:
        report = validate_patches(args.folder, sample=args.sample or settings.patch_sample)
    json_path, html_path = args.out.with_name(args.out.name + ".json"), args.out.with_name(args.out.name + ".html")
    report.write(json_path, html_path)
    if not report.success:  # the error is the summary; say where the full report is first
        print(f"report: {json_path}, {html_path}")
    raise_on_failure(report)
    return Result(summary=report.summary(), json_report=json_path, html_report=html_path, success=True)
