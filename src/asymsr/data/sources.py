"""``asymsr fetch``: materialise a dataset source as a folder of images with a checksum manifest.

Supported sources:

* ``builtin:skimage/<split>``: the embedded photographs (:mod:`asymsr.data.builtin`);
* a local folder path: its images are copied byte for byte; if the folder has a
  ``MANIFEST.sha256`` (as ``../shared/datasets/*`` do), every copied file is checked against it;
* ``s3://bucket/prefix``: every image object under the prefix, through boto3. The endpoint
  comes from the standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` variables (MinIO and
  other S3-compatible stores), credentials only from the environment or the standard AWS
  files, never from parameters;
* ``https://host/archive.zip#sha256=<64 hex digits>`` (zip, tar, tar.gz, tar.bz2, tar.xz):
  downloaded with a size cap, checked against the pinned sha256, and unpacked; members that
  would escape the target folder, links and special files are rejected. (``http://`` is
  accepted too, the pin protects integrity either way.)

A list of sources is merged into one folder (file names must not collide). Options follow a
``#``, joined with ``&`` (after a ``sha256`` pin, for instance): ``exclude=a.png,b.png`` drops
named files (T91's ``t65.bmp`` is a byte-identical copy of ``t36.bmp``), and
``holdout=N:train`` / ``holdout=N:val`` keeps all but, or only, the N files whose names hash
lowest, so a validation split can be carved from training data deterministically.

The target folder is replaced atomically and holds ``MANIFEST.sha256`` in ``sha256sum`` format
(``cd DIR && sha256sum -c MANIFEST.sha256`` checks it) and ``SOURCE.json`` (the source and its
fingerprint). Fetching a source whose fingerprint is unchanged into an intact folder does
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

from asymsr.data import builtin as builtin_data
from asymsr.data.download import DEFAULT_MAX_BYTES, FetchError, is_sha256
from asymsr.data.download import download as _download
from asymsr.util.fs import atomic_directory, check_output_folder, sha256_file
from asymsr.util.images import IMAGE_SUFFIXES, list_images

MANIFEST = "MANIFEST.sha256"
SOURCE_RECORD = "SOURCE.json"
BUILTIN_PREFIX = "builtin:skimage/"


def read_manifest_file(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-format file into {relative name: hex digest}."""
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            raise FetchError(f"{path}:{number}: not a sha256sum line: {line!r}")
        entries[name.lstrip("*")] = digest
    return entries


def split_options(source: str) -> tuple[str, dict[str, str]]:
    """``"base#key=value&key=value"`` -> ``("base", {key: value})``."""
    base, _, fragment = source.partition("#")
    options = {}
    for pair in filter(None, fragment.split("&")):
        key, separator, value = pair.partition("=")
        if not separator or key not in ("sha256", "holdout", "exclude"):
            raise FetchError(
                f"{source}: unknown source option {pair!r}; "
                "known: sha256=<hex>, holdout=N:train|val, exclude=a.png,b.png"
            )
        options[key] = value
    return base, options


def _holdout(source: str) -> tuple[int, str] | None:
    value = split_options(source)[1].get("holdout")
    if value is None:
        return None
    count, _, part = value.partition(":")
    if not count.isdigit() or int(count) < 1 or part not in ("train", "val"):
        raise FetchError(f"{source}: holdout must be N:train or N:val with N >= 1, got {value!r}")
    return int(count), part


def _apply_exclude(source: str, folder: Path) -> None:
    """Delete the files that the source's ``exclude=`` option names; each must exist."""
    for name in filter(None, split_options(source)[1].get("exclude", "").split(",")):
        if not (folder / name).is_file():
            raise FetchError(f"{source}: excluded file {name!r} is not in the source")
        (folder / name).unlink()


def _apply_holdout(source: str, folder: Path, names: list[str]) -> None:
    """Delete from ``folder`` the files (among ``names``) that the source's holdout excludes."""
    holdout = _holdout(source)
    if holdout is None:
        return
    count, part = holdout
    if count >= len(names):
        raise FetchError(f"{source}: cannot hold out {count} of {len(names)} files")
    ranked = sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    drop = ranked[count:] if part == "val" else ranked[:count]
    for name in drop:
        (folder / name).unlink()


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


# ---------------------------------------------------------------- sources


def _fetch_builtin(source: str, staging: Path, max_bytes: int) -> None:
    builtin_data.write_split(source[len(BUILTIN_PREFIX) :], staging)


def _fingerprint_builtin(source: str) -> dict[str, Any]:
    import skimage

    return {"skimage": skimage.__version__, "split": builtin_data.SPLITS.get(source[len(BUILTIN_PREFIX) :])}


def _fetch_folder(source: str, staging: Path, max_bytes: int) -> None:
    folder = Path(split_options(source)[0])
    images = list_images(folder)
    published = read_manifest_file(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
    total = sum(path.stat().st_size for path in images)
    if total > max_bytes:
        raise FetchError(f"{folder}: {total:,} bytes of images exceed the cap of {max_bytes:,} bytes")
    for image in images:
        target = staging / image.name
        shutil.copyfile(image, target)
        if image.name in published and sha256_file(target) != published[image.name]:
            raise FetchError(f"{image}: checksum mismatch with {folder / MANIFEST}")


def _fingerprint_folder(source: str) -> dict[str, Any]:
    return {path.name: sha256_file(path) for path in list_images(split_options(source)[0])}


def _s3_location(source: str) -> tuple[str, str]:
    parts = urlsplit(source)
    if not parts.netloc:
        raise FetchError(f"{source}: an S3 source needs a bucket, as s3://bucket/prefix")
    prefix = parts.path.lstrip("/")
    return parts.netloc, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _s3_objects(source: str) -> tuple[Any, str, list[dict[str, Any]]]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = _s3_location(split_options(source)[0])
    client = boto3.client("s3")
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = [item for page in pages for item in page.get("Contents", []) if _is_image(item["Key"])]
    except (BotoCoreError, ClientError) as error:
        raise FetchError(f"{source}: cannot list objects ({error})") from error
    if not objects:
        raise FetchError(f"{source}: no image objects ({', '.join(IMAGE_SUFFIXES)}) under this prefix")
    return client, bucket, objects


def _fetch_s3(source: str, staging: Path, max_bytes: int) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client, bucket, objects = _s3_objects(source)
    total = sum(item["Size"] for item in objects)
    if total > max_bytes:
        raise FetchError(f"{source}: {total:,} bytes of images exceed the cap of {max_bytes:,} bytes")
    for item in objects:
        target = staging / PurePosixPath(item["Key"]).name
        if target.exists():
            raise FetchError(f"{source}: two objects share the file name {target.name!r}")
        try:
            client.download_file(bucket, item["Key"], str(target))
        except (BotoCoreError, ClientError) as error:
            raise FetchError(f"s3://{bucket}/{item['Key']}: download failed ({error})") from error


def _fingerprint_s3(source: str) -> dict[str, Any]:
    _, _, objects = _s3_objects(source)
    return {item["Key"]: [item["Size"], item.get("ETag", "")] for item in objects}


def _pinned_archive(source: str) -> tuple[str, str]:
    url, options = split_options(source)
    digest = options.get("sha256", "").lower()
    if not is_sha256(digest):
        raise FetchError(f"{url}: a remote source must pin its content as {url}#sha256=<64 hex digits>")
    return url, digest


def _safe_member_path(root: Path, name: str, archive: str) -> Path:
    target = (root / name).resolve()
    if name.startswith(("/", "\\")) or not target.is_relative_to(root.resolve()):
        raise FetchError(f"{archive}: member {name!r} would escape the target folder")
    return target


@dataclass(frozen=True)
class _Member:
    """One archive entry, whatever the archive format."""

    name: str
    size: int
    kind: str  # "file", "dir", or "other" (links, devices, ...)
    open: Callable[[], IO[bytes]]


@contextmanager
def _archive_members(archive: Path, url: str) -> Iterator[list[_Member]]:
    """The entries of a zip or tar archive, readable while the context is open."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:

            def zip_kind(info: zipfile.ZipInfo) -> str:
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    return "other"
                return "dir" if info.is_dir() else "file"

            yield [
                _Member(info.filename, info.file_size, zip_kind(info), partial(bundle.open, info))
                for info in bundle.infolist()
            ]
        return
    if not tarfile.is_tarfile(archive):
        raise FetchError(f"{url}: neither a zip nor a tar archive")
    with tarfile.open(archive) as bundle:

        def tar_kind(info: tarfile.TarInfo) -> str:
            return "file" if info.isfile() else "dir" if info.isdir() else "other"

        yield [
            _Member(info.name, info.size, tar_kind(info), partial(bundle.extractfile, info))  # type: ignore[arg-type]
            for info in bundle.getmembers()
        ]


def _unpack(archive: Path, url: str, root: Path, max_bytes: int) -> None:
    with _archive_members(archive, url) as members:
        if sum(member.size for member in members) > max_bytes:
            raise FetchError(f"{url}: unpacks to more than the cap of {max_bytes:,} bytes")
        for member in members:
            target = _safe_member_path(root, member.name, url)
            if member.kind == "other":
                raise FetchError(f"{url}: member {member.name!r} is a link or special file")
            if member.kind == "file":
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with member.open() as source, target.open("wb") as handle:
                        shutil.copyfileobj(source, handle)
                except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError) as error:  # bad CRC, cut off
                    raise FetchError(f"{url}: member {member.name!r} is corrupt ({error})") from None


def _fetch_archive(source: str, staging: Path, max_bytes: int) -> None:
    url, pinned = _pinned_archive(source)
    with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".download.") as scratch:
        archive = Path(scratch) / "archive"
        actual = _download(url, archive, max_bytes)
        if actual != pinned:
            raise FetchError(f"{url}: checksum mismatch: pinned sha256 {pinned}, downloaded {actual}")
        unpacked = Path(scratch) / "unpacked"
        unpacked.mkdir()
        _unpack(archive, url, unpacked, max_bytes)
        images = sorted(path for path in unpacked.rglob("*") if path.is_file() and _is_image(path.name))
        if not images:
            raise FetchError(f"{url}: the archive holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for image in images:
            target = staging / image.name
            if target.exists():
                raise FetchError(f"{url}: two archive members share the file name {image.name!r}")
            os.replace(image, target)


def _fingerprint_archive(source: str) -> dict[str, Any]:
    return {"sha256": _pinned_archive(source)[1]}


Fetcher = Callable[[str, Path, int], None]
Fingerprinter = Callable[[str], dict[str, Any]]


def _handlers(source: str) -> tuple[Fetcher, Fingerprinter]:
    scheme = urlsplit(source).scheme
    _holdout(source)  # reject a malformed option before any work
    if source.startswith(BUILTIN_PREFIX) and "#" not in source:
        return _fetch_builtin, _fingerprint_builtin
    if scheme == "s3":
        return _fetch_s3, _fingerprint_s3
    if scheme in ("https", "http"):
        return _fetch_archive, _fingerprint_archive
    if "://" in source or source.startswith("builtin:"):
        raise FetchError(
            f"unsupported dataset source {source!r}; use builtin:skimage/<split>, a folder, s3://bucket/prefix "
            "or https://host/archive.zip#sha256=<hex>"
        )
    return _fetch_folder, _fingerprint_folder


def _is_fetched(folder: Path) -> bool:
    """Whether ``folder`` is an earlier fetch: it holds both records that fetch writes."""
    return (folder / MANIFEST).is_file() and (folder / SOURCE_RECORD).is_file()


def _is_current(out: Path, record: dict[str, Any]) -> bool:
    """True if ``out`` was fetched from the same source state and still matches its manifest."""
    record_path, manifest_path = out / SOURCE_RECORD, out / MANIFEST
    if not (record_path.is_file() and manifest_path.is_file()):
        return False
    if json.loads(record_path.read_text()) != record:
        return False
    expected = read_manifest_file(manifest_path)
    present = {path.name for path in out.iterdir() if path.is_file()} - {MANIFEST, SOURCE_RECORD}
    return present == set(expected) and all(sha256_file(out / name) == digest for name, digest in expected.items())


def _fetch_one(source: str, staging: Path, max_bytes: int) -> None:
    """Fetch one source into a fresh folder, apply its holdout, then move its files into ``staging``."""
    fetcher, _ = _handlers(source)
    with tempfile.TemporaryDirectory(dir=staging.parent, prefix=".source.") as scratch:
        part = Path(scratch)
        fetcher(source, part, max_bytes)
        _apply_exclude(source, part)
        _apply_holdout(source, part, sorted(path.name for path in part.iterdir()))
        for path in sorted(part.iterdir()):
            if (staging / path.name).exists():
                raise FetchError(
                    f"{source}: file name {path.name!r} is already taken by another source of this dataset"
                )
            os.replace(path, staging / path.name)


def fetch(
    source: str | list[str], out: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES, force: bool = False
) -> list[Path]:
    """Materialise ``source`` (or several, merged) into folder ``out``; returns the image files it holds.

    ``max_bytes`` caps what is downloaded or copied per source (and what an archive may unpack to).
    ``out`` is replaced whole, so it must be new, empty or an earlier fetch (it holds
    ``MANIFEST.sha256``) unless ``force``; it may never be a local source or the working directory.

    Raises:
        FetchError: unsupported or unreachable source, cap exceeded, checksum mismatch
            (naming the file), unsafe archive member, colliding file names.
        KeyError: an unknown ``builtin:`` split.
        FileNotFoundError: a local source folder that does not exist.
        asymsr.util.fs.UnsafeOutput: ``out`` is not safe to replace (see above).
    """
    out = Path(out)
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise FetchError("a dataset needs at least one source")
    local = [item.split("#")[0] for item in sources if "://" not in item and not item.startswith("builtin:")]
    check_output_folder(out, MANIFEST, force, inputs=local, recognise=_is_fetched)
    record = {"source": source, "fingerprint": [_handlers(item)[1](item) for item in sources]}
    if not _is_current(out, record):
        with atomic_directory(out, MANIFEST, force, inputs=local, recognise=_is_fetched) as staging:
            for item in sources:
                _fetch_one(item, staging, max_bytes)
            files = sorted(path for path in staging.iterdir() if path.is_file())
            lines = [f"{sha256_file(path)}  {path.name}\n" for path in files]
            (staging / MANIFEST).write_text("".join(lines))
            (staging / SOURCE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return sorted(path for path in out.iterdir() if path.is_file() and _is_image(path.name))
