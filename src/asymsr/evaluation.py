"""``asymsr evaluate``: PSNR/SSIM of a model over dataset folders and scales, plus efficiency.

Outputs (written atomically):

* summary JSON: ``{"<dataset>": {"x<scale>": {"psnr": float, "ssim": float}}, "efficiency": {...}}``,
  means over the images of each folder (readable by ``dvc metrics show``); the efficiency block
  is :func:`asymsr.efficiency.efficiency_report`'s: with latency, ``latency_ms`` is the fastest
  deploy form's (``deploy``: form, memory format, every candidate's time) and
  ``latency_ms_as_trained`` the stored network's in NCHW;
* per-image JSON: ``{"<dataset>": {"x<scale>": {"<file name>": {"psnr": ..., "ssim": ...}}}}``;
* a Markdown table of the summary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from asymsr.efficiency import efficiency_report
from asymsr.fsutil import write_json, write_text
from asymsr.images import list_images, read_image
from asymsr.inference import Predictor
from asymsr.protocol import check_scale, make_test_pair, score

Summary = dict[str, Any]


def evaluate_folders(
    predictor: Predictor,
    folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    progress: bool = True,
) -> tuple[Summary, Summary]:
    """Score ``predictor`` on every image of every folder at every scale.

    Datasets are named by their folder's name, which must be unique. Returns
    ``(summary, per_image)`` as described in the module docstring (no efficiency block).
    """
    scales = [check_scale(scale) for scale in scales]
    names = [Path(folder).name for folder in folders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"dataset folders must have distinct names; repeated: {duplicates}")
    files = {name: list_images(folder) for name, folder in zip(names, folders, strict=True)}
    total = sum(len(paths) for paths in files.values()) * len(scales)
    summary: Summary = {}
    per_image: Summary = {}
    with tqdm(total=total, desc=f"evaluate {predictor.name}", unit="img", disable=not progress) as bar:
        for name, paths in files.items():
            per_image[name] = {f"x{scale}": {} for scale in scales}
            for path in paths:
                image = read_image(path)
                for scale in scales:
                    pair = make_test_pair(image, scale)
                    per_image[name][f"x{scale}"][path.name] = score(pair, predictor(pair.network_input))
                    bar.update()
            summary[name] = {key: _mean_scores(values) for key, values in per_image[name].items()}
    return summary, per_image


def _mean_scores(per_file: dict[str, dict[str, float]]) -> dict[str, float]:
    return {metric: float(np.mean([scores[metric] for scores in per_file.values()])) for metric in ("psnr", "ssim")}


def markdown_table(summary: Summary, title: str) -> str:
    """Render a summary as a Markdown table with one row per dataset and scale."""
    lines = [f"### {title}", "", "| dataset | scale | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for dataset, by_scale in summary.items():
        if dataset == "efficiency":
            continue
        for scale, scores in by_scale.items():
            lines.append(f"| {dataset} | {scale} | {scores['psnr']:.2f} | {scores['ssim']:.4f} |")
    efficiency = summary.get("efficiency")
    if efficiency and efficiency.get("params"):
        lines += [
            "",
            f"Parameters: {efficiency['params']:,}; inference checkpoint: {efficiency['model_bytes']:,} bytes; "
            f"multiply-adds per output pixel: {efficiency['macs_per_pixel']:,.0f}.",
        ]
        if "latency_ms" in efficiency:
            lines.append(_latency_sentence(efficiency))
    return "\n".join(lines) + "\n"


def _latency_sentence(efficiency: dict[str, Any]) -> str:
    """One line on the measured latency (ms) of an efficiency block, naming the deploy form it was timed in."""
    size = "x".join(str(v) for v in efficiency["latency_input"][2:])
    setting = f"{size} input, {efficiency['device']}, {efficiency['threads']} threads"
    deploy = efficiency["deploy"]
    ranked = ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in sorted(deploy["timings_ms"].items(), key=lambda item: item[1])
    )
    return (
        f"Latency ({setting}): median {efficiency['latency_ms']:.1f} ms in the fastest deploy form, "
        f"{deploy['form']}/{deploy['memory_format']} (medians of {deploy['repeats']} interleaved runs: {ranked}); "
        f"as trained in NCHW, median {efficiency['latency_ms_as_trained']:.1f} ms over "
        f"{efficiency['latency_repeats']} runs."
    )


def evaluate(
    predictor: Predictor,
    folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    out: str | os.PathLike[str],
    per_image_out: str | os.PathLike[str] | None = None,
    table_out: str | os.PathLike[str] | None = None,
    latency: bool = True,
    latency_size: int = 256,
    progress: bool = True,
) -> Summary:
    """Evaluate and write the three outputs; returns the summary with its efficiency block.

    ``per_image_out`` and ``table_out`` default to ``<out stem>.per_image.json`` and
    ``<out stem>.md`` beside ``out``. The bicubic baseline's efficiency block is
    ``{"arch": "bicubic", "params": 0}``.
    """
    out = Path(out)
    per_image_out = Path(per_image_out) if per_image_out else out.with_name(f"{out.stem}.per_image.json")
    table_out = Path(table_out) if table_out else out.with_name(f"{out.stem}.md")
    summary, per_image = evaluate_folders(predictor, folders, scales, progress=progress)
    if predictor.stored is None:
        summary["efficiency"] = {"arch": predictor.arch, "params": 0}
    else:  # the stored network's figures, whichever form computed the scores
        summary["efficiency"] = efficiency_report(predictor.arch, predictor.stored, latency, latency_size)
    write_json(per_image_out, per_image)
    write_text(table_out, markdown_table(summary, f"{predictor.name} ({predictor.source or 'baseline'})"))
    write_json(out, summary)
    return summary


def evaluate_test_sets(
    params_path: str | os.PathLike[str],
    model: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    progress: bool = False,
) -> Summary:
    """:func:`evaluate` of ``model`` ("bicubic", a checkpoint or a model URI) as params.yaml says.

    Test sets ``data_root/<name>`` for every name in ``data.test``, the ``evaluate`` scales and
    latency size; the bicubic baseline gets no latency measurement. Writes the three outputs
    beside ``out``.
    """
    from asymsr.inference import BICUBIC, load_predictor
    from asymsr.params import load_params

    params = load_params(params_path)
    return evaluate(
        load_predictor(model),
        [Path(data_root) / name for name in params.data.test],
        params.evaluate.scales,
        out,
        latency=str(model) != BICUBIC,
        latency_size=params.evaluate.latency_size,
        progress=progress,
    )
