"""The machine a timing was taken on, and the CPU thread count it was taken with.

A latency means nothing without its CPU, GPU, thread count, software versions and date, so
every benchmark record carries :func:`host_metadata`; :func:`cpu_threads` sets the thread count
for one block and puts the previous one back, so that a benchmark leaves the process as it was.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from asymsr.nn import native
from asymsr.nn.devices import device_name

THP_ENV = "THP_MEM_ALLOC_ENABLE"  # PyTorch's huge-page hint for large CPU tensors; it moves CPU timings


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo, else ``platform.processor()``, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # no /proc (macOS, Windows): fall back to what the platform module knows
    return platform.processor() or "unknown"


def host_metadata(
    threads: Sequence[int],
    devices: Sequence[torch.device],
    peak_gflops: float | None,
    measured_peak: dict[str, float] | None = None,
) -> dict[str, Any]:
    """What a timing means nothing without: CPU, GPU, threads, software, UTC time, peak FLOP/s, allocator.

    ``peak_gflops`` is the user's figure (FP32 GFLOP/s) or None; ``measured_peak`` the FMA
    probe's per thread count, keyed by the count as text (``"1"``, ``"2"``, ...), or None.
    """
    gpus = sorted({device_name(d) for d in devices if d.type == "cuda"})
    return {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": list(threads),
        "gpu": ", ".join(gpus) if gpus else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if gpus else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "datetime_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "peak_gflops": peak_gflops,  # as given by the user (FP32 GFLOP/s); never guessed
        "measured_peak_gflops": measured_peak,  # CPU FMA probe per thread count ("1": ..., "2": ...)
        "thp_mem_alloc": os.environ.get(THP_ENV, "unset"),
        "native_kernels": native.unavailable_reason() or "available",
    }


@contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)``; the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
