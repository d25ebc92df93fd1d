"""PSNR/SSIM of a model over dataset folders and scales, plus its cost figures.

Outputs (written atomically), all :mod:`asymsr.schema.records`:

* summary JSON, an :class:`EvaluationSummary`: the mean scores per dataset (named by its
  folder) and scale (``"x2"``...), readable by ``dvc metrics show``, and the efficiency block
  of :func:`asymsr.eval.efficiency.efficiency_report`;
* per-image JSON, a :class:`PerImageScores`;
* a Markdown table of the summary.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asymsr.eval.efficiency import efficiency_report
from asymsr.eval.inference import Predictor
from asymsr.schema.records import Efficiency, EvaluationSummary, PerImageScores, Scores
from asymsr.sr.protocol import check_scale, make_test_pair, score
from asymsr.util.fs import write_text
from asymsr.util.images import list_images, read_image

ScoreTable = dict[str, dict[str, dict[str, Scores]]]  # dataset -> "x<scale>" -> file name -> scores


def evaluate_folders(
    predictor: Predictor,
    folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    progress: bool = True,
) -> ScoreTable:
    """Score ``predictor`` on every image of every folder at every scale.

    Datasets are named by their folder's name, which must be unique.
    """
    scales = [check_scale(scale) for scale in scales]
    names = [Path(folder).name for folder in folders]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"dataset folders must have distinct names; repeated: {duplicates}")
    files = {name: list_images(folder) for name, folder in zip(names, folders, strict=True)}
    total = sum(len(paths) for paths in files.values()) * len(scales)
    per_image: ScoreTable = {}
    with tqdm(total=total, desc=f"evaluate {predictor.name}", unit="img", disable=not progress) as bar:
        for name, paths in files.items():
            per_image[name] = {f"x{scale}": {} for scale in scales}
            for path in paths:
                image = read_image(path)
                for scale in scales:
                    try:
                        pair = make_test_pair(image, scale)
                        scores = score(pair, predictor(pair.network_input))
                    except ValueError as error:  # e.g. too small for the scale or for SSIM's window
                        raise ValueError(f"{path} at x{scale}: {error}") from None
                    per_image[name][f"x{scale}"][path.name] = Scores(**scores)
                    bar.update()
    return per_image


def mean_scores(per_image: ScoreTable) -> dict[str, dict[str, Scores]]:
    """The mean over the images of each dataset and scale."""
    return {
        dataset: {
            scale: Scores(
                psnr=float(np.mean([s.psnr for s in files.values()])),
                ssim=float(np.mean([s.ssim for s in files.values()])),
            )
            for scale, files in by_scale.items()
        }
        for dataset, by_scale in per_image.items()
    }


def markdown_table(summary: EvaluationSummary, title: str) -> str:
    """Render a summary as a Markdown table with one row per dataset and scale."""
    lines = [f"### {title}", "", "| dataset | scale | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for dataset, scale in summary.cases():
        scores = summary.scores[dataset][scale]
        lines.append(f"| {dataset} | {scale} | {scores.psnr:.2f} | {scores.ssim:.4f} |")
    efficiency = summary.efficiency
    if efficiency.params:
        lines += [
            "",
            f"Parameters: {efficiency.params:,}; inference checkpoint: {efficiency.model_bytes:,} bytes; "
            f"multiply-adds per output pixel: {efficiency.macs_per_pixel:,.0f}.",
        ]
        if efficiency.has_latency:
            lines.append(_latency_sentence(efficiency))
    return "\n".join(lines) + "\n"


def _latency_sentence(efficiency: Efficiency) -> str:
    """One line on the measured latency (ms), naming the deploy form it was timed in."""
    size = "x".join(str(v) for v in (efficiency.latency_input or [])[2:])
    setting = f"{size} input, {efficiency.device}, {efficiency.threads} threads"
    deploy = efficiency.deploy
    ranked = ", ".join(
        f"{name} {ms:.1f} ms" for name, ms in sorted(deploy.timings_ms.items(), key=lambda item: item[1])
    )
    return (
        f"Latency ({setting}): median {efficiency.latency_ms:.1f} ms in the fastest deploy form, "
        f"{deploy.form}/{deploy.memory_format} (medians of {deploy.repeats} interleaved runs: {ranked}); "
        f"as trained in NCHW, median {efficiency.latency_ms_as_trained:.1f} ms over "
        f"{efficiency.latency_repeats} runs."
    )


def evaluate(
    predictor: Predictor,
    folders: Sequence[str | os.PathLike[str]],
    scales: Sequence[int],
    out: str | os.PathLike[str],
    latency_size: int | None,
    per_image_out: str | os.PathLike[str] | None = None,
    table_out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvaluationSummary:
    """Evaluate and write the three outputs; returns the summary.

    ``latency_size`` None skips the latency measurement. ``per_image_out`` and ``table_out``
    default to ``<out stem>.per_image.json`` and ``<out stem>.md`` beside ``out``. The bicubic
    baseline's efficiency block is ``{"arch": "bicubic", "params": 0}``.
    """
    out = Path(out)
    per_image_out = Path(per_image_out) if per_image_out else out.with_name(f"{out.stem}.per_image.json")
    table_out = Path(table_out) if table_out else out.with_name(f"{out.stem}.md")
    per_image = evaluate_folders(predictor, folders, scales, progress=progress)
    if predictor.stored is None:
        efficiency = Efficiency(arch=predictor.arch, params=0)
    else:  # the stored network's figures, whichever form computed the scores
        efficiency = efficiency_report(predictor.arch, predictor.stored, latency_size)
    summary = EvaluationSummary(
        model=predictor.name, source=predictor.source, scores=mean_scores(per_image), efficiency=efficiency
    )
    PerImageScores(scores=per_image).write(per_image_out)
    write_text(table_out, markdown_table(summary, f"{predictor.name} ({predictor.source or 'baseline'})"))
    summary.write(out)
    return summary
