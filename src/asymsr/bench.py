"""``asymsr bench``: latency, throughput and cost of VDSR, Asym_VDSR and fused Asym_VDSR.

The lightweight claim of Asym_VDSR (one third fewer parameters and multiply-adds) is only
worth something if it shows up in wall time on real hardware. This module measures it:

* Variants: ``vdsr``; ``asym_vdsr`` as trained (each middle layer a 3x1 then a 1x3
  convolution); ``asym_vdsr_fused``, the same network turned into plain 3x3 convolutions by
  :func:`asymsr.models.fuse`; each in every memory format asked for (``nchw``,
  ``channels_last``). On a CPU where :mod:`asymsr.native` kernels run, also
  ``vdsr_row_kernel`` and ``asym_vdsr_row_kernel`` (:class:`asymsr.rowkernel.RowKernelVDSR`,
  channels_last), so that both architectures are also compared on the same hand-written
  kernel. Random weights drawn from a seed (latency does not depend on their values).
* Settings: every combination of output size, CPU thread count, device and autocast dtype
  (fp32; on CUDA also fp16 and bf16).
* Protocol per setting: for each candidate (variant and memory format) ``warmup`` untimed
  forward passes on one random (1, 1, H, W) input under :func:`torch.inference_mode`, then one
  untimed probe pass (its output checks that every form computes what its source computes; on
  CUDA it also measures peak memory), then ``repeats`` timed rounds. A round times one forward
  pass of every candidate in turn (A, B, C, A, B, C, ...) so that machine noise hits all alike.
  On CUDA each timed pass is bracketed by ``torch.cuda.synchronize``.
* Reported per case: median, quartiles and minimum in milliseconds; achieved GFLOP/s from the
  multiply-adds counted by :func:`asymsr.efficiency.macs_per_pixel`, and its fraction of the
  peak (given, or on the CPU measured by :func:`asymsr.cpu_peak.measure_peak_gflops` for each
  thread count); parameters; inference checkpoint bytes; peak memory; the ratio of the median
  to VDSR's in the same memory format. Per setting, ``best`` compares the fastest form of each
  architecture: Asym_VDSR's best over VDSR's best (all forms, kernels included) and over
  VDSR's best stock PyTorch form.

Results in the README use ``repeats >= 10``; fewer (at least 3) are accepted for quick checks.
Compare ratios within one result file, not absolute times across machines.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asymsr import native, rowkernel
from asymsr.cpu_peak import measure_peak_gflops
from asymsr.efficiency import checkpoint_bytes, macs_per_pixel
from asymsr.fsutil import atomic_path, write_json, write_text
from asymsr.models import VDSR, build, count_parameters, fuse

VARIANTS = ("vdsr", "asym_vdsr", "asym_vdsr_fused")  # stock PyTorch forms
ROW_VARIANTS = {"vdsr_row_kernel": "vdsr", "asym_vdsr_row_kernel": "asym_vdsr"}  # native kernel form -> its source
SOURCES = {"asym_vdsr_fused": "asym_vdsr", **ROW_VARIANTS}  # forms checked against what they were made from
ASYM_FAMILY = ("asym_vdsr", "asym_vdsr_fused", "asym_vdsr_row_kernel")
THP_ENV = "THP_MEM_ALLOC_ENABLE"
FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
CUDA_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_REPEATS = 3
TRAIN_PATCH = 41  # training patch side in pixels, as in VDSR

CPU_MEMORY_NOTE = (
    "null on CPU: the only process-level figure, getrusage's ru_maxrss, is a lifetime high-water "
    "mark, so once a larger case has run (or while variants are interleaved) its growth cannot be "
    "attributed to one variant and size"
)
CUDA_MEMORY_NOTE = (
    "CUDA: torch.cuda.max_memory_allocated during one forward pass minus the bytes allocated "
    "before it (activations and workspace; weights and input excluded)"
)


# ---------------------------------------------------------------- argument parsing


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Output sizes as (height, width) in pixels from text like ``"256,512,1280x720"``.

    ``N`` means N x N; ``WxH`` is width by height (``1280x720`` is 720 rows of 1280 pixels).

    Raises:
        ValueError: an entry is not a positive integer or ``WxH`` pair; the message names it.
    """
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        pieces = part.lower().split("x")
        try:
            numbers = [int(piece) for piece in pieces]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2) or min(numbers) < 1:
            raise ValueError(f"bad size {part!r} in --sizes {text!r}: expected N or WxH with positive integers")
        width, height = (numbers[0], numbers[0]) if len(numbers) == 1 else numbers
        sizes.append((height, width))
    if not sizes:
        raise ValueError(f"--sizes {text!r} names no size")
    return sizes


def parse_threads(text: str) -> list[int]:
    """CPU thread counts from text like ``"1,all"``; ``all`` is ``os.cpu_count()``. Duplicates dropped.

    Raises:
        ValueError: an entry is neither a positive integer nor ``all``; the message names it.
    """
    threads: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() == "all":
            count = os.cpu_count() or 1
        else:
            try:
                count = int(part)
            except ValueError:
                count = 0
            if count < 1:
                raise ValueError(
                    f"bad thread count {part!r} in --threads {text!r}: expected a positive integer or 'all'"
                )
        if count not in threads:
            threads.append(count)
    if not threads:
        raise ValueError(f"--threads {text!r} names no thread count")
    return threads


def parse_devices(text: str) -> list[torch.device]:
    """Devices from text like ``"cpu"``, ``"cuda"`` or ``"cpu,cuda:0"``.

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


def parse_formats(text: str) -> list[str]:
    """Memory formats from text like ``"nchw,channels_last"``.

    Raises:
        ValueError: an entry is not a known format; the message names it.
    """
    formats = [p.strip() for p in text.split(",") if p.strip()]
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"bad memory format {name!r} in --formats {text!r}: expected one of {', '.join(FORMATS)}")
    if not formats:
        raise ValueError(f"--formats {text!r} names no memory format")
    return list(dict.fromkeys(formats))


# ---------------------------------------------------------------- host and models


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo, else ``platform.processor()``, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_metadata(
    threads: Sequence[int],
    devices: Sequence[torch.device],
    peak_gflops: float | None,
    measured_peak: dict[str, float] | None = None,
) -> dict[str, Any]:
    """What a timing means nothing without: CPU, GPU, threads, software, UTC time, peak FLOP/s, allocator."""
    gpus = sorted({torch.cuda.get_device_name(d) for d in devices if d.type == "cuda"})
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
        "thp_mem_alloc": os.environ.get(THP_ENV, "unset"),  # PyTorch's huge-page hint for large CPU tensors
        "native_kernels": native.unavailable_reason() or "available",
    }


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


@contextmanager
def cpu_threads(count: int):
    """Run the block with ``torch.set_num_threads(count)``; the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------- timing


def summarise_timings(timings_ms: Sequence[float]) -> dict[str, Any]:
    """Median, quartiles (inclusive method) and minimum of ``timings_ms``, all in milliseconds."""
    q1, median, q3 = statistics.quantiles(timings_ms, n=4, method="inclusive")
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "min_ms": min(timings_ms), "repeats": len(timings_ms)}


def achieved_gflops(macs_per_pixel_: float, height: int, width: int, median_ms: float) -> float:
    """Achieved GFLOP/s: 2 x multiply-adds per pixel x pixels / median time (1 GFLOP = 1e9 FLOPs)."""
    return 2.0 * macs_per_pixel_ * height * width / (median_ms / 1000.0) / 1e9


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


Candidate = tuple[nn.Module, str]  # a network and the memory format name of its input


@torch.inference_mode()
def time_setting(
    candidates: dict[str, Candidate],
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype | None,
    warmup: int,
    repeats: int,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Time one forward pass of each candidate on a (1, 1, height, width) input, in interleaved rounds.

    ``candidates`` maps a key to (network on ``device``, name of its input's memory format in
    :data:`FORMATS`); ``dtype`` is the autocast dtype (None: plain fp32). Returns per key its
    timings in milliseconds, peak memory in bytes (CUDA only, else None) and the probe pass
    output on the CPU as float32.
    """
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(1, 1, height, width, generator=generator).to(device)
    inputs = {fmt: sample.contiguous(memory_format=FORMATS[fmt]) for fmt in {fmt for _, fmt in candidates.values()}}
    results: dict[str, dict[str, Any]] = {}
    with _autocast(device, dtype):
        for key, (model, fmt) in candidates.items():
            for _ in range(warmup):
                model(inputs[fmt])
            _synchronise(device)
            peak = None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            output = model(inputs[fmt])
            _synchronise(device)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) - before
            results[key] = {"timings_ms": [], "peak_memory_bytes": peak, "output": output.float().cpu()}
            del output
        for _ in range(repeats):
            for key, (model, fmt) in candidates.items():
                _synchronise(device)
                start = time.perf_counter()
                model(inputs[fmt])
                _synchronise(device)
                results[key]["timings_ms"].append((time.perf_counter() - start) * 1000.0)
    return results


def training_throughput(
    device: torch.device, batch: int = 16, steps: int = 3, seed: int = 0, lr: float = 1e-4
) -> dict[str, dict[str, Any]]:
    """Training speed per architecture (``vdsr``, ``asym_vdsr``) in patches per second.

    Each step is one Adam update with MSE loss on a batch of random 41x41 patches (fp32, NCHW).
    After one untimed warm-up step per architecture, ``steps`` steps are timed per architecture,
    interleaved step by step. Returns per architecture: patches/s (batch x steps / summed step
    time), the median step time in milliseconds, batch and steps.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.rand(batch, 1, TRAIN_PATCH, TRAIN_PATCH, generator=generator).to(device)
    targets = torch.rand(batch, 1, TRAIN_PATCH, TRAIN_PATCH, generator=generator).to(device)
    torch.manual_seed(seed)
    setups = {}
    for arch in ("vdsr", "asym_vdsr"):
        model = build(arch).to(device).train()
        setups[arch] = (model, torch.optim.Adam(model.parameters(), lr=lr))

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()

    for model, optimizer in setups.values():
        step(model, optimizer)
    _synchronise(device)
    timings: dict[str, list[float]] = {arch: [] for arch in setups}
    for _ in range(steps):
        for arch, (model, optimizer) in setups.items():
            _synchronise(device)
            start = time.perf_counter()
            step(model, optimizer)
            _synchronise(device)
            timings[arch].append((time.perf_counter() - start) * 1000.0)
    return {
        arch: {
            "patches_per_s": batch * steps / (sum(values) / 1000.0),
            "median_step_ms": statistics.median(values),
            "batch": batch,
            "steps": steps,
        }
        for arch, values in timings.items()
    }


# ---------------------------------------------------------------- the benchmark


def _size_label(height: int, width: int) -> str:
    return f"{width}x{height}"


def run_benchmark(
    sizes: Sequence[tuple[int, int]] = ((256, 256),),
    threads: Sequence[int] = (1,),
    devices: Sequence[torch.device | str] = ("cpu",),
    formats: Sequence[str] = ("nchw", "channels_last"),
    warmup: int = 2,
    repeats: int = 10,
    peak_gflops: float | None = None,
    measure_peak: bool = True,
    row_kernel: bool = True,
    training: bool = False,
    train_batch: int = 16,
    train_steps: int = 3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every setting (size x threads x device x dtype) and return the result record.

    Args:
        sizes: output sizes as (height, width) in pixels (see :func:`parse_sizes`).
        threads: CPU thread counts (``torch.set_num_threads``; restored afterwards).
        devices: ``cpu`` and/or CUDA devices; CUDA adds autocast fp16 and bf16 to fp32.
        formats: memory formats, names from :data:`FORMATS`; every variant runs in each.
        warmup: untimed passes per candidate and setting (>= 0).
        repeats: timed rounds per setting (>= 3; README numbers use >= 10).
        peak_gflops: the machine's peak FP32 GFLOP/s, if known; adds ``fraction_of_peak`` to every case.
        measure_peak: without ``peak_gflops``, measure the CPU's peak per thread count with the FMA
            probe (:mod:`asymsr.cpu_peak`, about 1 s each, before and after the timings; the higher
            counts) and use it for the CPU cases.
        row_kernel: on the CPU, also time the native row-kernel variants (with ``channels_last``).
        training: also measure training throughput (:func:`training_throughput`) per device and threads.
        train_batch, train_steps: batch size and timed steps of the training measurement.
        seed: seed of the weights and inputs.
        log: called with one progress line per setting (None: silent).

    Returns:
        ``{"host", "protocol", "models", "cases", "best", "training"}``; each case has median/q1/q3/min
        in ms, GFLOP/s, fraction of peak (None if no peak), parameters, checkpoint bytes, peak memory
        bytes (None on CPU, see ``protocol.peak_memory``), ``ratio_to_vdsr`` (median over VDSR's
        median in the same setting and memory format; channels_last for the row kernels) and, for a
        derived form, the largest difference of its output from its source's. ``best``: see
        :func:`best_forms`.

    Raises:
        ValueError: repeats < 3, warmup < 0, empty or unknown settings, a non-positive peak, or
            CUDA requested where it is not available.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be >= {MIN_REPEATS} (README results use >= 10), got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if peak_gflops is not None and not peak_gflops > 0:
        raise ValueError(f"peak GFLOP/s must be positive, got {peak_gflops}")
    if training and (train_batch < 1 or train_steps < 1):
        raise ValueError(f"train batch and steps must be >= 1, got {train_batch} and {train_steps}")
    if not sizes or not threads or not formats:
        raise ValueError("sizes, threads and formats must each name at least one value")
    for height, width in sizes:
        if height < 1 or width < 1:
            raise ValueError(f"bad size {height}x{width}: sides must be positive")
    for count in threads:
        if count < 1:
            raise ValueError(f"bad thread count {count}: must be >= 1")
    for name in formats:
        if name not in FORMATS:
            raise ValueError(f"bad memory format {name!r}: expected one of {', '.join(FORMATS)}")
    resolved = parse_devices(",".join(str(d) for d in devices))
    log = log or (lambda _line: None)

    measured_peak = None
    on_cpu = any(device.type == "cpu" for device in resolved)
    if peak_gflops is None and measure_peak and on_cpu and native.unavailable_reason() is None:
        measured_peak = {str(count): measure_peak_gflops(count) for count in threads}
        log("CPU peak FP32 GFLOP/s by threads, probed before the timings: " + _peaks_text(measured_peak))

    base = build_variants(seed)
    costs = model_costs(base)
    cases: list[dict[str, Any]] = []
    train_rows: list[dict[str, Any]] = []
    for device in resolved:
        dtypes = CUDA_DTYPES if device.type == "cuda" else {"fp32": None}
        candidates = _candidates(base, device, formats, row_kernel)
        for count in threads:
            with cpu_threads(count):
                for height, width in sizes:
                    for dtype_name, dtype in dtypes.items():
                        started = time.perf_counter()
                        measured = time_setting(candidates, height, width, device, dtype, warmup, repeats, seed)
                        new = list(_cases(measured, candidates, costs, height, width, count, device, dtype_name))
                        cases.extend(new)
                        log(
                            f"{_size_label(height, width)} threads={count} {device}/{dtype_name}: "
                            + ", ".join(f"{c['variant']}/{c['memory_format']} {c['median_ms']:.1f} ms" for c in new)
                            + f" ({time.perf_counter() - started:.0f} s)"
                        )
        del candidates
        if training:
            for count in threads:
                with cpu_threads(count):
                    measured_training = training_throughput(device, train_batch, train_steps, seed)
                reference = measured_training["vdsr"]["patches_per_s"]
                for arch, row in measured_training.items():
                    train_rows.append(
                        {
                            "arch": arch,
                            "device": _device_label(device),
                            "threads": count,
                            **row,
                            "patch": TRAIN_PATCH,
                            "ratio_to_vdsr": row["patches_per_s"] / reference,
                        }
                    )
                log(
                    f"training threads={count} {device}: "
                    + ", ".join(f"{r['arch']} {r['patches_per_s']:.1f} patches/s" for r in train_rows[-2:])
                )

    if measured_peak is not None:  # the VM's capacity drifts: keep the higher of the probes before and after
        measured_peak = {key: max(value, measure_peak_gflops(int(key))) for key, value in measured_peak.items()}
        log("CPU peak FP32 GFLOP/s, best of the probes before and after: " + _peaks_text(measured_peak))
    for case in cases:
        peak = peak_gflops
        if peak is None and measured_peak is not None and case["device"] == "cpu":
            peak = measured_peak[str(case["threads"])]
        case["fraction_of_peak"] = case["gflops"] / peak if peak is not None else None
    return {
        "host": host_metadata(threads, resolved, peak_gflops, measured_peak),
        "protocol": {
            "warmup": warmup,
            "repeats": repeats,
            "seed": seed,
            "input": "torch.rand (1, 1, H, W), the output size",
            "interleaving": "each timed round runs every candidate (variant and memory format) of the setting once",
            "timer": "time.perf_counter around one forward pass under torch.inference_mode"
            + "; torch.cuda.synchronize before and after on CUDA",
            "gflops": "2 x macs_per_pixel x H x W / median time",
            "peak": "given peak_gflops, else on the CPU the FMA probe's measured_peak_gflops for the thread count"
            + " (the higher of one probe before and one after the timings)",
            "peak_memory": {"cpu": CPU_MEMORY_NOTE, "cuda": CUDA_MEMORY_NOTE},
        },
        "models": costs,
        "cases": cases,
        "best": best_forms(cases),
        "training": train_rows if training else None,
    }


def _peaks_text(peaks: dict[str, float]) -> str:
    return ", ".join(f"{threads} thread(s): {value:.1f}" for threads, value in peaks.items())


def _candidates(
    base: dict[str, VDSR], device: torch.device, formats: Sequence[str], row_kernel: bool
) -> dict[str, Candidate]:
    """Every (variant, memory format) to time on ``device``, keyed ``"<variant>/<format>"``."""
    candidates: dict[str, Candidate] = {}
    for fmt in formats:
        for name, model in base.items():
            candidates[f"{name}/{fmt}"] = (_copy_to(model, device, FORMATS[fmt]), fmt)
    if row_kernel and device.type == "cpu" and "channels_last" in formats and native.unavailable_reason() is None:
        for name, source in ROW_VARIANTS.items():
            candidates[f"{name}/channels_last"] = (rowkernel.RowKernelVDSR(base[source]), "channels_last")
    return candidates


def _copy_to(model: VDSR, device: torch.device, memory_format: torch.memory_format) -> VDSR:
    return copy.deepcopy(model).eval().to(device=device, memory_format=memory_format)


def _device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _cases(
    measured: dict[str, dict[str, Any]],
    candidates: dict[str, Candidate],
    costs: dict[str, dict[str, Any]],
    height: int,
    width: int,
    threads: int,
    device: torch.device,
    dtype_name: str,
) -> Iterable[dict[str, Any]]:
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
            "size": _size_label(height, width),
            "height": height,
            "width": width,
            "threads": threads,
            "device": str(device),
            "device_name": _device_label(device),
            "dtype": dtype_name,
            "memory_format": fmt,
            "variant": variant,
            **summary,
            "gflops": achieved_gflops(cost["macs_per_pixel"], height, width, summary["median_ms"]),
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


# ---------------------------------------------------------------- outputs


def markdown_report(result: dict[str, Any]) -> str:
    """The result as Markdown: host line, best-form table, one latency row per case, costs, training."""
    host = result["host"]
    measured = host.get("measured_peak_gflops")
    if host["peak_gflops"] is not None:
        peak_text = f"{host['peak_gflops']} (given)"
    elif measured:
        peak_text = ", ".join(f"{value:.1f} on {threads} thread(s)" for threads, value in measured.items())
        peak_text += " (measured by the FMA probe)"
    else:
        peak_text = "not known"
    with_peak = any(case["fraction_of_peak"] is not None for case in result["cases"])
    lines = [
        "# asymsr bench",
        "",
        f"CPU: {host['cpu_model']} ({host['logical_cpus']} logical CPUs); GPU: {host['gpu'] or 'none'}; "
        f"torch {host['torch']}; {host['datetime_utc']}; warm-up {result['protocol']['warmup']}, "
        f"repeats {result['protocol']['repeats']} (interleaved rounds); peak FP32 GFLOP/s: {peak_text}; "
        f"{THP_ENV}={host.get('thp_mem_alloc', 'unset')}; native kernels: {host.get('native_kernels', 'unknown')}.",
        "",
        "Fastest form of each architecture per setting (medians, ms):",
        "",
        "| size | threads | device/dtype | Asym_VDSR best | ms | VDSR best | ms | ratio "
        "| stock VDSR best | ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["best"]:
        lines.append(
            f"| {row['size']} | {row['threads']} | {row['device']}/{row['dtype']} | {row['asym']} | "
            f"{row['asym_ms']:.1f} | {row['vdsr']} | {row['vdsr_ms']:.1f} | {row['asym_over_vdsr']:.2f} | "
            f"{row['stock_vdsr']} | {row['stock_vdsr_ms']:.1f} | {row['asym_over_stock_vdsr']:.2f} |"
        )
    header = "| size | threads | device/dtype | format | variant | median ms | IQR ms | GFLOP/s |"
    rule = "|---|---|---|---|---|---|---|---|"
    if with_peak:
        header += " of peak |"
        rule += "---|"
    lines += ["", "All cases:", "", header + " ratio to vdsr |", rule + "---|"]
    for case in result["cases"]:
        row = (
            f"| {case['size']} | {case['threads']} | {case['device']}/{case['dtype']} | {case['memory_format']} | "
            f"{case['variant']} | {case['median_ms']:.2f} | {case['q1_ms']:.2f}-{case['q3_ms']:.2f} | "
            f"{case['gflops']:.1f} |"
        )
        if with_peak:
            fraction = case["fraction_of_peak"]
            row += f" {100 * fraction:.1f}% |" if fraction is not None else " - |"
        lines.append(row + f" {case['ratio_to_vdsr']:.2f} |")
    lines += ["", "Models (random weights; MACs counted by torch.utils.flop_counter):", ""]
    lines += ["| variant | params | checkpoint bytes | MACs per pixel |", "|---|---|---|---|"]
    for name, cost in result["models"].items():
        lines.append(f"| {name} | {cost['params']:,} | {cost['checkpoint_bytes']:,} | {cost['macs_per_pixel']:,.0f} |")
    if result.get("training"):
        lines += ["", f"Training throughput (Adam, MSE, {TRAIN_PATCH}x{TRAIN_PATCH} patches, fp32):", ""]
        lines += ["| arch | device | threads | batch | patches/s | median step ms | ratio to vdsr |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for row in result["training"]:
            lines.append(
                f"| {row['arch']} | {row['device']} | {row['threads']} | {row['batch']} | {row['patches_per_s']:.1f} | "
                f"{row['median_step_ms']:.1f} | {row['ratio_to_vdsr']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def plot_latency(result: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Bar chart of median latency (ms) per variant, grouped by setting, one panel per size; PNG, atomic."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sizes = list(dict.fromkeys(case["size"] for case in result["cases"]))
    variants = list(dict.fromkeys(case["variant"] for case in result["cases"]))
    figure = Figure(figsize=(10, 3.2 * len(sizes)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sizes), 1, squeeze=False)[:, 0]
    width = 0.8 / len(variants)
    for axis, size in zip(axes, sizes, strict=True):
        cases = [case for case in result["cases"] if case["size"] == size]
        groups = list(dict.fromkeys(_group_label(case) for case in cases))
        for index, variant in enumerate(variants):
            values = {_group_label(c): c for c in cases if c["variant"] == variant}
            present = [g for g in groups if g in values]
            positions = [groups.index(g) + (index - (len(variants) - 1) / 2) * width for g in present]
            medians = [values[g]["median_ms"] for g in present]
            errors = [
                [values[g]["median_ms"] - values[g]["q1_ms"] for g in present],
                [values[g]["q3_ms"] - values[g]["median_ms"] for g in present],
            ]
            axis.bar(positions, medians, width, yerr=errors, capsize=2, label=variant)
        axis.set_xticks(range(len(groups)), groups, fontsize=8)
        axis.set_ylabel("median latency (ms)")
        axis.set_title(f"output {size} (bars: median, whiskers: quartiles)", fontsize=10)
        axis.legend(fontsize=8)
    out = Path(out)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return out


def _group_label(case: dict[str, Any]) -> str:
    return f"{case['threads']} thr\n{case['device']}/{case['dtype']}\n{case['memory_format']}"


def write_outputs(result: dict[str, Any], prefix: str | os.PathLike[str]) -> dict[str, Path]:
    """Write PREFIX.json, PREFIX.md and PREFIX.png (each atomically); return their paths by suffix."""
    prefix = Path(prefix)
    paths = {suffix: prefix.with_name(prefix.name + "." + suffix) for suffix in ("json", "md", "png")}
    write_json(paths["json"], result)
    write_text(paths["md"], markdown_report(result))
    plot_latency(result, paths["png"])
    return paths


def stderr_log(line: str) -> None:
    """Progress line to standard error (so that standard output stays the table)."""
    print(line, file=sys.stderr, flush=True)
