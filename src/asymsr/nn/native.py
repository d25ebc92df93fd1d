"""Native CPU kernels in C: compiled on first use with the system C compiler, cached, loaded with ctypes.

The sources live in ``asymsr/nn/kernels``. Each is compiled once (about 1 s) into
``$ASYMSR_CACHE/kernels`` (default ``~/.cache/asymsr/kernels``), under a name that hashes the
source, the compiler and the flags, so an edited source is rebuilt and a cached library is never
stale; the library is written to a temporary name and renamed when complete. The kernels need
Linux on x86-64 with AVX2 and FMA and a C compiler: :func:`unavailable_reason` says why not
otherwise, and callers fall back to PyTorch. Set ``ASYMSR_NO_NATIVE=1`` to switch them off.

A machine without a compiler (the runtime stage of ``components/Dockerfile.offline``) can carry
libraries compiled elsewhere: ``python -m asymsr.nn.native --prebuild`` compiles every kernel
into :func:`prebuilt_dir` (default ``<sys.prefix>/share/asymsr/kernels``, so a copied virtual
environment takes them along), named by a hash of the source and flags only. :func:`build`
uses a prebuilt library of the same source before it looks for a compiler.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from asymsr.util.fs import atomic_path

SOURCES = Path(__file__).parent / "kernels"
CFLAGS = ("-O3", "-mavx2", "-mfma", "-shared", "-fPIC", "-pthread")
DISABLE_ENV = "ASYMSR_NO_NATIVE"
PREBUILT_ENV = "ASYMSR_PREBUILT_KERNELS"


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


def unavailable_reason(name: str = "rowconv") -> str | None:
    """None when kernel ``name`` can be built (or was prebuilt) and run here, else one line saying why not."""
    if os.environ.get(DISABLE_ENV):
        return f"disabled by {DISABLE_ENV}"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"needs Linux on x86-64, this is {platform.system()} on {platform.machine()}"
    missing = {"avx2", "fma"} - _cpu_flags()
    if missing:
        return f"the CPU lacks {', '.join(sorted(missing))}"
    if compiler() is None and not _prebuilt(name).is_file():
        return f"no C compiler found and no prebuilt {name} in {prebuilt_dir()} (set CC, or install gcc)"
    return None


def prebuilt_dir() -> Path:
    """Where prebuilt kernels are looked for: ``$ASYMSR_PREBUILT_KERNELS``, else inside this environment."""
    return Path(os.environ.get(PREBUILT_ENV) or Path(sys.prefix) / "share" / "asymsr" / "kernels")


def _source_digest(source: Path, *identity: str) -> str:
    return hashlib.sha256(source.read_bytes() + " ".join((*identity, *CFLAGS)).encode()).hexdigest()[:16]


def _prebuilt(name: str) -> Path:
    """The prebuilt library of the current ``kernels/<name>.c`` (it may not exist)."""
    source = SOURCES / f"{name}.c"
    digest = _source_digest(source) if source.is_file() else "missing-source"
    return prebuilt_dir() / f"{name}-{digest}.so"


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$ASYMSR_CACHE/kernels``, default ``~/.cache/asymsr/kernels``."""
    root = os.environ.get("ASYMSR_CACHE") or Path.home() / ".cache" / "asymsr"
    return Path(root) / "kernels"


def build(name: str) -> Path:
    """Compile ``kernels/<name>.c`` unless a library built from the same source and flags is cached.

    Raises:
        NativeUnavailable: see :func:`unavailable_reason`, or the compiler failed (its message included).
    """
    reason = unavailable_reason(name)
    if reason is not None:
        raise NativeUnavailable(f"native kernel {name!r} unavailable: {reason}")
    source = SOURCES / f"{name}.c"
    if not source.is_file():
        raise NativeUnavailable(f"native kernel {name!r} unavailable: its source {source} is missing")
    prebuilt = _prebuilt(name)
    if prebuilt.is_file():
        return prebuilt
    return _compile(source, cache_dir() / f"{name}-{_source_digest(source, str(compiler()))}.so")


def _compile(source: Path, target: Path) -> Path:
    """``source`` compiled to ``target`` (written whole or not at all), unless ``target`` exists."""
    cc = compiler()
    if cc is None:
        raise NativeUnavailable(f"compiling {source}: no C compiler found (set CC, or install gcc)")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        result = subprocess.run([str(cc), *CFLAGS, str(source), "-o", str(temporary)], capture_output=True, text=True)
        if result.returncode != 0:
            raise NativeUnavailable(f"compiling {source} with {cc} failed:\n{result.stderr.strip()}")
    return target


def prebuild(directory: Path | None = None) -> list[Path]:
    """Compile every kernel into ``directory`` (default :func:`prebuilt_dir`) for machines without a compiler."""
    directory = directory or prebuilt_dir()
    return [_compile(source, directory / _prebuilt(source.stem).name) for source in sorted(SOURCES.glob("*.c"))]


@functools.cache
def load(name: str) -> ctypes.CDLL:
    """The compiled ``kernels/<name>.c`` (built on first use, then cached on disk and in the process)."""
    return ctypes.CDLL(str(build(name)))


if __name__ == "__main__":  # python -m asymsr.nn.native --prebuild [DIR]: what the image's builder stage runs
    if len(sys.argv) not in (2, 3) or sys.argv[1] != "--prebuild":
        sys.exit("usage: python -m asymsr.nn.native --prebuild [DIR]")
    for library in prebuild(Path(sys.argv[2]) if len(sys.argv) == 3 else None):
        print(library)
