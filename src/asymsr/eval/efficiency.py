"""Model cost figures: parameters, bytes on disk, counted multiply-adds, measured latency.

The latency in :func:`efficiency_report` is that of the network's fastest deploy form on its
device (:func:`asymsr.eval.deploy.choose_deploy_form`), recorded with the choice; the network as
trained, in NCHW, is measured as well (``latency_ms_as_trained``).
"""

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

from asymsr.eval.deploy import choose_deploy_form
from asymsr.nn.checkpoint import model_payload
from asymsr.nn.devices import device_name
from asymsr.nn.models import VDSR, count_parameters, fuse
from asymsr.schema.records import DeployRecord, Efficiency

DEPLOY_REPEATS = 3  # interleaved timed rounds per deploy candidate (few: every `evaluate` pays for them)
DEPLOY_WARMUP = 1  # untimed passes per deploy candidate


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
    height: int,
    width: int,
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


def deploy_record(model: VDSR, size: int, repeats: int = DEPLOY_REPEATS, warmup: int = DEPLOY_WARMUP) -> DeployRecord:
    """The fastest deploy form of ``model`` on the device it is on.

    Runs :func:`asymsr.eval.deploy.choose_deploy_form` on a size x size input (pixels); the
    device is named by :func:`asymsr.nn.devices.device_name` (the GPU's name, or ``"cpu"``).
    """
    device = next(model.parameters()).device
    _, choice = choose_deploy_form(model, device, size=size, repeats=repeats, warmup=warmup)
    return DeployRecord(
        form=choice.form,
        memory_format=choice.memory_format,
        timings_ms=dict(choice.timings_ms),
        device=device_name(device),
        size=choice.size,
        repeats=repeats,
    )


def latency_report(model: VDSR, size: int) -> dict[str, Any]:
    """Latency (ms) on a (1, 1, size, size) input on the model's device, as trained and as deployed.

    ``latency_ms`` is the median of the fastest deploy form (``deploy``, see :func:`deploy_record`);
    ``latency_ms_as_trained`` (with ``_min`` and ``_max``) is the network as stored, in NCHW,
    over ``latency_repeats`` runs after warm-up (:func:`measure_latency`).
    """
    as_trained = measure_latency(model, size, size)
    deploy = deploy_record(model, size)
    return {
        "latency_ms": deploy.timings_ms[f"{deploy.form}/{deploy.memory_format}"],
        "latency_ms_as_trained": as_trained["latency_ms"],
        "latency_ms_as_trained_min": as_trained["latency_ms_min"],
        "latency_ms_as_trained_max": as_trained["latency_ms_max"],
        "latency_input": as_trained["latency_input"],
        "latency_repeats": as_trained["latency_repeats"],
        "device": as_trained["device"],
        "threads": as_trained["threads"],
        "deploy": deploy,
    }


def efficiency_report(arch: str, model: VDSR, latency_size: int | None) -> Efficiency:
    """Parameters, inference checkpoint bytes, multiply-adds per pixel and, unless ``latency_size``
    is None, the latency of the fastest deploy form and of the network as trained at that size.
    """
    latency = latency_report(model, latency_size) if latency_size is not None else {}
    return Efficiency(
        arch=arch,
        params=count_parameters(model),
        model_bytes=checkpoint_bytes(arch, model),
        macs_per_pixel=macs_per_pixel(model),
        **latency,
    )


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
    and fused to plain 3x3 convolutions (``fused_3x3``, see :func:`asymsr.nn.models.fuse`).
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
