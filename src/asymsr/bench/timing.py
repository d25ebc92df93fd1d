"""Timing primitives of ``asymsr bench``: interleaved forward-pass timings and training throughput.

Machine noise (turbo, other tenants of a VM, the page cache) drifts over seconds, so the
candidates of one setting are timed in interleaved rounds (A, B, C, A, B, C, ...) rather than
one after the other: a slow moment then hits every candidate alike, and their ratio holds.
On CUDA every timed pass is bracketed by ``torch.cuda.synchronize``, since kernels run
asynchronously and the host clock would otherwise time only their launch. Times are in
milliseconds from :func:`time.perf_counter`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from asymsr.nn.models import build

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}  # keys: schema FORMAT_NAMES
CUDA_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # autocast dtype; None = plain fp32
TRAIN_PATCH = 41  # training patch side in pixels, as in VDSR
TRAIN_ARCHS = ("vdsr", "asym_vdsr")

Candidate = tuple[nn.Module, str]  # a network and the memory format name of its input


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


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


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
    :data:`FORMATS`); ``dtype`` is the autocast dtype (None: plain fp32). Each candidate first
    gets ``warmup`` untimed passes and one untimed probe pass; then ``repeats`` rounds time one
    pass of every candidate in turn. Returns per key its timings in milliseconds, peak memory
    in bytes (CUDA only, else None) and the probe pass output on the CPU as float32.
    """
    inputs = _inputs(candidates, height, width, device, seed)
    with _autocast(device, dtype):
        results = {
            key: _warm_up_and_probe(model, inputs[fmt], device, warmup) for key, (model, fmt) in candidates.items()
        }
        for _ in range(repeats):
            for key, (model, fmt) in candidates.items():
                results[key]["timings_ms"].append(_timed_pass(model, inputs[fmt], device))
    return results


def _inputs(
    candidates: dict[str, Candidate], height: int, width: int, device: torch.device, seed: int
) -> dict[str, torch.Tensor]:
    """One random (1, 1, height, width) sample from ``seed``, in each memory format the candidates use."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.rand(1, 1, height, width, generator=generator).to(device)
    return {fmt: sample.contiguous(memory_format=FORMATS[fmt]) for fmt in {fmt for _, fmt in candidates.values()}}


def _warm_up_and_probe(model: nn.Module, sample: torch.Tensor, device: torch.device, warmup: int) -> dict[str, Any]:
    """``warmup`` untimed passes, then one probe pass: its output, and on CUDA its peak memory in bytes."""
    for _ in range(warmup):
        model(sample)
    _synchronise(device)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)  # weights and input: not the pass's own memory
    output = model(sample)
    _synchronise(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - before
    return {"timings_ms": [], "peak_memory_bytes": peak, "output": output.float().cpu()}


def _timed_pass(model: nn.Module, sample: torch.Tensor, device: torch.device) -> float:
    """Milliseconds of one forward pass; on CUDA from an idle device to the last kernel's end."""
    _synchronise(device)
    start = time.perf_counter()
    model(sample)
    _synchronise(device)
    return (time.perf_counter() - start) * 1000.0


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
    torch.manual_seed(seed)  # the initial weights: the same for every call with this seed
    setups = {arch: _training_setup(arch, device, lr) for arch in TRAIN_ARCHS}
    for model, optimizer in setups.values():
        _train_step(model, optimizer, inputs, targets)  # warm-up: allocator, kernels and Adam's state
    _synchronise(device)
    timings = _timed_steps(setups, inputs, targets, device, steps)
    return {
        arch: {
            "patches_per_s": batch * steps / (sum(values) / 1000.0),
            "median_step_ms": statistics.median(values),
            "batch": batch,
            "steps": steps,
        }
        for arch, values in timings.items()
    }


def _training_setup(arch: str, device: torch.device, lr: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = build(arch).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=lr)


def _train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor
) -> None:
    """One Adam update with MSE loss on one batch."""
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.mse_loss(model(inputs), targets)
    loss.backward()
    optimizer.step()


def _timed_steps(
    setups: dict[str, tuple[nn.Module, torch.optim.Optimizer]],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    device: torch.device,
    steps: int,
) -> dict[str, list[float]]:
    """Per architecture, the milliseconds of each of ``steps`` steps, the architectures taking turns."""
    timings: dict[str, list[float]] = {arch: [] for arch in setups}
    for _ in range(steps):
        for arch, (model, optimizer) in setups.items():
            _synchronise(device)
            start = time.perf_counter()
            _train_step(model, optimizer, inputs, targets)
            _synchronise(device)
            timings[arch].append((time.perf_counter() - start) * 1000.0)
    return timings
