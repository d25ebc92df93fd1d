"""``asymsr bench``: latency, throughput and cost of VDSR, Asym_VDSR and fused Asym_VDSR.

The lightweight claim of Asym_VDSR (one third fewer parameters and multiply-adds) is only
worth something if it shows up in wall time on real hardware. This module measures it:

* Variants: ``vdsr``; ``asym_vdsr`` as trained (each middle layer a 3x1 then a 1x3
  convolution); ``asym_vdsr_fused``, the same network turned into plain 3x3 convolutions by
  :func:`asymsr.models.fuse`. Random weights drawn from a seed (latency does not depend on
  their values).
* Settings: every combination of output size, CPU thread count, device, autocast dtype (fp32;
  on CUDA also fp16 and bf16) and memory format (``nchw``, ``channels_last``).
* Protocol per setting: for each variant ``warmup`` untimed forward passes on one random
  (1, 1, H, W) input under :func:`torch.inference_mode`, then one untimed probe pass (its
  output checks that fused and split give the same result; on CUDA it also measures peak
  memory), then ``repeats`` timed rounds. A round times one forward pass of every variant in
  turn (A, B, C, A, B, C, ...) so that machine noise hits all variants alike. On CUDA each
  timed pass is bracketed by ``torch.cuda.synchronize``.
* Reported per case: median, quartiles and minimum in milliseconds; achieved GFLOP/s from the
  multiply-adds counted by :func:`asymsr.efficiency.macs_per_pixel`; parameters; inference
  checkpoint bytes; peak memory; the ratio of the median to VDSR's in the same setting.

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

from asymsr.efficiency import checkpoint_bytes, macs_per_pixel
from asymsr.fsutil import atomic_path, write_json, write_text
from asymsr.models import VDSR, build, count_parameters, fuse

VARIANTS = ("vdsr", "asym_vdsr", "asym_vdsr_fused")
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


def host_metadata(threads: Sequence[int], devices: Sequence[torch.device], peak_gflops: float | None) -> dict[str, Any]:
    """What a timing means nothing without: CPU, GPU, threads, software versions, UTC time, given peak."""
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
    }


def build_variants(seed: int = 0) -> dict[str, VDSR]:
    """The three benchmarked networks in eval mode on the CPU, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    vdsr = build("vdsr").eval()
    asym = build("asym_vdsr").eval()
    return {"vdsr": vdsr, "asym_vdsr": asym, "asym_vdsr_fused": fuse(asym).eval()}


def model_costs(models: dict[str, VDSR]) -> dict[str, dict[str, Any]]:
    """Per variant: trainable parameters, inference checkpoint bytes and counted multiply-adds per pixel.

    The fused variant is saved as a plain ``vdsr`` checkpoint, which is how it would ship.
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


@torch.inference_mode()
def time_setting(
    models: dict[str, nn.Module],
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype | None,
    memory_format: torch.memory_format,
    warmup: int,
    repeats: int,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Time one forward pass of each model on a (1, 1, height, width) input, in interleaved rounds.

    ``models`` must already be on ``device`` in ``memory_format``; ``dtype`` is the autocast
    dtype (None: plain fp32). Returns per model its timing summary (milliseconds), peak memory in
    bytes (CUDA only, else None) and the probe pass output on the CPU as float32.
    """
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(1, 1, height, width, generator=generator).to(device).contiguous(memory_format=memory_format)
    results: dict[str, dict[str, Any]] = {}
    with _autocast(device, dtype):
        for name, model in models.items():
            for _ in range(warmup):
                model(sample)
            _synchronise(device)
            peak = None
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            output = model(sample)
            _synchronise(device)
            if device.type == "cuda":
                peak = torch.cuda.max_memory_allocated(device) - before
            results[name] = {"timings_ms": [], "peak_memory_bytes": peak, "output": output.float().cpu()}
            del output
        for _ in range(repeats):
            for name, model in models.items():
                _synchronise(device)
                start = time.perf_counter()
                model(sample)
                _synchronise(device)
                results[name]["timings_ms"].append((time.perf_counter() - start) * 1000.0)
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
    training: bool = False,
    train_batch: int = 16,
    train_steps: int = 3,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every setting (size x threads x device x dtype x format) and return the result record.

    Args:
        sizes: output sizes as (height, width) in pixels (see :func:`parse_sizes`).
        threads: CPU thread counts (``torch.set_num_threads``; restored afterwards).
        devices: ``cpu`` and/or CUDA devices; CUDA adds autocast fp16 and bf16 to fp32.
        formats: memory formats, names from :data:`FORMATS`.
        warmup: untimed passes per variant and setting (>= 0).
        repeats: timed rounds per setting (>= 3; README numbers use >= 10).
        peak_gflops: the machine's peak FP32 GFLOP/s, if known; adds ``fraction_of_peak``.
        training: also measure training throughput (:func:`training_throughput`) per device and threads.
        train_batch, train_steps: batch size and timed steps of the training measurement.
        seed: seed of the weights and inputs.
        log: called with one progress line per setting (None: silent).

    Returns:
        ``{"host", "protocol", "models", "cases", "training"}``; each case has median/q1/q3/min in
        ms, GFLOP/s, parameters, checkpoint bytes, peak memory bytes (None on CPU, see
        ``protocol.peak_memory``), and ``ratio_to_vdsr`` (median over VDSR's median in the same setting).

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

    base = build_variants(seed)
    costs = model_costs(base)
    cases: list[dict[str, Any]] = []
    train_rows: list[dict[str, Any]] = []
    for device in resolved:
        dtypes = CUDA_DTYPES if device.type == "cuda" else {"fp32": None}
        placed = {f: {n: _copy_to(m, device, FORMATS[f]) for n, m in base.items()} for f in formats}
        for count in threads:
            with cpu_threads(count):
                for height, width in sizes:
                    for dtype_name, dtype in dtypes.items():
                        for format_name in formats:
                            started = time.perf_counter()
                            measured = time_setting(
                                placed[format_name],
                                height,
                                width,
                                device,
                                dtype,
                                FORMATS[format_name],
                                warmup,
                                repeats,
                                seed,
                            )
                            cases.extend(
                                _cases(measured, costs, height, width, count, device, dtype_name, format_name, warmup)
                            )
                            log(
                                f"{_size_label(height, width)} threads={count} {device}/{dtype_name} {format_name}: "
                                + ", ".join(f"{c['variant']} {c['median_ms']:.1f} ms" for c in cases[-len(VARIANTS) :])
                                + f" ({time.perf_counter() - started:.0f} s)"
                            )
        del placed
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

    if peak_gflops is not None:
        for case in cases:
            case["fraction_of_peak"] = case["gflops"] / peak_gflops
    return {
        "host": host_metadata(threads, resolved, peak_gflops),
        "protocol": {
            "warmup": warmup,
            "repeats": repeats,
            "seed": seed,
            "input": "torch.rand (1, 1, H, W), the output size",
            "interleaving": "each timed round runs every variant once, in order " + ", ".join(VARIANTS),
            "timer": "time.perf_counter around one forward pass under torch.inference_mode"
            + "; torch.cuda.synchronize before and after on CUDA",
            "gflops": "2 x macs_per_pixel x H x W / median time",
            "peak_memory": {"cpu": CPU_MEMORY_NOTE, "cuda": CUDA_MEMORY_NOTE},
        },
        "models": costs,
        "cases": cases,
        "training": train_rows if training else None,
    }


def _copy_to(model: VDSR, device: torch.device, memory_format: torch.memory_format) -> VDSR:
    return copy.deepcopy(model).eval().to(device=device, memory_format=memory_format)


def _device_label(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _cases(
    measured: dict[str, dict[str, Any]],
    costs: dict[str, dict[str, Any]],
    height: int,
    width: int,
    threads: int,
    device: torch.device,
    dtype_name: str,
    format_name: str,
    warmup: int,
) -> Iterable[dict[str, Any]]:
    summaries = {name: summarise_timings(values["timings_ms"]) for name, values in measured.items()}
    reference = summaries["vdsr"]["median_ms"]
    split = measured["asym_vdsr"]["output"]
    for name in VARIANTS:
        summary = summaries[name]
        cost = costs[name]
        fused_diff = None
        if name == "asym_vdsr_fused":
            fused_diff = (measured[name]["output"] - split).abs().max().item()
        yield {
            "size": _size_label(height, width),
            "height": height,
            "width": width,
            "threads": threads,
            "device": str(device),
            "device_name": _device_label(device),
            "dtype": dtype_name,
            "memory_format": format_name,
            "variant": name,
            **summary,
            "warmup": warmup,
            "gflops": achieved_gflops(cost["macs_per_pixel"], height, width, summary["median_ms"]),
            "fraction_of_peak": None,
            "macs_per_pixel": cost["macs_per_pixel"],
            "params": cost["params"],
            "checkpoint_bytes": cost["checkpoint_bytes"],
            "peak_memory_bytes": measured[name]["peak_memory_bytes"],
            "ratio_to_vdsr": summary["median_ms"] / reference,
            "max_abs_diff_to_asym_vdsr": fused_diff,
        }


# ---------------------------------------------------------------- outputs


def markdown_report(result: dict[str, Any]) -> str:
    """The result as Markdown: host line, one latency table row per case, optional training table."""
    host = result["host"]
    peak = host["peak_gflops"]
    lines = [
        "# asymsr bench",
        "",
        f"CPU: {host['cpu_model']} ({host['logical_cpus']} logical CPUs); GPU: {host['gpu'] or 'none'}; "
        f"torch {host['torch']}; {host['datetime_utc']}; warm-up {result['protocol']['warmup']}, "
        f"repeats {result['protocol']['repeats']} (interleaved rounds); "
        f"peak FP32 GFLOP/s: {peak if peak is not None else 'not given'}.",
        "",
    ]
    header = "| size | threads | device/dtype | format | variant | median ms | IQR ms | GFLOP/s |"
    rule = "|---|---|---|---|---|---|---|---|"
    if peak is not None:
        header += " of peak |"
        rule += "---|"
    lines += [header + " ratio to vdsr |", rule + "---|"]
    for case in result["cases"]:
        row = (
            f"| {case['size']} | {case['threads']} | {case['device']}/{case['dtype']} | {case['memory_format']} | "
            f"{case['variant']} | {case['median_ms']:.2f} | {case['q1_ms']:.2f}-{case['q3_ms']:.2f} | "
            f"{case['gflops']:.1f} |"
        )
        if peak is not None:
            row += f" {100 * case['fraction_of_peak']:.1f}% |"
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
    figure = Figure(figsize=(9, 3.2 * len(sizes)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sizes), 1, squeeze=False)[:, 0]
    width = 0.8 / len(VARIANTS)
    for axis, size in zip(axes, sizes, strict=True):
        cases = [case for case in result["cases"] if case["size"] == size]
        groups = list(dict.fromkeys(_group_label(case) for case in cases))
        for index, variant in enumerate(VARIANTS):
            values = {_group_label(c): c for c in cases if c["variant"] == variant}
            positions = [g + (index - (len(VARIANTS) - 1) / 2) * width for g in range(len(groups))]
            medians = [values[g]["median_ms"] for g in groups]
            errors = [
                [values[g]["median_ms"] - values[g]["q1_ms"] for g in groups],
                [values[g]["q3_ms"] - values[g]["median_ms"] for g in groups],
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
