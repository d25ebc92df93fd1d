"""``asymsr bench``: latency, throughput and cost of VDSR, Asym_VDSR and fused Asym_VDSR.

The lightweight claim of Asym_VDSR (one third fewer parameters and multiply-adds) is only
worth something if it shows up in wall time on real hardware. This module measures it:

* Variants: ``vdsr``; ``asym_vdsr`` as trained (each middle layer a 3x1 then a 1x3
  convolution); ``asym_vdsr_fused``, the same network turned into plain 3x3 convolutions by
  :func:`asymsr.nn.models.fuse`; each in every memory format asked for (``nchw``,
  ``channels_last``). On a CPU where :mod:`asymsr.nn.native` kernels run, also
  ``vdsr_row_kernel`` and ``asym_vdsr_row_kernel`` (:class:`asymsr.nn.rowkernel.RowKernelVDSR`,
  channels_last), so that both architectures are also compared on the same hand-written
  kernel. Random weights drawn from a seed (latency does not depend on their values).
* Settings: every combination of output size, CPU thread count, device and autocast dtype
  (fp32; on CUDA also fp16 and bf16).
* Protocol per setting (:func:`asymsr.bench.timing.time_setting`): for each candidate (variant
  and memory format) ``warmup`` untimed forward passes on one random (1, 1, H, W) input under
  :func:`torch.inference_mode`, then one untimed probe pass (its output checks that every form
  computes what its source computes; on CUDA it also measures peak memory), then ``repeats``
  timed rounds. A round times one forward pass of every candidate in turn (A, B, C, A, B, C, ...)
  so that machine noise hits all alike. On CUDA each timed pass is bracketed by
  ``torch.cuda.synchronize``.
* Reported per case: median, quartiles and minimum in milliseconds; achieved GFLOP/s from the
  multiply-adds counted by :func:`asymsr.eval.efficiency.macs_per_pixel`, and its fraction of the
  peak (given, or on the CPU measured by :func:`asymsr.bench.cpu_peak.measure_peak_gflops` for each
  thread count); parameters; inference checkpoint bytes; peak memory; the ratio of the median
  to VDSR's in the same memory format. Per setting, ``best`` compares the fastest form of each
  architecture: Asym_VDSR's best over VDSR's best (all forms, kernels included) and over
  VDSR's best stock PyTorch form.

The settings are one :class:`asymsr.schema.bench.BenchConfig`; :func:`run_benchmark` returns the
record and :mod:`asymsr.bench.output` writes it as JSON, Markdown and PNG.

Results in the README use ``repeats >= 10``; fewer (at least 3) are accepted for quick checks.
Compare ratios within one result file, not absolute times across machines.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from asymsr.bench.cpu_peak import measure_peak_gflops
from asymsr.bench.host import cpu_threads, host_metadata
from asymsr.bench.timing import (
    CUDA_DTYPES,
    FORMATS,
    TRAIN_PATCH,
    Candidate,
    achieved_gflops,
    summarise_timings,
    time_setting,
    training_throughput,
)
from asymsr.eval.efficiency import checkpoint_bytes, macs_per_pixel
from asymsr.nn import native, rowkernel
from asymsr.nn.devices import device_name
from asymsr.nn.models import VDSR, build, count_parameters, fuse
from asymsr.schema.bench import BenchConfig

VARIANTS = ("vdsr", "asym_vdsr", "asym_vdsr_fused")  # stock PyTorch forms
ROW_VARIANTS = {"vdsr_row_kernel": "vdsr", "asym_vdsr_row_kernel": "asym_vdsr"}  # native kernel form -> its source
SOURCES = {"asym_vdsr_fused": "asym_vdsr", **ROW_VARIANTS}  # forms checked against what they were made from
ASYM_FAMILY = ("asym_vdsr", "asym_vdsr_fused", "asym_vdsr_row_kernel")

CPU_MEMORY_NOTE = (
    "null on CPU: the only process-level figure, getrusage's ru_maxrss, is a lifetime high-water "
    "mark, so once a larger case has run (or while variants are interleaved) its growth cannot be "
    "attributed to one variant and size"
)
CUDA_MEMORY_NOTE = (
    "CUDA: torch.cuda.max_memory_allocated during one forward pass minus the bytes allocated "
    "before it (activations and workspace; weights and input excluded)"
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One timed setting: output size in pixels, CPU threads, device and autocast dtype (None: fp32)."""

    height: int
    width: int
    threads: int
    device: torch.device
    dtype_name: str
    dtype: torch.dtype | None

    @property
    def size(self) -> str:
        """``WxH``, as the user writes sizes."""
        return f"{self.width}x{self.height}"


def parse_devices(text: str) -> list[torch.device]:
    """Devices from text like ``"cpu"``, ``"cuda"`` or ``"cpu,cuda:0"``, in order, duplicates dropped.

    Raises:
        ValueError: an entry is not cpu/cuda[:N], or CUDA is requested but not available.
    """
    devices: list[torch.device] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            device = torch.device(part)
        except RuntimeError:
            raise ValueError(f"bad device {part!r} in --device {text!r}: expected cpu, cuda or cuda:N") from None
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"bad device {part!r} in --device {text!r}: expected cpu, cuda or cuda:N")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {part!r} requested but CUDA is not available on this machine")
        if device not in devices:
            devices.append(device)
    if not devices:
        raise ValueError(f"--device {text!r} names no device")
    return devices


def build_variants(seed: int = 0) -> dict[str, VDSR]:
    """The three benchmarked networks in eval mode on the CPU, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    vdsr = build("vdsr").eval()
    asym = build("asym_vdsr").eval()
    return {"vdsr": vdsr, "asym_vdsr": asym, "asym_vdsr_fused": fuse(asym).eval()}


def model_costs(models: dict[str, VDSR]) -> dict[str, dict[str, Any]]:
    """Per variant: trainable parameters, inference checkpoint bytes and counted multiply-adds per pixel.

    The fused variant is saved as a plain ``vdsr`` checkpoint, which is how it would ship. The
    row-kernel variants run their source's weights, so they have their source's costs.
    """
    costs = {}
    for name, model in models.items():
        arch = "vdsr" if name == "asym_vdsr_fused" else name
        costs[name] = {
            "arch": arch,
            "params": count_parameters(model),
            "checkpoint_bytes": checkpoint_bytes(arch, model),
            "macs_per_pixel": macs_per_pixel(model),
        }
    for name, source in ROW_VARIANTS.items():
        costs[name] = dict(costs[source])
    return costs


# ---------------------------------------------------------------- the benchmark


def run_benchmark(config: BenchConfig, log: Log | None = None) -> dict[str, Any]:
    """Run every setting (size x threads x device x dtype) of ``config`` and return the result record.

    Thread counts are set with ``torch.set_num_threads`` and restored afterwards. Without a
    given ``peak_gflops`` and with ``measure_peak``, the CPU's peak is probed per thread count
    (:mod:`asymsr.bench.cpu_peak`, about 1 s each) before and after the timings; the higher
    counts, and it gives the CPU cases their ``fraction_of_peak``. ``log`` gets one progress
    line per setting (None: silent).

    Returns:
        ``{"host", "protocol", "models", "cases", "best", "training"}``; each case has median/q1/q3/min
        in ms, GFLOP/s, fraction of peak (None if no peak), parameters, checkpoint bytes, peak memory
        bytes (None on CPU, see ``protocol.peak_memory``), ``ratio_to_vdsr`` (median over VDSR's
        median in the same setting and memory format; channels_last for the row kernels) and, for a
        derived form, the largest difference of its output from its source's. ``best``: see
        :func:`best_forms`; ``training``: see :func:`training_rows` (None without ``training``).

    Raises:
        ValueError: ``config.device`` names a bad device, or CUDA where it is not available.
    """
    devices = parse_devices(config.device)
    log = log or _silent
    measured_peak = _probe_peaks(config, devices, log)
    base = build_variants(config.seed)
    costs = model_costs(base)
    cases: list[dict[str, Any]] = []
    train_rows: list[dict[str, Any]] = []
    for device in devices:
        cases += time_device(config, device, base, costs, log)
        if config.training:
            train_rows += training_rows(config, device, log)
    if measured_peak is not None:  # the VM's capacity drifts: keep the higher of the probes before and after
        measured_peak = _best_of_probes(measured_peak, log)
    apply_peaks(cases, config.peak_gflops, measured_peak)
    return {
        "host": host_metadata(config.thread_list, devices, config.peak_gflops, measured_peak),
        "protocol": protocol(config),
        "models": costs,
        "cases": cases,
        "best": best_forms(cases),
        "training": train_rows if config.training else None,
    }


def _silent(_line: str) -> None:
    pass


def _probe_peaks(config: BenchConfig, devices: Sequence[torch.device], log: Log) -> dict[str, float] | None:
    """The CPU's peak FP32 GFLOP/s per thread count (keyed ``"1"``, ...) before the timings, or None.

    None where a peak is given, the probe is turned off, no device is the CPU, or the native
    kernels (the probe is one) cannot run here.
    """
    on_cpu = any(device.type == "cpu" for device in devices)
    peak_kernel = native.unavailable_reason("fma_peak") is None
    if not (config.peak_gflops is None and config.measure_peak and on_cpu and peak_kernel):
        return None
    peaks = {str(count): measure_peak_gflops(count) for count in config.thread_list}
    log("CPU peak FP32 GFLOP/s by threads, probed before the timings: " + _peaks_text(peaks))
    return peaks


def _best_of_probes(before: dict[str, float], log: Log) -> dict[str, float]:
    """Probe again after the timings and keep, per thread count, the higher peak in GFLOP/s."""
    peaks = {key: max(value, measure_peak_gflops(int(key))) for key, value in before.items()}
    log("CPU peak FP32 GFLOP/s, best of the probes before and after: " + _peaks_text(peaks))
    return peaks


def _peaks_text(peaks: dict[str, float]) -> str:
    return ", ".join(f"{threads} thread(s): {value:.1f}" for threads, value in peaks.items())


def time_device(
    config: BenchConfig, device: torch.device, base: dict[str, VDSR], costs: dict[str, dict[str, Any]], log: Log
) -> list[dict[str, Any]]:
    """The cases of every setting on ``device``: threads, then sizes, then dtypes (fp32 only off CUDA).

    The candidates are copied to ``device`` once and dropped on return, before the next device.
    """
    dtypes = CUDA_DTYPES if device.type == "cuda" else {"fp32": None}
    candidates = _candidates(base, device, config.format_list, config.row_kernel)
    cases: list[dict[str, Any]] = []
    for count in config.thread_list:
        with cpu_threads(count):
            for (height, width), (dtype_name, dtype) in itertools.product(config.size_list, dtypes.items()):
                setting = Setting(height, width, count, device, dtype_name, dtype)
                cases += _time_one_setting(config, setting, candidates, costs, log)
    return cases


def _time_one_setting(
    config: BenchConfig,
    setting: Setting,
    candidates: dict[str, Candidate],
    costs: dict[str, dict[str, Any]],
    log: Log,
) -> list[dict[str, Any]]:
    """Time every candidate in one setting; one case per candidate, and one progress line."""
    started = time.perf_counter()
    measured = time_setting(
        candidates,
        setting.height,
        setting.width,
        setting.device,
        setting.dtype,
        config.warmup,
        config.repeats,
        config.seed,
    )
    cases = list(_cases(measured, candidates, costs, setting))
    log(
        f"{setting.size} threads={setting.threads} {setting.device}/{setting.dtype_name}: "
        + ", ".join(f"{c['variant']}/{c['memory_format']} {c['median_ms']:.1f} ms" for c in cases)
        + f" ({time.perf_counter() - started:.0f} s)"
    )
    return cases


def training_rows(config: BenchConfig, device: torch.device, log: Log) -> list[dict[str, Any]]:
    """Training throughput on ``device`` per thread count: one row per architecture, VDSR first.

    Each row is :func:`asymsr.bench.timing.training_throughput`'s figures plus the device's
    name, the thread count, the patch side in pixels and the patches/s over VDSR's.
    """
    rows: list[dict[str, Any]] = []
    for count in config.thread_list:
        with cpu_threads(count):
            measured = training_throughput(device, config.train_batch, config.train_steps, config.seed)
        reference = measured["vdsr"]["patches_per_s"]
        new = [
            {
                "arch": arch,
                "device": device_name(device),
                "threads": count,
                **row,
                "patch": TRAIN_PATCH,
                "ratio_to_vdsr": row["patches_per_s"] / reference,
            }
            for arch, row in measured.items()
        ]
        rows += new
        log(
            f"training threads={count} {device}: "
            + ", ".join(f"{r['arch']} {r['patches_per_s']:.1f} patches/s" for r in new)
        )
    return rows


def apply_peaks(cases: Sequence[dict[str, Any]], given: float | None, measured: dict[str, float] | None) -> None:
    """Fill each case's ``fraction_of_peak`` in place: GFLOP/s over the given peak, else on the CPU
    over the measured peak for its thread count; None where neither applies."""
    for case in cases:
        peak = given
        if peak is None and measured is not None and case["device"] == "cpu":
            peak = measured[str(case["threads"])]
        case["fraction_of_peak"] = case["gflops"] / peak if peak is not None else None


def protocol(config: BenchConfig) -> dict[str, Any]:
    """The record's ``protocol`` block: how the numbers were taken, in words, so the file explains itself."""
    return {
        "warmup": config.warmup,
        "repeats": config.repeats,
        "seed": config.seed,
        "input": "torch.rand (1, 1, H, W), the output size",
        "interleaving": "each timed round runs every candidate (variant and memory format) of the setting once",
        "timer": "time.perf_counter around one forward pass under torch.inference_mode"
        + "; torch.cuda.synchronize before and after on CUDA",
        "gflops": "2 x macs_per_pixel x H x W / median time",
        "peak": "given peak_gflops, else on the CPU the FMA probe's measured_peak_gflops for the thread count"
        + " (the higher of one probe before and one after the timings)",
        "peak_memory": {"cpu": CPU_MEMORY_NOTE, "cuda": CUDA_MEMORY_NOTE},
    }


def _candidates(
    base: dict[str, VDSR], device: torch.device, formats: Sequence[str], row_kernel: bool
) -> dict[str, Candidate]:
    """Every (variant, memory format) to time on ``device``, keyed ``"<variant>/<format>"``."""
    candidates: dict[str, Candidate] = {}
    for fmt in formats:
        for name, model in base.items():
            candidates[f"{name}/{fmt}"] = (_copy_to(model, device, FORMATS[fmt]), fmt)
    row_kernel = row_kernel and native.unavailable_reason("rowconv") is None
    if row_kernel and device.type == "cpu" and "channels_last" in formats:
        for name, source in ROW_VARIANTS.items():  # the row kernel reads channels_last only
            candidates[f"{name}/channels_last"] = (rowkernel.RowKernelVDSR(base[source]), "channels_last")
    return candidates


def _copy_to(model: VDSR, device: torch.device, memory_format: torch.memory_format) -> VDSR:
    return copy.deepcopy(model).eval().to(device=device, memory_format=memory_format)


def _cases(
    measured: dict[str, dict[str, Any]],
    candidates: dict[str, Candidate],
    costs: dict[str, dict[str, Any]],
    setting: Setting,
) -> Iterable[dict[str, Any]]:
    """One case per candidate, in the candidates' order; ``fraction_of_peak`` is filled later."""
    summaries = {key: summarise_timings(values["timings_ms"]) for key, values in measured.items()}
    for key, (_, fmt) in candidates.items():
        variant = key.split("/")[0]
        summary = summaries[key]
        cost = costs[variant]
        source_diff = None
        if variant in SOURCES:
            source = measured[f"{SOURCES[variant]}/{fmt}"]["output"]
            source_diff = (measured[key]["output"] - source).abs().max().item()
        yield {
            "size": setting.size,
            "height": setting.height,
            "width": setting.width,
            "threads": setting.threads,
            "device": str(setting.device),
            "device_name": device_name(setting.device),
            "dtype": setting.dtype_name,
            "memory_format": fmt,
            "variant": variant,
            **summary,
            "gflops": achieved_gflops(cost["macs_per_pixel"], setting.height, setting.width, summary["median_ms"]),
            "fraction_of_peak": None,
            "macs_per_pixel": cost["macs_per_pixel"],
            "params": cost["params"],
            "checkpoint_bytes": cost["checkpoint_bytes"],
            "peak_memory_bytes": measured[key]["peak_memory_bytes"],
            "ratio_to_vdsr": summary["median_ms"] / summaries[f"vdsr/{fmt}"]["median_ms"],
            "max_abs_diff_to_source": source_diff,
        }


def best_forms(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting (size, threads, device, dtype): the fastest form of each architecture and their ratio.

    ``asym_over_vdsr``: Asym_VDSR's fastest form (split, fused or row kernel, any memory format)
    over VDSR's fastest form (stock or row kernel); ``asym_over_stock_vdsr``: the same Asym_VDSR
    time over VDSR's fastest stock PyTorch form. Medians in milliseconds.
    """
    rows = []

    def setting(case: dict[str, Any]) -> tuple[str, int, str, str]:
        return case["size"], case["threads"], case["device"], case["dtype"]

    for size, threads, device, dtype in dict.fromkeys(setting(c) for c in cases):
        same = [c for c in cases if setting(c) == (size, threads, device, dtype)]
        asym = min((c for c in same if c["variant"] in ASYM_FAMILY), key=lambda c: c["median_ms"])
        vdsr = min((c for c in same if c["variant"] not in ASYM_FAMILY), key=lambda c: c["median_ms"])
        stock = min((c for c in same if c["variant"] == "vdsr"), key=lambda c: c["median_ms"])
        rows.append(
            {
                "size": size,
                "threads": threads,
                "device": device,
                "dtype": dtype,
                "asym": f"{asym['variant']}/{asym['memory_format']}",
                "asym_ms": asym["median_ms"],
                "vdsr": f"{vdsr['variant']}/{vdsr['memory_format']}",
                "vdsr_ms": vdsr["median_ms"],
                "stock_vdsr": f"vdsr/{stock['memory_format']}",
                "stock_vdsr_ms": stock["median_ms"],
                "asym_over_vdsr": asym["median_ms"] / vdsr["median_ms"],
                "asym_over_stock_vdsr": asym["median_ms"] / stock["median_ms"],
            }
        )
    return rows
