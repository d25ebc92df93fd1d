"""What ``asymsr bench`` writes: the record as JSON, a Markdown report and a latency chart (PNG).

The JSON is the record itself (the source of every number); the Markdown is what the README
quotes and what the command prints; the PNG shows the medians with their quartiles so that a
difference within the noise looks like one. Every file is written atomically, so a killed
run leaves no half-written result next to good ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from asymsr.bench.host import THP_ENV
from asymsr.bench.timing import TRAIN_PATCH
from asymsr.util.fs import atomic_path, write_json, write_text


def write_outputs(result: dict[str, Any], prefix: str | os.PathLike[str]) -> dict[str, Path]:
    """Write PREFIX.json, PREFIX.md and PREFIX.png (each atomically); return their paths by suffix."""
    prefix = Path(prefix)
    paths = {suffix: prefix.with_name(prefix.name + "." + suffix) for suffix in ("json", "md", "png")}
    write_json(paths["json"], result)
    write_text(paths["md"], markdown_report(result))
    plot_latency(result, paths["png"])
    return paths


def stderr_log(line: str) -> None:
    """Progress line to standard error (so that standard output stays the table)."""
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- Markdown


def markdown_report(result: dict[str, Any]) -> str:
    """The result as Markdown: host line, best-form table, one latency row per case, costs, training."""
    lines = _header_lines(result) + _best_lines(result) + _case_lines(result) + _model_lines(result)
    if result.get("training"):
        lines += _training_lines(result["training"])
    return "\n".join(lines) + "\n"


def _peak_text(host: dict[str, Any]) -> str:
    """The peak FP32 GFLOP/s behind ``fraction_of_peak``, and where it came from."""
    measured = host.get("measured_peak_gflops")
    if host["peak_gflops"] is not None:
        return f"{host['peak_gflops']} (given)"
    if measured:
        text = ", ".join(f"{value:.1f} on {threads} thread(s)" for threads, value in measured.items())
        return text + " (measured by the FMA probe)"
    return "not known"


def _header_lines(result: dict[str, Any]) -> list[str]:
    """Title and one line of host and protocol: what the timings below mean nothing without."""
    host, protocol = result["host"], result["protocol"]
    return [
        "# asymsr bench",
        "",
        f"CPU: {host['cpu_model']} ({host['logical_cpus']} logical CPUs); GPU: {host['gpu'] or 'none'}; "
        f"torch {host['torch']}; {host['datetime_utc']}; warm-up {protocol['warmup']}, "
        f"repeats {protocol['repeats']} (interleaved rounds); peak FP32 GFLOP/s: {_peak_text(host)}; "
        f"{THP_ENV}={host.get('thp_mem_alloc', 'unset')}; native kernels: {host.get('native_kernels', 'unknown')}.",
        "",
    ]


def _best_lines(result: dict[str, Any]) -> list[str]:
    """The fastest form of each architecture per setting and their ratios (medians in ms)."""
    lines = [
        "Fastest form of each architecture per setting (medians, ms):",
        "",
        "| size | threads | device/dtype | Asym_VDSR best | ms | VDSR best | ms | ratio "
        "| stock VDSR best | ms | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["best"]:
        lines.append(
            f"| {row['size']} | {row['threads']} | {row['device']}/{row['dtype']} | {row['asym']} | "
            f"{row['asym_ms']:.1f} | {row['vdsr']} | {row['vdsr_ms']:.1f} | {row['asym_over_vdsr']:.2f} | "
            f"{row['stock_vdsr']} | {row['stock_vdsr_ms']:.1f} | {row['asym_over_stock_vdsr']:.2f} |"
        )
    return lines


def _case_lines(result: dict[str, Any]) -> list[str]:
    """One row per case; the ``of peak`` column only where some case has a peak to compare with."""
    with_peak = any(case["fraction_of_peak"] is not None for case in result["cases"])
    header = "| size | threads | device/dtype | format | variant | median ms | IQR ms | GFLOP/s |"
    rule = "|---|---|---|---|---|---|---|---|"
    if with_peak:
        header += " of peak |"
        rule += "---|"
    lines = ["", "All cases:", "", header + " ratio to vdsr |", rule + "---|"]
    for case in result["cases"]:
        row = (
            f"| {case['size']} | {case['threads']} | {case['device']}/{case['dtype']} | {case['memory_format']} | "
            f"{case['variant']} | {case['median_ms']:.2f} | {case['q1_ms']:.2f}-{case['q3_ms']:.2f} | "
            f"{case['gflops']:.1f} |"
        )
        if with_peak:
            fraction = case["fraction_of_peak"]
            row += f" {100 * fraction:.1f}% |" if fraction is not None else " - |"
        lines.append(row + f" {case['ratio_to_vdsr']:.2f} |")
    return lines


def _model_lines(result: dict[str, Any]) -> list[str]:
    """Parameters, checkpoint bytes and multiply-adds per pixel of each variant."""
    lines = ["", "Models (random weights; MACs counted by torch.utils.flop_counter):", ""]
    lines += ["| variant | params | checkpoint bytes | MACs per pixel |", "|---|---|---|---|"]
    for name, cost in result["models"].items():
        lines.append(f"| {name} | {cost['params']:,} | {cost['checkpoint_bytes']:,} | {cost['macs_per_pixel']:,.0f} |")
    return lines


def _training_lines(training: list[dict[str, Any]]) -> list[str]:
    """Training throughput per architecture, device and thread count (patches/s, step ms)."""
    lines = ["", f"Training throughput (Adam, MSE, {TRAIN_PATCH}x{TRAIN_PATCH} patches, fp32):", ""]
    lines += ["| arch | device | threads | batch | patches/s | median step ms | ratio to vdsr |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for row in training:
        lines.append(
            f"| {row['arch']} | {row['device']} | {row['threads']} | {row['batch']} | {row['patches_per_s']:.1f} | "
            f"{row['median_step_ms']:.1f} | {row['ratio_to_vdsr']:.2f} |"
        )
    return lines


# ---------------------------------------------------------------- chart


def plot_latency(result: dict[str, Any], out: str | os.PathLike[str]) -> Path:
    """Bar chart of median latency (ms) per variant, grouped by setting, one panel per size; PNG, atomic."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib is slow to import: only when drawing
    from matplotlib.figure import Figure

    sizes = list(dict.fromkeys(case["size"] for case in result["cases"]))
    variants = list(dict.fromkeys(case["variant"] for case in result["cases"]))
    figure = Figure(figsize=(10, 3.2 * len(sizes)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sizes), 1, squeeze=False)[:, 0]
    for axis, size in zip(axes, sizes, strict=True):
        _plot_size(axis, size, [case for case in result["cases"] if case["size"] == size], variants)
    out = Path(out)
    with atomic_path(out) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return out


def _plot_size(axis: Any, size: str, cases: list[dict[str, Any]], variants: list[str]) -> None:
    """The panel of one output size: per setting, one bar per variant (median ms) with quartile whiskers."""
    width = 0.8 / len(variants)
    groups = list(dict.fromkeys(_group_label(case) for case in cases))
    for index, variant in enumerate(variants):
        values = {_group_label(c): c for c in cases if c["variant"] == variant}
        present = [g for g in groups if g in values]
        positions = [groups.index(g) + (index - (len(variants) - 1) / 2) * width for g in present]
        medians = [values[g]["median_ms"] for g in present]
        errors = [
            [values[g]["median_ms"] - values[g]["q1_ms"] for g in present],
            [values[g]["q3_ms"] - values[g]["median_ms"] for g in present],
        ]
        axis.bar(positions, medians, width, yerr=errors, capsize=2, label=variant)
    axis.set_xticks(range(len(groups)), groups, fontsize=8)
    axis.set_ylabel("median latency (ms)")
    axis.set_title(f"output {size} (bars: median, whiskers: quartiles)", fontsize=10)
    axis.legend(fontsize=8)


def _group_label(case: dict[str, Any]) -> str:
    return f"{case['threads']} thr\n{case['device']}/{case['dtype']}\n{case['memory_format']}"
