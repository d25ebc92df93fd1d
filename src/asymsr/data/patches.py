"""Reading a prepared patch set (:mod:`asymsr.data.prepare`) as deterministic, augmented batches.

The batch order of an epoch is a pure function of ``(seed, epoch)``: a permutation of all
patches and one of the 8 dihedral transforms (4 rotations x optional flip) per patch, drawn
from a dedicated ``torch.Generator``. Resumed training therefore sees exactly the batches an
uninterrupted run would, whatever the number of loader workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from asymsr.data.prepare import PATCH_FORMAT, PATCH_FORMAT_VERSION

ARRAYS = ("inputs.npy", "labels.npy", "scales.npy")


class PatchSetError(ValueError):
    """A patch folder is missing, incomplete or of another format."""


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check ``manifest.json`` and the presence of the arrays in a patch folder."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise PatchSetError(f"{folder}: not a prepared patch folder (no manifest.json); run `asymsr prepare` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != PATCH_FORMAT or manifest.get("format_version") != PATCH_FORMAT_VERSION:
        raise PatchSetError(
            f"{manifest_path}: unsupported patch format {manifest.get('format')!r} "
            f"version {manifest.get('format_version')!r}"
        )
    for name in ARRAYS:
        if not (folder / name).is_file():
            raise PatchSetError(f"{folder}: missing {name}")
    return manifest


def epoch_plan(
    count: int, batch_size: int, seed: int, epoch: int, steps: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch indices (steps, batch_size) and transforms (steps, batch_size) for one epoch.

    Full batches only; ``steps`` limits the epoch to its first batches (default: all).
    """
    if batch_size > count:
        raise ValueError(f"batch_size {batch_size} exceeds the {count} patches available")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(count, generator=generator)
    transforms = torch.randint(0, 8, (count,), generator=generator)
    available = count // batch_size
    steps = available if steps is None else min(steps, available)
    used = steps * batch_size
    return order[:used].view(steps, batch_size), transforms[:used].view(steps, batch_size)


def dihedral(batch: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Apply transform t in 0..7 to each (P, P) patch of ``batch`` (N, P, P): rot90 by t % 4, flipped if t >= 4."""
    out = torch.empty_like(batch)
    for t in range(8):
        selected = (transforms == t).nonzero(as_tuple=True)[0]
        if selected.numel() == 0:
            continue
        patches = batch[selected]
        if t >= 4:
            patches = patches.flip(-1)
        out[selected] = torch.rot90(patches, t % 4, dims=(-2, -1))
    return out


class PatchBatches(Dataset):
    """The batches of one epoch; item i is ``(inputs, labels, scales)``: float32 (B, 1, P, P) twice, int64 (B,).

    Arrays are memory-mapped lazily in each process, so the dataset is cheap to send to
    DataLoader workers.
    """

    def __init__(self, folder: str | os.PathLike[str], indices: torch.Tensor, transforms: torch.Tensor) -> None:
        self.folder = Path(folder)
        self.indices = indices
        self.transforms = transforms
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def _open(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = tuple(np.load(self.folder / name, mmap_mode="r") for name in ARRAYS)  # type: ignore[assignment]
        return self._arrays

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs, labels, scales = self._open()
        indices = self.indices[step].numpy()
        order = np.argsort(indices)  # read the memory map in ascending order
        restore = np.argsort(order)
        batch_in = torch.from_numpy(inputs[indices[order]].astype(np.float32)[restore])
        batch_label = torch.from_numpy(labels[indices[order]].astype(np.float32)[restore])
        transforms = self.transforms[step]
        batch_scales = torch.from_numpy(scales[indices].astype(np.int64))
        return dihedral(batch_in, transforms)[:, None], dihedral(batch_label, transforms)[:, None], batch_scales
