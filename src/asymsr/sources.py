"""``asymsr fetch``: materialise a dataset source as a folder of images with a checksum manifest.

Supported sources:

* ``builtin:skimage/<split>``: the embedded photographs (:mod:`asymsr.builtin_data`);
* a local folder path: its images are copied (byte for byte).

The target folder is replaced atomically and holds ``MANIFEST.sha256`` in ``sha256sum``
format, so ``cd DIR && sha256sum -c MANIFEST.sha256`` checks it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from asymsr import builtin_data
from asymsr.fsutil import atomic_directory
from asymsr.images import list_images

MANIFEST = "MANIFEST.sha256"
BUILTIN_PREFIX = "builtin:skimage/"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: str, out: str | os.PathLike[str]) -> list[Path]:
    """Materialise ``source`` into folder ``out``; returns the image files written.

    Raises:
        KeyError: an unknown ``builtin:`` split.
        FileNotFoundError: a local source folder that does not exist.
        ValueError: a source URI of an unsupported kind, or a folder without images.
    """
    out = Path(out)
    with atomic_directory(out) as staging:
        if source.startswith(BUILTIN_PREFIX):
            builtin_data.write_split(source[len(BUILTIN_PREFIX) :], staging)
        elif "://" in source or source.startswith("builtin:"):
            raise ValueError(f"unsupported dataset source {source!r}; use builtin:skimage/<split> or a local folder")
        else:
            for image in list_images(source):
                shutil.copyfile(image, staging / image.name)
        files = sorted(p for p in staging.iterdir() if p.is_file())
        lines = [f"{sha256_file(path)}  {path.name}\n" for path in files]
        (staging / MANIFEST).write_text("".join(lines))
    return [out / path.name for path in files]
