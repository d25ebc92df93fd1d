"""Checkpoints: plain dicts of tensors and primitives, loadable with ``weights_only=True``.

Layout (``FORMAT_VERSION`` 1)::

    {
      "format": "asymsr-checkpoint", "format_version": 1,
      "arch": "vdsr" | "asym_vdsr",        # registry name
      "arch_config": {...},                # VDSR(**arch_config) rebuilds the network
      "model": state_dict,
      # training checkpoints only:
      "train_config": {...}, "epoch": int, "step": int,
      "optimizer": state_dict, "scheduler": state_dict, "grad_scaler": state_dict | None,
      "rng": {"torch": ByteTensor}, "history": [{"epoch": ..., "loss": ..., "val_psnr": ...}],
    }
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from asymsr.nn.models import ARCHITECTURES, VDSR
from asymsr.util.fs import atomic_path

FORMAT = "asymsr-checkpoint"
FORMAT_VERSION = 1
MAX_SIZE = 1024  # depth, channels or rank of any network a checkpoint may describe (VDSR: 20, 64, 64)
MAX_WEIGHTS = 50_000_000  # 75x VDSR's 664,704


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not an asymsr checkpoint."""


def model_payload(arch: str, model: VDSR) -> dict[str, Any]:
    """The inference part of a checkpoint for ``model`` registered as ``arch``."""
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "arch_config": model.config(),
        "model": state,
    }


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` with ``torch.save`` under a temporary name, then rename it onto ``path``."""
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a checkpoint with ``torch.load(weights_only=True)`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt files
        if "weights_only" in str(error):  # torch's advice is to unpickle: never
            raise CheckpointError(
                f"{path}: not a readable checkpoint (not a weights-only PyTorch file: code objects, or not a "
                "checkpoint at all); refusing to unpickle it"
            ) from None
        first_line = (str(error).strip().splitlines() or [""])[0]  # torch's own messages run to several lines
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {first_line})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an asymsr checkpoint (missing format tag {FORMAT!r})")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format version {payload.get('format_version')!r}")
    for key in ("arch", "arch_config", "model"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint lacks key {key!r}")
    if not isinstance(payload["model"], dict) or not isinstance(payload["arch_config"], dict):
        raise CheckpointError(f"{path}: 'model' and 'arch_config' must be dicts")
    check_finite(payload["model"], str(path))
    return payload


def check_finite(state: dict[str, Any], source: str) -> None:
    """Refuse weights holding NaN or Inf (they would silently produce black images).

    Raises:
        CheckpointError: naming ``source`` and the first such tensor.
    """
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: weight {key!r} is a {type(value).__name__}, not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: weight {key!r} holds NaN or Inf; refusing to use it")


def model_from_checkpoint(payload: dict[str, Any], source: str = "checkpoint") -> VDSR:
    """Rebuild the network stored in a loaded checkpoint, in eval mode on the CPU.

    Raises:
        CheckpointError: ``arch_config`` or the weights do not describe one network (naming ``source``).
    """
    arch, config = payload["arch"], payload["arch_config"]
    if not isinstance(arch, str):
        raise CheckpointError(f"{source}: 'arch' must be a name such as 'vdsr', got {type(arch).__name__}")
    weights = sum(value.numel() for value in payload["model"].values() if isinstance(value, torch.Tensor))
    sizes = [config.get(key) for key in ("depth", "channels", "rank")]
    if any(not isinstance(size, int | None) or (size or 0) > MAX_SIZE for size in sizes) or weights > MAX_WEIGHTS:
        raise CheckpointError(  # checked before building, so a hostile config cannot exhaust memory
            f"{source}: arch_config {config} or its {weights:,} weights exceed what a VDSR can be here "
            f"(depth, channels and rank up to {MAX_SIZE:,}, {MAX_WEIGHTS:,} weights)"
        )
    try:
        model = VDSR(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: arch_config {config} is not a VDSR: {error}") from None
    if arch not in ARCHITECTURES or ARCHITECTURES[arch]["block"] != model.block:
        raise CheckpointError(
            f"{source}: labelled {arch!r} but its arch_config builds {model.block!r} blocks; "
            "the label and the network disagree"
        )
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:  # torch lists every mismatched key over many lines
        first_line = (str(error).strip().splitlines() or [""])[0]
        problem = "; ".join(line.strip() for line in str(error).splitlines()[1:3]) or first_line
        raise CheckpointError(
            f"{source}: weights do not fit {payload['arch']!r} {payload['arch_config']}: {problem}"
        ) from None
    return model.eval()
