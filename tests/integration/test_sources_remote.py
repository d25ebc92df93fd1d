"""Fetching from S3 (a real S3 endpoint: moto's server on 127.0.0.1) and from pinned archives
served over HTTP on 127.0.0.1, plus the integrity checks of every source kind."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import boto3
import pytest

from asymsr.data.sources import MANIFEST, FetchError, fetch


def test_s3_prefix_is_fetched_byte_for_byte_and_refetch_is_a_no_op(s3_endpoint, image_folder, tmp_path):
    client = boto3.client("s3")
    client.create_bucket(Bucket="sr-data")
    for image in sorted(image_folder.iterdir()):
        client.upload_file(str(image), "sr-data", f"sets/tiny/{image.name}")
    client.put_object(Bucket="sr-data", Key="sets/tiny/README.txt", Body=b"not an image")
    client.put_object(Bucket="sr-data", Key="sets/other/z.png", Body=b"outside the prefix")

    files = fetch("s3://sr-data/sets/tiny", tmp_path / "fetched")
    assert [f.name for f in files] == ["a.png", "b.png", "c.png"]
    for name in ("a.png", "b.png", "c.png"):
        assert (tmp_path / "fetched" / name).read_bytes() == (image_folder / name).read_bytes()
    first = (tmp_path / "fetched" / MANIFEST).stat().st_mtime_ns
    fetch("s3://sr-data/sets/tiny", tmp_path / "fetched")
    assert (tmp_path / "fetched" / MANIFEST).stat().st_mtime_ns == first  # unchanged source: nothing rewritten

    client.put_object(Bucket="sr-data", Key="sets/tiny/a.png", Body=(image_folder / "b.png").read_bytes())
    fetch("s3://sr-data/sets/tiny", tmp_path / "fetched")
    assert (tmp_path / "fetched" / "a.png").read_bytes() == (image_folder / "b.png").read_bytes()

    with pytest.raises(FetchError, match="s3://no-such-bucket/x: cannot list objects"):
        fetch("s3://no-such-bucket/x", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def _pin(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_pinned_zip_archive(http_folder, image_folder, tmp_path):
    served, base = http_folder
    archive = _zip_bytes({f"Set/{p.name}": p.read_bytes() for p in sorted(image_folder.iterdir())} | {"Set/x.txt": b""})
    (served / "set.zip").write_bytes(archive)
    files = fetch(f"{base}/set.zip#sha256={_pin(archive)}", tmp_path / "set")
    assert [f.name for f in files] == ["a.png", "b.png", "c.png"]
    assert (tmp_path / "set" / "c.png").read_bytes() == (image_folder / "c.png").read_bytes()

    with pytest.raises(FetchError, match=r"set.zip: checksum mismatch: pinned sha256 0{64}, downloaded"):
        fetch(f"{base}/set.zip#sha256={'0' * 64}", tmp_path / "bad")
    with pytest.raises(FetchError, match="must pin its content"):
        fetch(f"{base}/set.zip", tmp_path / "bad")
    with pytest.raises(FetchError, match="larger than the cap of 100 bytes"):
        fetch(f"{base}/set.zip#sha256={_pin(archive)}", tmp_path / "bad", max_bytes=100)
    with pytest.raises(FetchError, match="download failed"):
        fetch(f"{base}/absent.zip#sha256={_pin(archive)}", tmp_path / "bad")
    data = (image_folder / "a.png").read_bytes()
    corrupt = bytearray(_zip_bytes({"a.png": data}))
    offset = bytes(corrupt).index(data[20:40])  # stored, not deflated: flip a byte of the member's content
    corrupt[offset] ^= 0xFF
    (served / "crc.zip").write_bytes(bytes(corrupt))
    with pytest.raises(FetchError, match=r"crc.zip: member 'a.png' is corrupt \(Bad CRC-32"):
        fetch(f"{base}/crc.zip#sha256={_pin(bytes(corrupt))}", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_archive_members_that_escape_or_link_are_rejected(http_folder, image_folder, tmp_path):
    served, base = http_folder
    escaping = _zip_bytes({"ok.png": (image_folder / "a.png").read_bytes(), "../evil.png": b"x"})
    (served / "escape.zip").write_bytes(escaping)
    with pytest.raises(FetchError, match="member '../evil.png' would escape the target folder"):
        fetch(f"{base}/escape.zip#sha256={_pin(escaping)}", tmp_path / "out")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        link = zipfile.ZipInfo("images/link.png")
        link.external_attr = 0o120777 << 16  # a symbolic link, as zip stores it
        bundle.writestr(link, "/etc/passwd")
    zipped_link = buffer.getvalue()
    (served / "link.zip").write_bytes(zipped_link)
    with pytest.raises(FetchError, match="member 'images/link.png' is a link or special file"):
        fetch(f"{base}/link.zip#sha256={_pin(zipped_link)}", tmp_path / "out")

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        link = tarfile.TarInfo("images/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bundle.addfile(link)
    linked = buffer.getvalue()
    (served / "link.tar.gz").write_bytes(linked)
    with pytest.raises(FetchError, match="member 'images/link.png' is a link or special file"):
        fetch(f"{base}/link.tar.gz#sha256={_pin(linked)}", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.png").exists()


def test_local_folder_manifest_mismatch_names_the_file(image_folder, tmp_path):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(image_folder.iterdir())]
    lines[1] = f"{'f' * 64}  b.png\n"
    (image_folder / MANIFEST).write_text("".join(lines))
    with pytest.raises(FetchError, match=rf"{image_folder / 'b.png'}: checksum mismatch"):
        fetch(str(image_folder), tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_shared_sets_fetch_and_verify(tmp_path):
    from tests.conftest import shared_path

    files = fetch(str(shared_path("datasets", "Set14")), tmp_path / "Set14")
    assert len(files) == 14
    assert Path(tmp_path / "Set14" / MANIFEST).is_file()


def test_a_pinned_remote_file_is_downloaded_and_a_mismatch_leaves_nothing(http_folder, tmp_path):
    """`fetch_file`, what a remote compression teacher goes through: the pin is checked, a bad download removed."""
    from asymsr.data.download import FetchError, fetch_file

    served, base = http_folder
    data = b"weights" * 1000
    (served / "teacher.npz").write_bytes(data)
    path, digest = fetch_file(f"{base}/teacher.npz#sha256={_pin(data)}", tmp_path / "downloads")
    assert path.read_bytes() == data and digest == _pin(data)
    with pytest.raises(FetchError, match=f"sha256 is {_pin(data)}, but the source pins 0{{64}}"):
        fetch_file(f"{base}/teacher.npz#sha256={'0' * 64}", tmp_path / "other")
    assert not (tmp_path / "other").exists()  # the failed download was never moved in
    with pytest.raises(FetchError, match="must pin its content"):
        fetch_file(f"{base}/teacher.npz", tmp_path / "third")
