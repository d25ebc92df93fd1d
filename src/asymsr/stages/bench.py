"""``asymsr bench``: latency, throughput and cost of every form of both networks (random weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asymsr.schema.bench import BenchConfig
from asymsr.stages._base import StageArgs, StageResult, arg

NAME = "bench"
HELP = (
    "Time VDSR, Asym_VDSR, fused Asym_VDSR and (on CPU) both on the native row kernel (random weights) per size, "
    "threads, device and memory format; writes OUT.json, OUT.md and OUT.png."
)


class Args(StageArgs):
    out: Path = arg(..., "output prefix: PREFIX.json, PREFIX.md, PREFIX.png", metavar="PREFIX")
    settings: BenchConfig = arg(BenchConfig(), "", flatten=True)
    quiet: bool = arg(False, "no progress lines on standard error")


class Result(StageResult):
    table: str
    written: list[Path]

    def describe(self) -> str:
        return self.table + "\nwrote " + ", ".join(str(path) for path in self.written)


def run(args: Args) -> Result:
    from asymsr.bench.output import markdown_report, stderr_log, write_outputs
    from asymsr.bench.runner import run_benchmark

    result: dict[str, Any] = run_benchmark(args.settings, log=None if args.quiet else stderr_log)
    paths = write_outputs(result, args.out)
    return Result(table=markdown_report(result), written=list(paths.values()))
