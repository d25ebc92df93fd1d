"""Run an ``asymsr`` command in this process, or under ``torchrun`` with one process per GPU.

Kubeflow's train step calls :func:`run_cli`: on a pod with several GPUs it becomes
``python -m torch.distributed.run --standalone --nproc-per-node N -m asymsr.cli ...``
(DistributedDataParallel, see :mod:`asymsr.distributed`); otherwise the command runs here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import torch


def visible_gpus() -> int:
    """CUDA devices this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torchrun_command(argv: Sequence[str], processes: int) -> list[str]:
    """The command line that runs ``asymsr <argv>`` as ``processes`` DDP workers on this node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "-m",
        "asymsr.cli",
        *argv,
    ]


def run_cli(argv: Sequence[str], processes: int | None = None) -> None:
    """Run ``asymsr <argv>``; ``processes`` (default: the visible GPUs) > 1 launches it under torchrun.

    Raises:
        RuntimeError: the command failed; the message gives its exit status and command line.
    """
    from asymsr.cli import main

    processes = visible_gpus() if processes is None else processes
    if processes > 1:
        status = subprocess.run(torchrun_command(argv, processes), check=False).returncode
    else:
        status = main(list(argv))
    if status != 0:
        raise RuntimeError(f"`asymsr {' '.join(argv)}` failed with exit status {status}")
