"""A Docker engine for the container tests: the one already running, else a ``dockerd`` of the
test's own (data root, exec root and socket in a temporary folder; stopped and removed at the
end), started as Debian's ``docker.io`` allows on a machine without a registry or iptables.

``ASYMSR_REQUIRE_DOCKER=1`` (set by ``.ci/run``) turns "no engine here" from a skip into a
failure, so CI cannot pass by skipping the container tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRE_ENV = "ASYMSR_REQUIRE_DOCKER"


def answers(host: str) -> bool:
    """Whether a Docker engine answers a ping at ``host`` (a ``unix://`` or ``tcp://`` address)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except docker.errors.DockerException:
        return False


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
    pytest.skip(reason)


@contextmanager
def own_dockerd(timeout_s: float = 90) -> Iterator[str]:
    """Start ``dockerd`` in a temporary folder; yields its ``unix://`` address. Needs root."""
    # /tmp, not pytest's deep tmp_path: a unix socket path must stay under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="asymsr-dockerd-", dir="/tmp"))
    socket = folder / "docker.sock"
    log = (folder / "dockerd.log").open("w")
    command = [
        "dockerd",
        "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"),
        "--pidfile", str(folder / "dockerd.pid"), "-H", f"unix://{socket}",
        # no bridge network and no iptables rules: these machines have neither, and the tasks use the host's network
        "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=overlay2",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    host = f"unix://{socket}"
    try:
        deadline = time.monotonic() + timeout_s
        while not (socket.exists() and answers(host)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (folder / "dockerd.log").read_text()[-2000:]
                pytest.fail(f"dockerd did not start within {timeout_s:.0f} s:\n{tail}")
            time.sleep(0.5)
        yield host
    finally:
        process.send_signal(signal.SIGTERM)  # dockerd stops its containers and unmounts its layers
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        unmount_below(folder)
        shutil.rmtree(folder, ignore_errors=True)


def unmount_below(folder: Path) -> None:
    """Unmount what a stopped dockerd leaves mounted under ``folder`` (its netns), deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{folder}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextmanager
def docker_engine() -> Iterator[str]:
    """The address of a Docker engine: ``$DOCKER_HOST`` or the default socket if one answers,
    else a ``dockerd`` of our own when Debian's ``docker.io`` is installed and we are root."""
    for host in (os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"):
        if host and answers(host):
            yield host
            return
    if shutil.which("dockerd") is None:
        unavailable("needs a Docker engine: none answers and dockerd is not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        unavailable("needs a Docker engine: none answers, and starting dockerd needs root")
    with own_dockerd() as host:
        yield host
