"""Latency of VDSR, Asym_VDSR and fused (deploy-form) Asym_VDSR, measured in one run.

    .venv/bin/python benchmarks/latency.py [--device auto] [--sizes 128,256] [--repeats 10] [--rounds 3]

Random weights (latency does not depend on their values). For each input size the three
models are timed in interleaved rounds (A, B, C, A, B, C, ...) so that machine noise hits all
of them alike; each round is the median of ``--repeats`` synchronised forward passes after
warm-up (:func:`asymsr.efficiency.measure_latency`). Reported: the median over rounds and
the ratio to VDSR, with the device and thread count. Compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from asymsr.efficiency import measure_latency
from asymsr.inference import resolve_device
from asymsr.models import build, fuse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    asym = build("asym_vdsr").eval()
    models = {"vdsr": build("vdsr").eval().to(device), "asym_vdsr": asym.to(device), "asym_vdsr_fused": fuse(asym)}
    print("| input | model | median latency (ms) | ratio to vdsr | device | threads |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        rounds: dict[str, list[float]] = {name: [] for name in models}
        info = {}
        for _ in range(args.rounds):
            for name, model in models.items():
                info = measure_latency(model, size, size, warmup=2, repeats=args.repeats)
                rounds[name].append(info["latency_ms"])
        medians = {name: statistics.median(values) for name, values in rounds.items()}
        for name, value in medians.items():
            print(
                f"| {size}x{size} | {name} | {value:.2f} | {value / medians['vdsr']:.2f} | "
                f"{info['device']} | {info['threads']} |"
            )


if __name__ == "__main__":
    main()
