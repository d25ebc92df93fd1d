"""`asymsr upscale` time with the stored network against the deploy form chosen by measurement.

    .venv/bin/python benchmarks/upscale_deploy.py [--size 256] [--scale 2] [--runs 3]

Random weights (time does not depend on their values), one smooth random RGB image of
``--size`` pixels per side, CPU. For each architecture and each ``--deploy`` setting: the time
to load the predictor (with ``auto`` that includes timing the candidate forms), then the median
of ``--runs`` whole upscales (read, luminance through the network, chroma bicubic, PNG write).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from asymsr.eval.inference import load_predictor
from asymsr.eval.upscale import upscale_file
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        image = work / "in.png"
        noise = rng.normal(128, 40, (args.size // 8, args.size // 8, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noise).resize((args.size, args.size), Image.BICUBIC).save(image)
        print(f"| model | deploy | load s | upscale median s | chosen form | ({torch.get_num_threads()} threads, cpu)")
        print("|---|---|---|---|---|")
        for arch in ("asym_vdsr", "vdsr"):
            checkpoint = work / f"{arch}.pt"
            save_checkpoint(checkpoint, model_payload(arch, build(arch)))
            for deploy in ("as_trained", "auto"):
                start = time.perf_counter()
                predictor = load_predictor(checkpoint, device="cpu", deploy=deploy)
                loaded = time.perf_counter() - start
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    upscale_file(image, work / "out.png", args.scale, predictor)
                    times.append(time.perf_counter() - start)
                chosen = f"{predictor.deploy.form}, {predictor.deploy.memory_format}" if predictor.deploy else "-"
                print(f"| {arch} | {deploy} | {loaded:.2f} | {statistics.median(times):.2f} | {chosen} |")


if __name__ == "__main__":
    main()
