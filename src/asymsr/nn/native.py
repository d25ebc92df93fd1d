"""Native CPU kernels in C: compiled on first use with the system C compiler, cached, loaded with ctypes.

The sources live in ``asymsr/nn/kernels``. Each is compiled once (about 1 s) into
``$ASYMSR_CACHE/kernels`` (default ``~/.cache/asymsr/kernels``), under a name that hashes the
source, the compiler and the flags, so an edited source is rebuilt and a cached library is never
stale; the library is written to a temporary name and renamed when complete. The kernels need
Linux on x86-64 with AVX2 and FMA and a C compiler: :func:`unavailable_reason` says why not
otherwise, and callers fall back to PyTorch. Set ``ASYMSR_NO_NATIVE=1`` to switch them off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from asymsr.util.fs import atomic_path

SOURCES = Path(__file__).parent / "kernels"
CFLAGS = ("-O3", "-mavx2", "-mfma", "-shared", "-fPIC", "-pthread")
DISABLE_ENV = "ASYMSR_NO_NATIVE"


class NativeUnavailable(RuntimeError):
    """A native kernel cannot run here (no AVX2/FMA, no compiler, not Linux x86-64, disabled, or build failed)."""


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and ":" in line:
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compiler() -> str | None:
    """The C compiler to use: ``$CC`` if set, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return next((path for name in ("cc", "gcc", "clang") if (path := shutil.which(name))), None)


def unavailable_reason() -> str | None:
    """None when native kernels can be built and run on this machine, else one line saying why not."""
    if os.environ.get(DISABLE_ENV):
        return f"disabled by {DISABLE_ENV}"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64, this is {platform.system()} on {platform.machine()}"
    missing = {"avx2", "fma"} - _cpu_flags()
    if missing:
        return f"the CPU lacks {', '.join(sorted(missing))}"
    if compiler() is None:
        return "no C compiler found (set CC, or install gcc)"
    return None


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$ASYMSR_CACHE/kernels``, default ``~/.cache/asymsr/kernels``."""
    root = os.environ.get("ASYMSR_CACHE") or Path.home() / ".cache" / "asymsr"
    return Path(root) / "kernels"


def build(name: str) -> Path:
    """Compile ``kernels/<name>.c`` unless a library built from the same source and flags is cached.

    Raises:
        NativeUnavailable: see :func:`unavailable_reason`, or the compiler failed (its message included).
    """
    reason = unavailable_reason()
    if reason is not None:
        raise NativeUnavailable(f"native kernel {name!r} unavailable: {reason}")
    cc = compiler()
    source = SOURCES / f"{name}.c"
    if not source.is_file():
        raise NativeUnavailable(f"native kernel {name!r} unavailable: its source {source} is missing")
    digest = hashlib.sha256(source.read_bytes() + " ".join((str(cc), *CFLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        result = subprocess.run([str(cc), *CFLAGS, str(source), "-o", str(temporary)], capture_output=True, text=True)
        if result.returncode != 0:
            raise NativeUnavailable(f"compiling {source} with {cc} failed:\n{result.stderr.strip()}")
    return target


@functools.cache
def load(name: str) -> ctypes.CDLL:
    """The compiled ``kernels/<name>.c`` (built on first use, then cached on disk and in the process)."""
    return ctypes.CDLL(str(build(name)))
