"""The deploy form of a trained network, chosen per device by measurement.

Candidates (``"<form>/<memory format>"``): the network as trained, and for Asym_VDSR also fused
to plain 3x3 convolutions (:func:`asymsr.nn.models.fuse`, the same function), each in the NCHW and
the channels_last memory format; on a CPU where :mod:`asymsr.nn.rowkernel` can run, also
``row_kernel/channels_last`` (middle layers on the row-fused AVX2 kernels). Which is fastest
depends on the device and its kernels, so :func:`choose_deploy_form` times every candidate on
the device, in interleaved rounds, and keeps the fastest. All candidates compute the same
function (they agree to about 1e-5).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from asymsr.nn import rowkernel
from asymsr.nn.models import VDSR, fuse

FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
ROW_KERNEL = "row_kernel"
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployChoice:
    """The chosen form and what the choice was based on.

    Attributes:
        form: ``as_trained``, ``fused`` or ``row_kernel``.
        memory_format: ``nchw`` or ``channels_last``.
        timings_ms: median forward time of every candidate (``"<form>/<format>"``), ms.
        device: where it was measured.
        size: side of the square test input, pixels.
    """

    form: str
    memory_format: str
    timings_ms: dict[str, float]
    device: str
    size: int

    def describe(self) -> str:
        ranked = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(self.timings_ms.items(), key=lambda x: x[1]))
        return f"{self.form}, {self.memory_format} (measured on {self.device} at {self.size}x{self.size}: {ranked})"


def candidates(model: VDSR) -> dict[str, VDSR]:
    """The PyTorch forms of ``model``: as trained, plus fused when it has asymmetric blocks."""
    forms = {"as_trained": model}
    if model.block == "asymmetric":
        forms["fused"] = fuse(model)
    return forms


def candidate_names(model: VDSR, device: torch.device) -> list[str]:
    """Every ``"<form>/<format>"`` that :func:`choose_deploy_form` times for ``model`` on ``device``."""
    names = [f"{form}/{fmt}" for form in candidates(model) for fmt in FORMATS]
    if device.type == "cpu" and rowkernel.supports(model) is None:
        names.append(f"{ROW_KERNEL}/channels_last")
    return names


def as_format(model: VDSR, memory_format: str) -> VDSR:
    """``model`` with its weights in ``memory_format`` (``nchw`` or ``channels_last``), in place."""
    return model.to(memory_format=FORMATS[memory_format])


@torch.inference_mode()
def choose_deploy_form(
    model: VDSR, device: torch.device, size: int = 128, repeats: int = 3, warmup: int = 1
) -> tuple[nn.Module, DeployChoice]:
    """Time every candidate form and memory format on ``device``; return the fastest and the record.

    Each candidate runs ``warmup`` untimed passes on a random (1, 1, size, size) input, then
    ``repeats`` rounds time one pass of every candidate in turn (synchronised on CUDA). The
    returned network is in eval mode on ``device`` in the chosen memory format.
    """
    if size < 1 or repeats < 1:
        raise ValueError(f"size and repeats must be >= 1, got {size} and {repeats}")
    networks: dict[str, nn.Module] = {}
    for form, base in candidates(model.eval()).items():
        for fmt in FORMATS:
            networks[f"{form}/{fmt}"] = as_format(_copy(base).to(device).eval(), fmt)
    if f"{ROW_KERNEL}/channels_last" in candidate_names(model, device):
        try:
            networks[f"{ROW_KERNEL}/channels_last"] = rowkernel.RowKernelVDSR(model)
        except rowkernel.KernelUnavailable as error:  # e.g. the compiler failed: the PyTorch forms remain
            logger.warning("deploy: row kernel left out: %s", error)
    generator = torch.Generator().manual_seed(0)
    sample = torch.rand(1, 1, size, size, generator=generator).to(device)
    inputs = {fmt: sample.contiguous(memory_format=FORMATS[fmt]) for fmt in FORMATS}

    def run(name: str) -> float:
        start = time.perf_counter()
        networks[name](inputs[name.split("/")[1]])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) * 1000.0

    for name in networks:
        for _ in range(warmup):
            run(name)
    timings: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(repeats):
        for name in networks:
            timings[name].append(run(name))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    best = min(medians, key=medians.__getitem__)
    form, fmt = best.split("/")
    return networks[best], DeployChoice(form, fmt, medians, str(device), size)


def _copy(model: VDSR) -> VDSR:
    clone = VDSR(**model.config())
    clone.load_state_dict(model.state_dict())
    return clone
