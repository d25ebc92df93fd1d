"""Running a super-resolution model on whole images, tiled so that large ones fit in memory.

A :class:`Predictor` maps the bicubic network input (float (H, W) in [0, 1]) to the
super-resolved luminance in the same units. ``bicubic`` is the identity predictor, so the
baseline goes through exactly the same evaluation path as the networks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asymsr.eval.deploy import FORMATS, DeployChoice, choose_deploy_form
from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.nn.devices import resolve_device
from asymsr.nn.models import VDSR
from asymsr.schema.params import DEFAULT_TILE

BICUBIC = "bicubic"
DEPLOY_CHOICES = ("as_trained", "auto")


def with_context(box: tuple[int, int, int, int], halo: int, height: int, width: int) -> tuple[int, int, int, int]:
    """A tile ``(top, bottom, left, right)`` grown by ``halo`` pixels on every side, clipped to the image."""
    top, bottom, left, right = box
    return max(0, top - halo), min(height, bottom + halo), max(0, left - halo), min(width, right + halo)


@torch.inference_mode()
def predict_tiled(
    model: torch.nn.Module,
    image: np.ndarray,
    device: torch.device,
    tile: int = DEFAULT_TILE,
    halo: int | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> np.ndarray:
    """Apply ``model`` to a float (H, W) image tile by tile; returns float32 (H, W).

    Each ``tile`` x ``tile`` block is computed with ``halo`` pixels of context on every side
    (default: the model's receptive radius), so, with zero padding in the model, the result
    equals whole-image inference up to floating-point reassociation.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D luminance image, got shape {image.shape}")
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    height, width = image.shape
    if halo is None:
        halo = getattr(model, "receptive_radius", None)
        if halo is None and max(height, width) > tile:  # a margin of 0 would leave seams at every tile edge
            raise ValueError(f"{type(model).__name__} has no receptive_radius: give the tile halo explicitly")
        halo = halo or 0  # one tile: no edges inside the image
    output = np.empty((height, width), dtype=np.float32)
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    for top in range(0, height, tile):
        bottom = min(top + tile, height)
        for left in range(0, width, tile):
            right = min(left + tile, width)
            outer_top, outer_bottom, outer_left, outer_right = with_context(
                (top, bottom, left, right), halo, height, width
            )
            block = source[outer_top:outer_bottom, outer_left:outer_right].to(device)
            result = model(block[None, None].contiguous(memory_format=memory_format))[0, 0].float().cpu().numpy()
            output[top:bottom, left:right] = result[
                top - outer_top : bottom - outer_top, left - outer_left : right - outer_left
            ]
    return output


@dataclass
class Predictor:
    """A named SR model (or the bicubic baseline) ready to run on network inputs."""

    name: str
    model: nn.Module | None  # what runs: the stored network, or its chosen deploy form
    device: torch.device
    arch: str = BICUBIC
    source: str | None = None  # checkpoint path or MLflow model URI
    tile: int = DEFAULT_TILE
    deploy: DeployChoice | None = None  # set when the deploy form was chosen by measurement
    stored: VDSR | None = None  # the network as stored (cost figures describe it), on ``device``

    @property
    def halo(self) -> int:
        """Output pixels of context a tile needs on each side: the stored network's receptive radius
        (a deploy form computes the same function, so it needs the same)."""
        if self.model is None:
            return 0
        network = self.stored if self.stored is not None else self.model
        return int(network.receptive_radius)

    def __call__(self, network_input: np.ndarray) -> np.ndarray:
        """Super-resolve float (H, W) luminance in [0, 1]; returns float (H, W), unclipped."""
        if self.model is None:
            return network_input
        memory_format = FORMATS[self.deploy.memory_format] if self.deploy else torch.contiguous_format
        output = predict_tiled(
            self.model, network_input, self.device, tile=self.tile, halo=self.halo, memory_format=memory_format
        )
        if not np.isfinite(output).all():  # never hand on a black or garbage image as a result
            raise ValueError(f"{self.source}: the network's output holds NaN or Inf (its weights overflow)")
        return output


def predictor_for(
    model: VDSR, arch: str, source: str, device: torch.device, tile: int = DEFAULT_TILE, deploy: str = "as_trained"
) -> Predictor:
    """A :class:`Predictor` of a loaded network; ``deploy="auto"`` runs its fastest equivalent form.

    ``"auto"`` times the forms (:func:`asymsr.eval.deploy.choose_deploy_form`: as trained or
    fused, NCHW or channels_last, the row kernel; about 2 s on a CPU); ``"as_trained"`` runs the
    network as stored.
    """
    if deploy not in DEPLOY_CHOICES:
        raise ValueError(f"deploy must be one of {DEPLOY_CHOICES}, got {deploy!r}")
    stored = model.to(device).eval()
    runner: nn.Module = stored
    choice = None
    if deploy == "auto":
        runner, choice = choose_deploy_form(stored, device)
    return Predictor(
        name=arch, model=runner, device=device, arch=arch, source=source, tile=tile, deploy=choice, stored=stored
    )


def load_predictor(
    spec: str | os.PathLike[str], device: str = "auto", tile: int = DEFAULT_TILE, deploy: str = "as_trained"
) -> Predictor:
    """``"bicubic"`` or a checkpoint path -> :class:`Predictor` (registry URIs:
    :func:`asymsr.mlops.loading.load_predictor`).

    Raises:
        asymsr.nn.checkpoint.CheckpointError: the checkpoint is missing or invalid.
    """
    target = resolve_device(device)
    if str(spec) == BICUBIC:
        return Predictor(name=BICUBIC, model=None, device=target, tile=tile)
    payload = load_checkpoint(Path(spec))
    return predictor_for(model_from_checkpoint(payload, str(spec)), payload["arch"], str(spec), target, tile, deploy)
