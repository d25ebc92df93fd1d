"""Downloads checked against a pinned sha256: what dataset archives and single files share.

A single file (a compression teacher's weights, say) is named as a local path or an
``https://`` URL with an optional pin ``#sha256=<64 hex digits>``; a URL must be pinned.
Kept apart from :mod:`asymsr.data.sources` (the dataset sources) so that the stages that load
one file do not depend on how datasets are fetched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from asymsr.util.fs import sha256_file

DEFAULT_MAX_BYTES = 4 * 2**30
REMOTE = ("https://", "http://")


class FetchError(ValueError):
    """A source is unsupported, unreachable, too large, or its content fails a check."""


def download(url: str, target: Path, max_bytes: int) -> str:
    """Stream ``url`` into ``target`` (at most ``max_bytes``); returns the sha256 of what was read."""
    digest = hashlib.sha256()
    written = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as handle:
            for block in iter(lambda: response.read(1 << 20), b""):
                written += len(block)
                if written > max_bytes:
                    raise FetchError(f"{url}: larger than the cap of {max_bytes:,} bytes")
                digest.update(block)
                handle.write(block)
    except OSError as error:
        raise FetchError(f"{url}: download failed ({error})") from error
    return digest.hexdigest()


def split_pin(source: str) -> tuple[str, str]:
    """``"PATH#sha256=HEX"`` -> ``("PATH", "hex")``; no pin -> ``("PATH", "")``.

    Raises:
        FetchError: a pin that is not 64 hex digits, or anything else after ``#``.
    """
    location, separator, fragment = source.partition("#")
    if not separator:
        return location, ""
    key, _, digest = fragment.partition("=")
    digest = digest.lower()
    if key != "sha256" or not is_sha256(digest):
        raise FetchError(f"{source}: expected {location}#sha256=<64 hex digits>")
    return location, digest


def is_sha256(digest: str) -> bool:
    """Whether ``digest`` is a lower-case hex SHA-256 (64 digits)."""
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def fetch_file(source: str, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Path, str]:
    """One file -> (local path, its sha256).

    A download goes to a temporary file and lands in ``folder`` (created then) only once it
    matches its pin; nothing is left behind otherwise.

    Raises:
        FetchError: no such file, an unpinned URL, a failed download, or a hash mismatch.
    """
    location, pinned = split_pin(source)
    if not location.startswith(REMOTE):
        path = Path(location)
        if not path.is_file():
            raise FetchError(f"file not found: {path}")
        digest = sha256_file(path)
        if pinned and digest != pinned:
            raise FetchError(f"{location}: sha256 is {digest}, but the source pins {pinned}")
        return path, digest
    if not pinned:
        raise FetchError(f"{location}: a remote source must pin its content as {location}#sha256=<64 hex digits>")
    with tempfile.TemporaryDirectory(prefix="asymsr-download-") as staging:
        partial = Path(staging) / "download"
        digest = download(location, partial, max_bytes)
        if digest != pinned:
            raise FetchError(f"{location}: sha256 is {digest}, but the source pins {pinned}")
        target = Path(folder) / Path(urlsplit(location).path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, target)
    return target, digest
