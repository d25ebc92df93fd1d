"""Files: atomic writes (outputs appear under their final name only once complete) and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class UnsafeOutput(ValueError):
    """An output folder that the program did not make, or that holds its own inputs."""


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output_folder(
    path: str | os.PathLike[str],
    marker: str,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    recognise: Callable[[Path], bool] | None = None,
) -> None:
    """Refuse an output folder whose replacement would destroy what this program did not make.

    ``path`` may be new, empty, or an earlier output: ``recognise(path)`` is true (default: it
    holds the file ``marker``, the stage's manifest; a stage whose marker name is common checks
    its content too). Anything else needs ``force``. Never allowed, even with ``force``: the
    working directory or one of its parents, a symbolic link, a file, and a folder that is,
    holds or lies inside one of ``inputs``.

    Raises:
        UnsafeOutput: one line naming the folder and the way out.
    """
    path = Path(path)
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents or resolved.parent == resolved:
        raise UnsafeOutput(f"--out {path}: the working directory or one of its parents cannot be an output folder")
    for source in inputs:
        if _overlaps(resolved, Path(source).resolve()):
            raise UnsafeOutput(f"--out {path}: overlaps the input {source}; choose a separate output folder")
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink():
        raise UnsafeOutput(f"--out {path}: is a symbolic link; give the folder it points to, or a new one")
    if not path.is_dir():
        raise UnsafeOutput(f"--out {path}: exists and is not a folder; refusing to replace it")
    earlier = recognise(path) if recognise else (path / marker).is_file()
    if force or not any(path.iterdir()) or earlier:
        return
    raise UnsafeOutput(
        f"--out {path}: holds files but no {marker}, so this program did not make it; refusing to replace it "
        "(choose a new folder, or pass --force to replace it whole)"
    )


@contextmanager
def atomic_directory(
    path: str | os.PathLike[str],
    marker: str,
    force: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
    recognise: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole.

    ``path`` must pass :func:`check_output_folder` (``marker``: the file every output of this
    kind holds, written into the temporary directory by the caller). A previous ``path`` is
    removed only after the new one is complete. On an exception (an interrupt included) the
    temporary directory is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    check_output_folder(path, marker, force, inputs, recognise)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.asymsr-partial-", dir=path.parent))
    try:
        yield temporary
        if not (temporary / marker).is_file():
            raise RuntimeError(f"{path}: the output lacks its marker {marker}")  # a bug, not a user error
        os.chmod(temporary, 0o777 & ~_current_umask())
        if path.exists():
            _swap(path, temporary)
        else:
            os.replace(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)


def _swap(path: Path, replacement: Path) -> None:
    """Put ``replacement`` at ``path``, deleting the earlier ``path`` only once the new one is there."""
    retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.asymsr-replaced-", dir=path.parent))
    os.replace(path, retired / path.name)
    try:
        os.replace(replacement, path)
    except BaseException:
        try:
            os.replace(retired / path.name, path)  # put the earlier output back
        except OSError:
            raise UnsafeOutput(f"{path}: could not be replaced; the earlier output is kept in {retired}") from None
        retired.rmdir()
        raise
    shutil.rmtree(retired)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path``, atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
