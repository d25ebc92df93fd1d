"""Data validation of image folders and prepared patch sets with Great Expectations (GX).

Each check builds a pandas table (one row per image file, or per patch), runs a GX
expectation suite on it in an ephemeral (in-memory) GX context and returns a
:class:`ValidationReport`: one entry per expectation with its success, observed value and
up to :data:`MAX_OFFENDING` offending files or patch indices. :meth:`ValidationReport.write`
saves it as JSON and as a self-contained HTML page; :func:`raise_on_failure` turns a failed
report into a :class:`ValidationFailed` error whose message is the readable summary.

GX (and pandas) are imported lazily, inside the functions that need them, so that
``import asymsr`` stays fast; importing GX itself takes about 3 s.

The PSNR bands of :data:`PSNR_BANDS_DB` were measured on patches prepared from T91 + BSD200
(VDSR's 291 training images, default settings), Set5, Set14, B100 and Urban100: below the
lower bound lie at most 0.4% of the real (non-flat) patches of any scale and set (Urban100
x4), but 42-85% of the rows of a set whose labels were shuffled against the inputs, and at
x2 5-19% of the rows of a set whose inputs were shifted by 3 pixels.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asymsr.data.patches import read_manifest
from asymsr.schema.params import ValidateConfig
from asymsr.util.fs import write_json, write_text
from asymsr.util.images import ImageReadError, list_images, read_image

if TYPE_CHECKING:
    import pandas as pd

EXPECTED_COUNTS: dict[str, int] = {"Set5": 5, "Set14": 14, "B100": 100, "Urban100": 100, "T91": 91, "BSD200": 200}
"""Number of images in the standard SR datasets, by folder name."""

MAX_OFFENDING = 10
"""At most this many offending files or row indices are kept per expectation."""

INPUT_RANGE = (-0.1, 1.1)
"""Allowed network input values (bicubic output / 255, which overshoots [0, 1] a little)."""

LABEL_RANGE = (0.0, 1.0)
"""Allowed label values (HR luminance / 255)."""

PSNR_CLIP_DB = 100.0
"""PSNR values are clipped to this (identical input and label would give infinity)."""

PSNR_BANDS_DB: dict[int, tuple[float, float]] = {2: (15.0, 90.0), 3: (13.0, 90.0), 4: (12.0, 90.0)}
"""Plausible PSNR (dB) of a patch's bicubic input against its label, per scale."""

PSNR_MOSTLY = 0.99
"""Fraction of the non-flat patches of each scale that must lie within the PSNR band."""

BALANCE_TOLERANCE = 0.2
"""Each scale's patch count must be within this fraction of the mean count per scale."""

_CHUNK_ROWS = 2048


class ValidationFailed(ValueError):
    """A validation report has failed expectations; the message is the report's summary."""


@dataclass
class ValidationReport:
    """The outcome of one validation.

    Attributes:
        name: what was validated, e.g. ``"images Set5"`` or ``"patches data/patches"``.
        success: whether every expectation passed.
        results: one dict per expectation with the keys ``expectation`` (GX expectation type,
            or a descriptive name for the structural checks done in numpy), ``column`` (or
            None), ``parameters`` (the expectation's arguments), ``success``, ``observed``
            (a number, or a dict such as ``{"unexpected_count": 3, "element_count": 20}``),
            ``offending_column`` and ``offending`` (at most :data:`MAX_OFFENDING` values of
            that column: file names, patch indices or scales).
        source: the validated folder.
        rows: the number of table rows the expectations ran on (files, or sampled patches).
    """

    name: str
    success: bool
    results: list[dict[str, Any]]
    source: str = ""
    rows: int = 0

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The results of the failed expectations."""
        return [result for result in self.results if not result["success"]]

    def summary(self) -> str:
        """A readable multi-line text: the verdict, then one line per failed expectation."""
        failed = self.failures
        verdict = "passed" if self.success else "FAILED"
        lines = [
            f"{self.name}: {verdict} ({len(self.results) - len(failed)} of {len(self.results)} expectations met, "
            f"{self.rows} rows, {self.source})"
        ]
        lines += [f"  - {_describe(result)}" for result in failed]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-compatible data."""
        return asdict(self)

    def write(self, json_path: str | os.PathLike[str], html_path: str | os.PathLike[str]) -> None:
        """Write the report as JSON and as a self-contained HTML page (inline CSS only), atomically."""
        write_json(json_path, self.to_dict())
        write_text(html_path, _render_html(self))


def raise_on_failure(report: ValidationReport) -> None:
    """Raise :class:`ValidationFailed` with ``report.summary()`` if the report failed."""
    if not report.success:
        raise ValidationFailed(report.summary())


# --------------------------------------------------------------------------- images


def validate_images(
    folder: Path, expected_count: int | None = None, min_size: int = ValidateConfig.model_fields["min_size"].default
) -> ValidationReport:
    """Validate the image files directly inside ``folder``.

    Expectations: every file decodes (:func:`asymsr.util.images.read_image`); height and width
    are at least ``min_size`` pixels; 1 (gray) or 3 (colour) channels; no two files have the
    same content (sha256 of the bytes); and the folder holds ``expected_count`` images. When
    ``expected_count`` is None it is taken from :data:`EXPECTED_COUNTS` if the folder's name
    is a known dataset, and the count is not checked otherwise.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` holds no image files.
    """
    folder = Path(folder)
    frame = _frame([_image_row(path) for path in list_images(folder)])
    if expected_count is None:
        expected_count = EXPECTED_COUNTS.get(folder.name)
    gx = _import_gx()
    expect = gx.expectations
    expectations = [
        expect.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
        expect.ExpectColumnValuesToBeBetween(column="height", min_value=min_size),
        expect.ExpectColumnValuesToBeBetween(column="width", min_value=min_size),
        expect.ExpectColumnValuesToBeInSet(column="channels", value_set=[1, 3]),
        expect.ExpectColumnValuesToBeUnique(column="sha256"),
    ]
    if expected_count is not None:
        expectations.append(expect.ExpectTableRowCountToEqual(value=expected_count))
    results = _run_suite(_context(gx), "images", frame, expectations, id_column="file")
    return _report(f"images {folder.name}", folder, results, rows=len(frame))


def _image_row(path: Path) -> dict[str, Any]:
    """One row: file name, decodes, height and width (pixels), channels (1 or 3), sha256 of the bytes."""
    row: dict[str, Any] = {"file": path.name, "decodes": False, "height": None, "width": None, "channels": None}
    try:
        row["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        image = read_image(path)
    except (OSError, ImageReadError):
        row.setdefault("sha256", None)
        return row
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    return {**row, "decodes": True, "height": height, "width": width, "channels": channels}


# --------------------------------------------------------------------------- patches


def validate_patches(
    folder: Path, sample: int | None = ValidateConfig.model_fields["patch_sample"].default, seed: int = 0
) -> ValidationReport:
    """Validate a patch set written by :func:`asymsr.data.prepare.prepare`.

    Structural checks (numpy, on the whole arrays): inputs, labels and scales have the
    manifest's count of rows, and patches are ``patch_size`` x ``patch_size``.

    Per patch (GX, on all rows, or on a deterministic random sample of ``sample`` rows drawn
    with ``seed`` when there are more; ``sample=None`` takes all): labels within
    :data:`LABEL_RANGE`, inputs within :data:`INPUT_RANGE`, no NaN, and for each scale of
    :data:`PSNR_BANDS_DB` the PSNR (dB, peak 255, no border shave, clipped to
    :data:`PSNR_CLIP_DB`) of the input against the label within the band for at least
    :data:`PSNR_MOSTLY` of the patches whose label is not flat (a flat label makes the pair
    uninformative: its bicubic input is identical). Scales without a band are not
    PSNR-checked.

    Per scale (GX, on the counts over the whole ``scales.npy``): every scale present is one of
    the manifest's ``settings.scales``, and each scale's count is within
    :data:`BALANCE_TOLERANCE` of the mean count.

    Raises:
        asymsr.data.patches.PatchSetError: not a patch folder (no manifest or a missing array).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    inputs = np.load(folder / "inputs.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    scales = np.load(folder / "scales.npy", mmap_mode="r")
    results = _structure_results(manifest, inputs, labels, scales)
    if inputs.ndim != 3 or inputs.shape[1:] != labels.shape[1:]:
        return _report(f"patches {folder.name}", folder, results, rows=0)

    count = min(len(inputs), len(labels), len(scales))
    indices = _sample_indices(count, sample, seed)
    rows = _frame(_patch_rows(inputs, labels, scales, indices))
    counts = _frame(_scale_counts(scales, manifest["settings"]["scales"]))
    gx = _import_gx()
    context = _context(gx)
    results += _run_suite(context, "patches", rows, _patch_expectations(gx, np.unique(rows["scale"])), "index")
    results += _run_suite(context, "scales", counts, _balance_expectations(gx, counts, manifest), "scale")
    return _report(f"patches {folder.name}", folder, results, rows=len(rows))


def _structure_results(
    manifest: Mapping[str, Any], inputs: np.ndarray, labels: np.ndarray, scales: np.ndarray
) -> list[dict[str, Any]]:
    """Length and patch-side checks of the arrays against each other and the manifest."""
    lengths = {"manifest": int(manifest["count"]), "inputs": len(inputs), "labels": len(labels), "scales": len(scales)}
    side = int(manifest["patch_size"])
    shapes = {"inputs": list(inputs.shape[1:]), "labels": list(labels.shape[1:])}
    sides_ok = all(shape == [side, side] for shape in shapes.values())
    return [
        _entry(
            "expect_arrays_to_have_manifest_count",
            None,
            {"count": lengths["manifest"]},
            len(set(lengths.values())) == 1,
            lengths,
        ),
        _entry("expect_patch_side_to_equal_manifest", None, {"patch_size": side}, sides_ok, shapes),
    ]


def _sample_indices(count: int, sample: int | None, seed: int) -> np.ndarray:
    """Sorted row indices: all of ``range(count)``, or ``sample`` of them drawn with ``seed``."""
    if sample is None or count <= sample:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=sample, replace=False))


def _patch_rows(
    inputs: np.ndarray, labels: np.ndarray, scales: np.ndarray, indices: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-patch columns for ``indices`` (values in [0, 1] units, PSNR in dB), read in chunks."""
    parts = [_chunk_stats(inputs, labels, indices[i : i + _CHUNK_ROWS]) for i in range(0, len(indices), _CHUNK_ROWS)]
    columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]} if parts else {}
    return {"index": indices, "scale": np.asarray(scales[indices], dtype=np.int64), **columns}


def _chunk_stats(inputs: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    x = np.asarray(inputs[rows], dtype=np.float64)
    y = np.asarray(labels[rows], dtype=np.float64)
    return {
        "input_min": x.min(axis=(1, 2)),
        "input_max": x.max(axis=(1, 2)),
        "label_min": y.min(axis=(1, 2)),
        "label_max": y.max(axis=(1, 2)),
        "label_flat": np.ptp(y, axis=(1, 2)) == 0,
        "has_nan": np.isnan(x).any(axis=(1, 2)) | np.isnan(y).any(axis=(1, 2)),
        "psnr_input_label": patch_psnr(x, y),
    }


def patch_psnr(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """PSNR in dB of each input patch against its label, both (N, P, P) in [0, 1] units.

    The formula of :func:`asymsr.sr.metrics.psnr` on the [0, 255] scale with no border shave,
    vectorised; identical patches give :data:`PSNR_CLIP_DB` instead of infinity, and a
    patch holding NaN gives NaN.
    """
    error = (np.asarray(inputs, dtype=np.float64) - np.asarray(labels, dtype=np.float64)) * 255.0
    mse = np.mean(error**2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(255.0**2 / mse), PSNR_CLIP_DB)


def _scale_counts(scales: np.ndarray, expected: Iterable[int]) -> dict[str, list[int]]:
    """Patches per scale over the whole array, including expected scales that have none."""
    values, numbers = np.unique(np.asarray(scales), return_counts=True)
    counts = {int(scale): int(number) for scale, number in zip(values, numbers, strict=True)}
    keys = sorted(set(counts) | {int(scale) for scale in expected})
    return {"scale": keys, "count": [counts.get(scale, 0) for scale in keys]}


def _patch_expectations(gx: Any, present_scales: Sequence[int]) -> list[Any]:
    expect = gx.expectations
    from great_expectations.expectations.row_conditions import Column

    expectations = [
        expect.ExpectColumnValuesToBeBetween(column="label_min", min_value=LABEL_RANGE[0]),
        expect.ExpectColumnValuesToBeBetween(column="label_max", max_value=LABEL_RANGE[1]),
        expect.ExpectColumnValuesToBeBetween(column="input_min", min_value=INPUT_RANGE[0]),
        expect.ExpectColumnValuesToBeBetween(column="input_max", max_value=INPUT_RANGE[1]),
        expect.ExpectColumnValuesToBeInSet(column="has_nan", value_set=[False]),
    ]
    for scale in sorted(set(int(s) for s in present_scales) & set(PSNR_BANDS_DB)):
        low, high = PSNR_BANDS_DB[scale]
        expectations.append(
            expect.ExpectColumnValuesToBeBetween(
                column="psnr_input_label",
                min_value=low,
                max_value=high,
                mostly=PSNR_MOSTLY,
                row_condition=(Column("scale") == scale) & (Column("label_flat") == False),  # noqa: E712
            )
        )
    return expectations


def _balance_expectations(gx: Any, counts: pd.DataFrame, manifest: Mapping[str, Any]) -> list[Any]:
    expect = gx.expectations
    mean = float(counts["count"].sum()) / len(counts)
    return [
        expect.ExpectColumnValuesToBeInSet(column="scale", value_set=[int(s) for s in manifest["settings"]["scales"]]),
        expect.ExpectColumnValuesToBeBetween(
            column="count", min_value=(1 - BALANCE_TOLERANCE) * mean, max_value=(1 + BALANCE_TOLERANCE) * mean
        ),
    ]


# --------------------------------------------------------------------------- GX plumbing


def _import_gx() -> Any:
    """Import great_expectations with its usage statistics disabled."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx

    return gx


def _context(gx: Any) -> Any:
    """A fresh in-memory GX context without progress bars."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _frame(columns: Mapping[str, Any] | list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)


def _run_suite(context: Any, name: str, frame: pd.DataFrame, expectations: list[Any], id_column: str) -> list[dict]:
    """Validate ``frame`` against ``expectations``; failing rows are identified by ``id_column``."""
    gx = _import_gx()
    batch = context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={
            "result_format": "SUMMARY",
            "unexpected_index_column_names": [id_column],
            "partial_unexpected_count": MAX_OFFENDING,
        },
    )
    return [_gx_entry(result.to_json_dict(), id_column) for result in outcome.results]


def _gx_entry(result: Mapping[str, Any], id_column: str) -> dict[str, Any]:
    """Condense one GX expectation result into a report entry."""
    config = result["expectation_config"]
    parameters = {key: value for key, value in config["kwargs"].items() if key not in ("batch_id", "column")}
    if "row_condition" in parameters:
        parameters["row_condition"] = _condition_text(parameters["row_condition"])
    details = result.get("result") or {}
    if result.get("exception_info", {}).get("raised_exception"):
        observed: Any = {"exception": result["exception_info"]["exception_message"]}
    elif "observed_value" in details:
        observed = details["observed_value"]
    else:
        observed = {key: details.get(key) for key in ("unexpected_count", "element_count", "missing_count")}
    offending = [row[id_column] for row in details.get("partial_unexpected_index_list") or []][:MAX_OFFENDING]
    return _entry(
        config["type"],
        config["kwargs"].get("column"),
        parameters,
        bool(result["success"]),
        observed,
        id_column,
        offending,
    )


def _condition_text(condition: Any) -> str:
    """A GX row condition (as serialised in results) as text, e.g. ``scale == 2 and label_flat == False``."""
    if isinstance(condition, dict) and "conditions" in condition:
        return f" {condition['type']} ".join(_condition_text(part) for part in condition["conditions"])
    if isinstance(condition, dict) and "operator" in condition:
        return f"{condition['column']['name']} {condition['operator']} {condition['parameter']}"
    return str(condition)


def _entry(
    expectation: str,
    column: str | None,
    parameters: Mapping[str, Any],
    success: bool,
    observed: Any,
    offending_column: str | None = None,
    offending: Sequence[Any] = (),
) -> dict[str, Any]:
    return _jsonable(
        {
            "expectation": expectation,
            "column": column,
            "parameters": dict(parameters),
            "success": success,
            "observed": observed,
            "offending_column": offending_column if offending else None,
            "offending": list(offending),
        }
    )


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and other objects turned into plain JSON types."""
    return json.loads(json.dumps(value, default=lambda item: item.item() if hasattr(item, "item") else str(item)))


def _report(name: str, folder: Path, results: list[dict[str, Any]], rows: int) -> ValidationReport:
    return ValidationReport(
        name=name, success=all(r["success"] for r in results), results=results, source=str(folder), rows=rows
    )


# --------------------------------------------------------------------------- rendering


def _describe(result: Mapping[str, Any]) -> str:
    """One line: expectation, column, parameters, observed value and offending rows."""
    column = f" [{result['column']}]" if result["column"] else ""
    parameters = ", ".join(f"{key}={value}" for key, value in result["parameters"].items())
    parameters = f" ({parameters})" if parameters else ""
    text = f"{result['expectation']}{column}{parameters}: observed {_format_observed(result['observed'])}"
    if result["offending"]:
        text += f"; offending {result['offending_column']}: {', '.join(str(item) for item in result['offending'])}"
    return text


def _format_observed(observed: Any) -> str:
    if isinstance(observed, dict) and "unexpected_count" in observed:
        missing = f", {observed['missing_count']} missing" if observed.get("missing_count") else ""
        return f"{observed['unexpected_count']} of {observed['element_count']} rows unexpected{missing}"
    if isinstance(observed, dict):
        return ", ".join(f"{key}={value}" for key, value in observed.items())
    return str(observed)


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { font-size: 1.4rem; }
.verdict { font-weight: bold; padding: .4rem .8rem; display: inline-block; border-radius: 4px; }
.pass { background: #e6f4ea; } .fail { background: #fde7e7; }
table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
th, td { border: 1px solid #ccc; padding: .35rem .6rem; text-align: left; vertical-align: top; font-size: .9rem; }
th { background: #f3f3f3; }
tr.fail td { background: #fde7e7; } tr.fail td.status { color: #b00020; font-weight: bold; }
tr.pass td.status { color: #1e7e34; }
code { font-size: .85rem; }
"""


def _render_html(report: ValidationReport) -> str:
    """A self-contained page: verdict, then one table row per expectation, failures highlighted."""
    escape = html.escape
    status = "pass" if report.success else "fail"
    failed = len(report.failures)
    rows = []
    for result in report.results:
        row_class = "pass" if result["success"] else "fail"
        offending = ", ".join(str(item) for item in result["offending"])
        rows.append(
            f'<tr class="{row_class}"><td class="status">{"ok" if result["success"] else "FAILED"}</td>'
            f"<td><code>{escape(result['expectation'])}</code></td><td>{escape(result['column'] or '')}</td>"
            f"<td><code>{escape(json.dumps(result['parameters']))}</code></td>"
            f"<td>{escape(_format_observed(result['observed']))}</td>"
            f"<td>{escape(result['offending_column'] or '')}{': ' if offending else ''}{escape(offending)}</td></tr>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Validation: {escape(report.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>Validation: {escape(report.name)}</h1>\n"
        f"<p>Source: <code>{escape(report.source)}</code>, {report.rows} rows validated.</p>\n"
        f'<p class="verdict {status}">{"PASSED" if report.success else "FAILED"}: '
        f"{len(report.results) - failed} of {len(report.results)} expectations met</p>\n"
        "<table>\n<thead><tr><th>status</th><th>expectation</th><th>column</th><th>parameters</th>"
        "<th>observed</th><th>offending</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>\n"
        "</body>\n</html>\n"
    )
