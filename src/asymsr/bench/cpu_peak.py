"""The CPU's attainable peak FP32 FLOP/s, measured: the yardstick for "fraction of peak".

A nominal peak (cores x FMA pipes x 16 FLOPs x clock) is only known where the clock is; on a
cloud VM the clock under turbo is neither fixed nor reported. :func:`measure_peak_gflops` instead
runs ``kernels/fma_peak.c`` (independent AVX2 fused multiply-adds, no memory traffic) on the
given number of threads and reports the best of a few rounds. That is the most any FP32 kernel
can reach on this machine at that moment, so achieved/measured is an honest efficiency.
Needs the native kernels (:mod:`asymsr.nn.native`).
"""

from __future__ import annotations

import ctypes

from asymsr.nn import native

FLOPS_PER_ROUND = 10 * 8 * 2  # 10 independent 8-wide FMAs, 2 FLOPs each
CALIBRATION_ROUNDS = 2_000_000


def _library() -> ctypes.CDLL:
    lib = native.load("fma_peak")
    lib.asymsr_fma_seconds.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.asymsr_fma_seconds.restype = ctypes.c_double
    return lib


def _seconds(lib: ctypes.CDLL, rounds: int, threads: int) -> float:
    sink = ctypes.c_float()
    seconds = lib.asymsr_fma_seconds(rounds, threads, ctypes.byref(sink))
    if seconds <= 0:
        raise RuntimeError(f"the FMA probe could not start {threads} threads")
    return seconds


def measure_peak_gflops(threads: int, seconds: float = 0.3, repeats: int = 3) -> float:
    """Best FP32 GFLOP/s of ``repeats`` FMA-probe runs of about ``seconds`` each on ``threads`` threads.

    Raises:
        ValueError: threads < 1, seconds <= 0 or repeats < 1.
        asymsr.nn.native.NativeUnavailable: the probe cannot be built or run here.
    """
    if threads < 1 or seconds <= 0 or repeats < 1:
        raise ValueError(f"threads and repeats must be >= 1 and seconds > 0, got {threads}, {repeats}, {seconds}")
    lib = _library()
    per_round = _seconds(lib, CALIBRATION_ROUNDS, threads) / CALIBRATION_ROUNDS
    rounds = max(CALIBRATION_ROUNDS, int(seconds / per_round))
    best = min(_seconds(lib, rounds, threads) for _ in range(repeats))
    return threads * rounds * FLOPS_PER_ROUND / best / 1e9
