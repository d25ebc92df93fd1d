"""`asymsr upscale` of a large photo: peak resident memory and wall time, against the compute floor.

    .venv/bin/python benchmarks/upscale_photo.py [--megapixels 12] [--scales 2,4] [--arch vdsr] \
        [--out benchmarks/results/upscale_photo_12mp]

The photo: a 4:3 JPEG of ``--megapixels`` input pixels, made by enlarging Urban100's img_001
(``../shared``; smooth random noise without it); content does not change time or memory. The
model: ``--arch`` with random weights (time does not depend on their values). Each scale runs
``asymsr upscale`` in its own process (the default tile and ``--deploy auto``, CPU), whose peak
resident memory (``ru_maxrss`` of that process tree) and wall time are recorded. The floor is the
network alone: multiply-adds per output pixel x output pixels / the multiply-add rate measured
on one 512x512 tile in this process, before the runs. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from asymsr.eval.efficiency import macs_per_pixel, measure_latency
from asymsr.nn.checkpoint import model_payload, save_checkpoint
from asymsr.nn.models import build

SHARED = Path(__file__).resolve().parents[2] / "shared"
PEAK = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]);"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
)


def make_photo(path: Path, megapixels: float) -> tuple[int, int]:
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = int(round(width * 3 / 4))
    source = SHARED / "datasets" / "Urban100" / "img_001.png"
    if source.is_file():
        image = Image.open(source).convert("RGB").resize((width, height), Image.BICUBIC)
    else:
        noise = np.random.default_rng(0).normal(128, 40, (height // 16, width // 16, 3)).clip(0, 255)
        image = Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BICUBIC)
    image.save(path, quality=92)
    return height, width


def run(command: list[str]) -> tuple[float, int]:
    """(wall seconds, peak resident KiB) of ``command`` in a fresh process tree."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--arch", default="vdsr", choices=["vdsr", "asym_vdsr"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/upscale_photo_12mp"))
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.arch).eval()
    per_pixel = round(macs_per_pixel(model))  # counted by torch.utils.flop_counter
    latency = measure_latency(model, 512, 512, warmup=1, repeats=3)
    rate = per_pixel * 512 * 512 / (latency["latency_ms"] / 1e3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="asymsr-photo-") as scratch:
        work = Path(scratch)
        save_checkpoint(work / "model.pt", model_payload(args.arch, model))
        height, width = make_photo(work / "photo.jpg", args.megapixels)
        for scale in (int(s) for s in args.scales.split(",")):
            command = [str(Path(sys.executable).with_name("asymsr")), "upscale", str(work / "photo.jpg"),
                       str(work / f"x{scale}.png"), "--scale", str(scale), "--model", str(work / "model.pt"),
                       "--device", "cpu"]  # fmt: skip
            seconds, peak_kib = run(command)
            output_pixels = height * width * scale * scale
            floor = output_pixels * per_pixel / rate
            rows.append({"scale": scale, "input": f"{width}x{height}", "output_megapixels": output_pixels / 1e6,
                         "seconds": seconds, "peak_rss_mib": peak_kib / 1024, "floor_seconds": floor})  # fmt: skip
            print(rows[-1], flush=True)
    host = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    lines = ["| scale | input | output (MP) | wall (s) | peak RSS (MiB) | network floor (s) | wall / floor |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows:
        ratio = row["seconds"] / row["floor_seconds"]
        lines.append(f"| x{row['scale']} | {row['input']} | {row['output_megapixels']:.1f} | {row['seconds']:.0f} | "
                     f"{row['peak_rss_mib']:.0f} | {row['floor_seconds']:.0f} | {ratio:.2f} |")  # fmt: skip
    rate_line = f"{args.arch}, {per_pixel:,} multiply-adds per output pixel at {rate / 1e9:.1f} G/s (512x512 tile)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"host": host, "rate": rate_line, "rows": rows}, indent=2))
    text = "\n".join(lines) + f"\n\n{rate_line}; {host}\n"
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
