"""Benchmark `asymsr prepare` on the 291-image VDSR training set (T91 + BSD200).

    .venv/bin/python benchmarks/prepare_291.py [--shared ../shared] [--workers 2]

Prints wall time and peak resident memory of the whole process tree (this process plus
its worker processes, sampled every 20 ms from /proc, so Linux only). The target from the
core issue: under 60 s and under 2 GB on 2 cores with the VDSR settings (41x41, stride 41,
scales 2/3/4, down-sizing 1.0/0.7/0.5).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from asymsr.data.prepare import prepare
from asymsr.schema.params import PrepareConfig


def _tree_rss_bytes(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as handle:
                resident_pages = int(handle.read().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = resident_pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


class PeakMemory:
    """Samples the resident memory of this process tree in a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(os.getpid()))
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    datasets = Path(args.shared) / "datasets"
    folders = [datasets / "T91", datasets / "BSD200"]
    config = PrepareConfig()
    with tempfile.TemporaryDirectory() as scratch, PeakMemory() as memory:
        start = time.perf_counter()
        manifest = prepare(folders, Path(scratch) / "patches", config, workers=args.workers, progress=False)
        seconds = time.perf_counter() - start
        stored = sum(f.stat().st_size for f in (Path(scratch) / "patches").iterdir())
    print(
        f"images: {len(manifest['sources'])}, patches: {manifest['count']:,} {manifest['counts_per_scale']}, "
        f"stored: {stored / 2**20:.0f} MiB"
    )
    print(f"wall time: {seconds:.1f} s with {args.workers} workers on {os.cpu_count()} CPUs")
    print(f"peak resident memory of the process tree: {memory.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
