"""Where the time of one middle layer goes: VDSR's 3x3 against Asym_VDSR's 3x1 + 1x3, per kernel.

    .venv/bin/python benchmarks/layer_profile.py [--size 512] [--threads 1,2] [--repeats 10]
        [--out benchmarks/results/layer_profile_cpu_2core_epyc]

One 64 -> 64 channel layer with ReLU on a random channels_last (1, 64, size, size) input, CPU,
float32. Cases, timed in interleaved rounds (median of ``--repeats`` after one warm-up):

* ``onednn 3x3``: ``relu(conv2d(x, w3x3))`` as PyTorch runs a VDSR layer;
* ``onednn 3x1``, ``onednn 1x3`` and ``onednn pair``: the two factors alone and chained with
  ReLU, as PyTorch runs an Asym_VDSR layer;
* ``row 3x3`` and ``row pair``: the same layers on :mod:`asymsr.nn.rowkernel`, writing into a
  preallocated output (as :class:`~asymsr.nn.rowkernel.RowKernelVDSR` does).

For each: milliseconds, GFLOP/s (2 x multiply-adds / time) and the fraction of the CPU's
peak measured by :func:`asymsr.bench.cpu_peak.measure_peak_gflops` for the thread count (the higher of
a probe before and one after the timings), and the
time relative to ``onednn 3x3``. A pair does 2/3 of a 3x3's multiply-adds, so 0.667 is the ratio
its time would have at equal efficiency. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # huge pages for large tensors, as in the README's bench run

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from asymsr.bench.cpu_peak import measure_peak_gflops  # noqa: E402
from asymsr.bench.host import cpu_model, cpu_threads  # noqa: E402
from asymsr.nn import rowkernel  # noqa: E402
from asymsr.schema.bench import parse_threads  # noqa: E402
from asymsr.util.fs import write_json, write_text  # noqa: E402

CHANNELS = 64


def layer_cases(size: int) -> dict[str, tuple[Callable[[], Any], float]]:
    """Case name -> (one call, multiply-adds of the call as a fraction of a 3x3 layer's)."""
    torch.manual_seed(0)
    x = torch.rand(1, CHANNELS, size, size).contiguous(memory_format=torch.channels_last)
    out = torch.empty_like(x)
    w3x3, w3x1, w1x3 = (
        torch.randn(CHANNELS, CHANNELS, *shape).contiguous(memory_format=torch.channels_last) * 0.05
        for shape in ((3, 3), (3, 1), (1, 3))
    )
    packed_3x3, packed_3x1, packed_1x3 = rowkernel.pack_3x3(w3x3), rowkernel.pack_3x1(w3x1), rowkernel.pack_1x3(w1x3)
    return {
        "onednn 3x3": (lambda: F.relu_(F.conv2d(x, w3x3, padding=1)), 1.0),
        "onednn 3x1": (lambda: F.conv2d(x, w3x1, padding=(1, 0)), 1 / 3),
        "onednn 1x3": (lambda: F.conv2d(x, w1x3, padding=(0, 1)), 1 / 3),
        "onednn pair": (lambda: F.relu_(F.conv2d(F.conv2d(x, w3x1, padding=(1, 0)), w1x3, padding=(0, 1))), 2 / 3),
        "row 3x3": (lambda: rowkernel.conv3x3(x, packed_3x3, relu=True, out=out), 1.0),
        "row pair": (lambda: rowkernel.asym_pair(x, packed_3x1, packed_1x3, out=out), 2 / 3),
    }


@torch.inference_mode()
def profile(size: int, threads: int, repeats: int) -> list[dict[str, Any]]:
    """Time every case on ``threads`` threads; rows with ms, GFLOP/s, fraction of peak, ratio to onednn 3x3."""
    cases = layer_cases(size)
    with cpu_threads(threads):
        peak_before = measure_peak_gflops(threads)
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for call, _ in cases.values():
            call()
        for _ in range(repeats):
            for name, (call, _) in cases.items():
                start = time.perf_counter()
                call()
                timings[name].append(time.perf_counter() - start)
        peak = max(peak_before, measure_peak_gflops(threads))  # the VM's capacity drifts: the higher probe
    layer_flops = 2.0 * size * size * CHANNELS * CHANNELS * 9
    reference = statistics.median(timings["onednn 3x3"])
    rows = []
    for name, (_, fraction) in cases.items():
        seconds = statistics.median(timings[name])
        gflops = layer_flops * fraction / seconds / 1e9
        rows.append(
            {
                "case": name,
                "threads": threads,
                "size": size,
                "median_ms": seconds * 1000.0,
                "gflops": gflops,
                "peak_gflops": peak,
                "fraction_of_peak": gflops / peak,
                "ratio_to_onednn_3x3": seconds / reference,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default: 512)")
    parser.add_argument("--threads", default="1,all", help="thread counts, e.g. 1,all (default: 1,all)")
    parser.add_argument("--repeats", type=int, default=10, help="timed interleaved rounds (default: 10)")
    parser.add_argument("--out", default="benchmarks/results/layer_profile_cpu_2core_epyc", help="output prefix")
    args = parser.parse_args()
    rows = [row for threads in parse_threads(args.threads) for row in profile(args.size, threads, args.repeats)]
    record = {
        "cpu_model": cpu_model(),
        "torch": torch.__version__,
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "repeats": args.repeats,
        "rows": rows,
    }
    lines = [
        f"One 64-channel layer at {args.size}x{args.size}, {record['cpu_model']}, torch {record['torch']}, "
        f"{record['datetime_utc']}, median of {args.repeats} interleaved runs:",
        "",
        "| threads | case | ms | GFLOP/s | of measured peak | time / onednn 3x3 |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['threads']} | {row['case']} | {row['median_ms']:.1f} | {row['gflops']:.1f} | "
            f"{100 * row['fraction_of_peak']:.0f}% of {row['peak_gflops']:.0f} | {row['ratio_to_onednn_3x3']:.3f} |"
        )
    write_json(f"{args.out}.json", record)
    write_text(f"{args.out}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
