"""Import of published VDSR weights stored as plain arrays (``asymsr import-weights``).

The file is an ``.npz`` with float32 arrays ``conv00`` ... ``conv19`` in forward order, each a
bias-free kernel in PyTorch's (out_channels, in_channels, kh, kw) order: (64, 1, 3, 3),
18 x (64, 64, 3, 3), (1, 64, 3, 3). Only plain arrays are read (``allow_pickle=False``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from asymsr.nn.models import VDSR, build

READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)  # what numpy raises for a bad .npz or array


def load_npz_weights(path: str | os.PathLike[str], arch: str = "vdsr") -> VDSR:
    """Build ``arch`` and fill its convolutions from the arrays in ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a key is missing, an array's shape does not fit the architecture (the
            message names the key and both shapes), or an array holds NaN or Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    model = build(arch)
    convs = [module for module in model.body if isinstance(module, nn.Conv2d)]
    try:
        archive = np.load(path, allow_pickle=False)
    except READ_ERRORS as error:  # numpy's message suggests unpickling: never
        raise ValueError(f"{path}: not an .npz of plain arrays ({type(error).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an .npz of named arrays conv00..conv19")
    with archive as arrays:
        expected = [f"conv{index:02d}" for index in range(len(convs))]
        missing = [key for key in expected if key not in arrays.files]
        if missing:
            raise ValueError(f"{path}: missing arrays {missing} for architecture {arch!r} (has {sorted(arrays.files)})")
        extra = sorted(set(arrays.files) - set(expected))
        if extra:
            raise ValueError(f"{path}: unexpected arrays {extra} for architecture {arch!r}")
        with torch.no_grad():
            for key, conv in zip(expected, convs, strict=True):
                try:
                    array = arrays[key]
                except READ_ERRORS as error:
                    raise ValueError(f"{path}: array {key!r} is not a plain numeric array ({error})") from None
                if not np.issubdtype(array.dtype, np.number):
                    raise ValueError(f"{path}: array {key!r} has dtype {array.dtype}, not a number type")
                if tuple(array.shape) != tuple(conv.weight.shape):
                    raise ValueError(
                        f"{path}: array {key!r} has shape {tuple(array.shape)}, "
                        f"architecture {arch!r} needs {tuple(conv.weight.shape)}"
                    )
                if not np.isfinite(array).all():
                    raise ValueError(f"{path}: array {key!r} holds NaN or Inf; refusing to import it")
                conv.weight.copy_(torch.from_numpy(np.asarray(array, dtype=np.float32)))
    return model.eval()
