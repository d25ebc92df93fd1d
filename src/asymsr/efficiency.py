"""Model cost figures: parameters, bytes on disk, counted multiply-adds, measured latency."""

from __future__ import annotations

import io
import os
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from asymsr.checkpoint import model_payload
from asymsr.models import VDSR, count_parameters, fuse


def checkpoint_bytes(arch: str, model: VDSR) -> int:
    """Size in bytes of the inference checkpoint of ``model`` (what ``asymsr train`` writes as model.pt)."""
    buffer = io.BytesIO()
    torch.save(model_payload(arch, model), buffer)
    return buffer.getbuffer().nbytes


def macs_per_pixel(model: torch.nn.Module, size: int = 64) -> float:
    """Multiply-adds per output pixel, counted by ``torch.utils.flop_counter`` on a size x size input.

    The counter reports FLOPs = 2 x multiply-adds for convolutions (the residual addition
    is not counted). Zero padding counts as work, so the figure is exact for any size.
    """
    parameter = next(model.parameters())
    sample = torch.zeros(1, 1, size, size, device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(sample)
    return counter.get_total_flops() / 2.0 / (size * size)


@torch.inference_mode()
def measure_latency(
    model: torch.nn.Module,
    height: int = 256,
    width: int = 256,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, Any]:
    """Median wall time of one forward pass on a (1, 1, height, width) input.

    Runs ``warmup`` untimed passes, then ``repeats`` timed ones, each bracketed by
    ``torch.cuda.synchronize`` on CUDA. Returns milliseconds (median, min, max) with the
    device name and CPU thread count, since a time means nothing without its hardware.
    """
    parameter = next(model.parameters())
    device = parameter.device
    sample = torch.rand(1, 1, height, width, device=device, dtype=parameter.dtype)

    def synchronise() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        model(sample)
    synchronise()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(sample)
        synchronise()
        timings.append((time.perf_counter() - start) * 1000.0)
    return {
        "latency_ms": statistics.median(timings),
        "latency_ms_min": min(timings),
        "latency_ms_max": max(timings),
        "latency_input": [1, 1, height, width],
        "latency_repeats": repeats,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
    }


def device_name(device: torch.device) -> str:
    """Human-readable device: the GPU's name on CUDA, ``"cpu"`` otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def efficiency_report(arch: str, model: VDSR, latency: bool = True, latency_size: int = 256) -> dict[str, Any]:
    """Parameters, inference checkpoint bytes, multiply-adds per pixel and (optionally) latency."""
    report: dict[str, Any] = {
        "arch": arch,
        "params": count_parameters(model),
        "model_bytes": checkpoint_bytes(arch, model),
        "macs_per_pixel": macs_per_pixel(model),
    }
    if latency:
        report.update(measure_latency(model, latency_size, latency_size))
    return report


def parameters_by_layer_type(model: torch.nn.Module) -> dict[str, int]:
    """Trainable scalars per convolution kernel shape, e.g. ``{"conv3x3": 74_304, "conv3x1": ...}``."""
    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            key = "conv{}x{}".format(*module.kernel_size)
            counts[key] = counts.get(key, 0) + sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def model_size_report(arch: str, model: VDSR, files: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """Parameters per layer type and bytes: of ``files`` on disk and of both deploy forms.

    ``deploy_bytes`` holds the inference checkpoint of the model as trained (``as_trained``)
    and fused to plain 3x3 convolutions (``fused_3x3``, see :func:`asymsr.models.fuse`).
    """
    return {
        "arch": arch,
        "params": count_parameters(model),
        "params_by_layer_type": parameters_by_layer_type(model),
        "bytes_on_disk": {name: Path(path).stat().st_size for name, path in files.items()},
        "deploy_bytes": {
            "as_trained": checkpoint_bytes(arch, model),
            "fused_3x3": checkpoint_bytes("vdsr", fuse(model)),
        },
    }
