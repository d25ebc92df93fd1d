"""One distillation step's throughput in the default (NCHW) and channels-last layouts.

    .venv/bin/python benchmarks/layout_step.py [--steps 40] [--rounds 2]

Forward of the frozen VDSR teacher, forward and backward of an Asym_VDSR student (MSE to the
teacher's output), an Adam step; a fixed batch of 16 patches of 41x41, so data loading is left
out. Both layouts are timed in each round of this process, in swapped order every other round
(a host slowing down over the run then biases neither); it prints patches per second for each
and the ratio. The rounds of a noisy host still differ: read the spread, not one round.
"""

from __future__ import annotations

import argparse
import time

import torch

from asymsr.bench.host import cpu_model
from asymsr.nn.models import build


def patches_per_second(channels_last: bool, batch: torch.Tensor, steps: int, warmup: int = 5) -> float:
    """Patches per second over ``steps`` steps after ``warmup`` untimed ones."""
    student, teacher = build("asym_vdsr"), build("vdsr").eval().requires_grad_(False)
    if channels_last:
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
        batch = batch.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-5)
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        with torch.no_grad():
            target = teacher(batch)
        loss = (student(batch) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch.shape[0] * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per layout and round (>= 1)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each timing both layouts (>= 1)")
    args = parser.parse_args()
    for flag in ("steps", "rounds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag}: {getattr(args, flag)} is not >= 1")
    torch.manual_seed(0)
    batch = torch.rand(16, 1, 41, 41)
    print(f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for index in range(args.rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        rate = {channels_last: patches_per_second(channels_last, batch, args.steps) for channels_last in order}
        nchw, cl = rate[False], rate[True]
        print(f"round {index}: NCHW {nchw:.1f} patches/s, channels-last {cl:.1f} patches/s, ratio {cl / nchw:.2f}")


if __name__ == "__main__":
    main()
