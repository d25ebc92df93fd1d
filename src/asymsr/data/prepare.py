"""``asymsr prepare``: HR image folders -> a memory-mapped set of VDSR training patches.

Following VDSR (and its reference data script), each image's luminance (see
:func:`asymsr.sr.color.luminance`) is optionally down-sized by each factor in
``downsize_factors`` (MATLAB bicubic), then, for each scale s, modcropped, degraded with the
evaluation protocol (:func:`asymsr.sr.protocol.degrade`) and cut into ``patch_size`` squares at
``stride`` steps. Scales are mixed in one set; flips and rotations are applied on the fly by
the loader (:mod:`asymsr.data.patches`), not stored.

Output folder layout (written under a temporary name and renamed when complete):

* ``inputs.npy``  float16 (N, P, P), bicubic network input in [0, 1] (may overshoot slightly);
* ``labels.npy``  float16 (N, P, P), HR luminance / 255 in [0, 1];
* ``scales.npy``  uint8 (N,), the scale of each patch;
* ``manifest.json`` counts per scale, settings, sources with sha256, skipped images.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from asymsr.schema.params import PrepareConfig
from asymsr.sr.color import luminance
from asymsr.sr.protocol import degrade, modcrop
from asymsr.sr.resize import imresize, output_length
from asymsr.util.fs import atomic_directory, check_output_folder, write_json
from asymsr.util.images import ImageReadError, list_images, read_image

PATCH_FORMAT = "asymsr-patches"
PATCH_FORMAT_VERSION = 1
MANIFEST = "manifest.json"  # every patch set holds it: the mark of a folder this stage made
STORAGE_DTYPE = np.float16


def _grid(length: int, patch: int, stride: int) -> range:
    return range(0, length - patch + 1, stride) if length >= patch else range(0)


def planned_counts(height: int, width: int, config: PrepareConfig) -> dict[tuple[float, int], int]:
    """Patches per (downsize factor, scale) for an image of the given size."""
    counts = {}
    for factor in config.downsize_factors:
        base_h, base_w = (
            (height, width) if factor == 1 else (output_length(height, factor), output_length(width, factor))
        )
        for scale in config.scales:
            rows = _grid(base_h - base_h % scale, config.patch_size, config.stride)
            cols = _grid(base_w - base_w % scale, config.patch_size, config.stride)
            counts[(factor, scale)] = len(rows) * len(cols)
    return counts


def image_patches(image: np.ndarray, config: PrepareConfig) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(scale, inputs, labels)`` float32 patch stacks of one uint8 image, in plan order."""
    size, stride = config.patch_size, config.stride
    hr_y = luminance(image)
    for factor in config.downsize_factors:
        base = hr_y if factor == 1 else imresize(hr_y, factor)
        for scale in config.scales:
            label = modcrop(base, scale)
            rows, cols = _grid(label.shape[0], size, stride), _grid(label.shape[1], size, stride)
            if not rows or not cols:
                continue
            network_input = degrade(label, scale)
            corners = [(r, c) for r in rows for c in cols]
            inputs = np.stack([network_input[r : r + size, c : c + size] for r, c in corners])
            labels = np.stack([label[r : r + size, c : c + size] for r, c in corners]) / 255.0
            yield scale, inputs.astype(np.float32), labels.astype(np.float32)


@dataclass(frozen=True)
class _Source:
    path: str
    sha256: str
    shape: tuple[int, ...]
    mode: str


def _inspect(path: Path) -> _Source:
    data = path.read_bytes()
    image = read_image(path)
    return _Source(str(path), hashlib.sha256(data).hexdigest(), image.shape, "gray" if image.ndim == 2 else "rgb")


def _inspect_or_error(path: Path) -> _Source | str:
    try:
        return _inspect(path)
    except ImageReadError as error:
        return str(error)


def is_patch_set(folder: Path) -> bool:
    """Whether ``folder`` is a patch set this stage wrote (its manifest.json says so; the name alone is common)."""
    try:
        return json.loads((folder / MANIFEST).read_text()).get("format") == PATCH_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _extract(job: tuple[str, PrepareConfig]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    path, config = job
    return list(image_patches(read_image(path), config))


def prepare(
    folders: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: PrepareConfig | None = None,
    workers: int = 1,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Build the patch set from all images directly inside ``folders``; returns the manifest.

    ``out`` is replaced whole, so it must be new, empty or an earlier patch set (it holds
    ``manifest.json``) unless ``force``; it may never be one of ``folders`` or the working directory.

    ``workers`` processes decode and cut the images (a run-time choice: the output does not
    depend on it).

    Raises:
        ImageReadError: an image cannot be decoded (unless ``config.skip_corrupt``); the
            message names the file. Nothing is written to ``out`` in that case.
        ValueError: no patch could be extracted.
    """
    config = config or PrepareConfig()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    check_output_folder(out, MANIFEST, force, inputs=folders, recognise=is_patch_set)
    paths = [path for folder in folders for path in list_images(folder)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        inspected = list(
            tqdm(pool.map(_inspect_or_error, paths), total=len(paths), desc="inspect", disable=not progress)
        )
        sources: list[_Source] = []
        skipped: list[dict[str, str]] = []
        for path, result in zip(paths, inspected, strict=True):
            if isinstance(result, _Source):
                sources.append(result)
            elif config.skip_corrupt:
                skipped.append({"path": str(path), "reason": result})
            else:
                raise ImageReadError(f"{result} (pass --skip-corrupt to skip unreadable files)")
        plans = [planned_counts(source.shape[0], source.shape[1], config) for source in sources]
        for source, plan in zip(sources, plans, strict=True):
            if sum(plan.values()) == 0:
                skipped.append({"path": source.path, "reason": f"smaller than one {config.patch_size}px patch"})
        usable = [(source, plan) for source, plan in zip(sources, plans, strict=True) if sum(plan.values()) > 0]
        total = sum(sum(plan.values()) for _, plan in usable)
        if total == 0:
            raise ValueError(
                f"no patches of {config.patch_size}px could be cut from {len(paths)} images in {list(folders)}"
            )
        with atomic_directory(out, MANIFEST, force, inputs=folders, recognise=is_patch_set) as staging:
            manifest = _write_patches(pool, staging, usable, total, config, skipped, progress)
    return manifest


def _write_patches(
    pool: ProcessPoolExecutor,
    staging: Path,
    usable: list[tuple[_Source, dict[tuple[float, int], int]]],
    total: int,
    config: PrepareConfig,
    skipped: list[dict[str, str]],
    progress: bool,
) -> dict[str, Any]:
    shape = (total, config.patch_size, config.patch_size)
    inputs = np.lib.format.open_memmap(staging / "inputs.npy", mode="w+", dtype=STORAGE_DTYPE, shape=shape)
    labels = np.lib.format.open_memmap(staging / "labels.npy", mode="w+", dtype=STORAGE_DTYPE, shape=shape)
    scales = np.lib.format.open_memmap(staging / "scales.npy", mode="w+", dtype=np.uint8, shape=(total,))
    jobs = [(source.path, config) for source, _ in usable]
    offset = 0
    with tqdm(total=total, desc="prepare", unit="patch", disable=not progress) as bar:
        for (source, plan), stacks in zip(usable, pool.map(_extract, jobs), strict=True):
            written = 0
            for scale, patch_inputs, patch_labels in stacks:
                end = offset + len(patch_inputs)
                inputs[offset:end] = patch_inputs
                labels[offset:end] = patch_labels
                scales[offset:end] = scale
                written += len(patch_inputs)
                offset = end
            if written != sum(plan.values()):
                raise RuntimeError(f"{source.path}: planned {sum(plan.values())} patches, cut {written}")
            bar.update(written)
    for array in (inputs, labels, scales):
        array.flush()
    del inputs, labels
    per_scale = Counter(int(scale) for scale in np.asarray(scales))
    manifest = {
        "format": PATCH_FORMAT,
        "format_version": PATCH_FORMAT_VERSION,
        "count": total,
        "patch_size": config.patch_size,
        "dtype": np.dtype(STORAGE_DTYPE).name,
        "counts_per_scale": {str(scale): per_scale.get(scale, 0) for scale in config.scales},
        "settings": config.model_dump(mode="json"),
        "sources": [{"path": s.path, "sha256": s.sha256, "shape": list(s.shape), "mode": s.mode} for s, _ in usable],
        "skipped": skipped,
    }
    del scales
    write_json(staging / MANIFEST, manifest)
    return manifest
