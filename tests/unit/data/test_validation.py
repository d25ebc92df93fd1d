"""Great Expectations validation of image folders and patch sets: each expectation is shown
to fail on a deliberately broken input, naming the offending file or row, and to pass on
clean data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from asymsr.data.validation import (
    EXPECTED_COUNTS,
    PSNR_BANDS_DB,
    PSNR_CLIP_DB,
    ValidationFailed,
    ValidationReport,
    patch_psnr,
    raise_on_failure,
    validate_images,
    validate_patches,
)
from asymsr.sr.metrics import psnr
from asymsr.util.images import list_images
from tests.conftest import shared_path, smooth_image


def result_for(report: ValidationReport, expectation: str, column: str | None = None) -> dict[str, Any]:
    """The single result of ``expectation`` on ``column``."""
    matches = [r for r in report.results if r["expectation"] == expectation and r["column"] == column]
    assert len(matches) == 1, f"{expectation} [{column}] in {[(r['expectation'], r['column']) for r in report.results]}"
    return matches[0]


def failed_names(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(r["expectation"], r["column"]) for r in report.failures}


def rewrite(path: Path, array: np.ndarray) -> None:
    np.save(path, array)


# --------------------------------------------------------------------------- images


def test_clean_image_folder_passes(image_folder: Path) -> None:
    report = validate_images(image_folder)
    assert report.success, report.summary()
    assert report.rows == len(list_images(image_folder))
    # "tiny" is not a known dataset: no count expectation
    assert all(r["expectation"] != "expect_table_row_count_to_equal" for r in report.results)
    assert "passed" in report.summary()
    raise_on_failure(report)  # does not raise


def test_undecodable_file_fails_and_is_named(image_folder: Path) -> None:
    (image_folder / "broken.png").write_bytes(b"this is not a png")
    report = validate_images(image_folder)
    assert report.success is False
    decodes = result_for(report, "expect_column_values_to_be_in_set", "decodes")
    assert decodes["success"] is False and decodes["offending"] == ["broken.png"]
    assert failed_names(report) == {("expect_column_values_to_be_in_set", "decodes")}
    assert "broken.png" in report.summary()


def test_image_smaller_than_min_size_fails(image_folder: Path) -> None:
    Image.fromarray(smooth_image(30, 60, seed=4)).save(image_folder / "small.png")
    report = validate_images(image_folder, min_size=41)
    assert report.success is False
    assert failed_names(report) == {("expect_column_values_to_be_between", "height")}
    assert result_for(report, "expect_column_values_to_be_between", "height")["offending"] == ["small.png"]
    assert "small.png" in report.summary()
    # the same folder passes with a lower minimum
    assert validate_images(image_folder, min_size=30).success


def test_duplicate_image_fails_naming_both_copies(image_folder: Path) -> None:
    shutil.copy(image_folder / "b.png", image_folder / "z_copy_of_b.png")
    report = validate_images(image_folder)
    assert report.success is False
    unique = result_for(report, "expect_column_values_to_be_unique", "sha256")
    assert unique["success"] is False
    assert sorted(unique["offending"]) == ["b.png", "z_copy_of_b.png"]
    summary = report.summary()
    assert "b.png" in summary and "z_copy_of_b.png" in summary


def test_wrong_count_for_known_dataset_name_fails(tmp_path: Path, image_folder: Path) -> None:
    folder = tmp_path / "Set5"
    shutil.copytree(image_folder, folder)
    report = validate_images(folder)
    count = result_for(report, "expect_table_row_count_to_equal")
    assert report.success is False and count["success"] is False
    assert count["parameters"]["value"] == EXPECTED_COUNTS["Set5"]
    assert count["observed"] == len(list_images(folder))
    assert "expect_table_row_count_to_equal" in report.summary()
    # an explicit count overrides the name's
    assert validate_images(folder, expected_count=len(list_images(folder))).success


def test_real_set5_and_set14_pass() -> None:
    for name in ("Set5", "Set14"):
        report = validate_images(shared_path("datasets", name))
        assert report.success, report.summary()
        assert result_for(report, "expect_table_row_count_to_equal")["observed"] == EXPECTED_COUNTS[name]


# --------------------------------------------------------------------------- patches


def test_clean_patch_set_passes(patch_folder: Path) -> None:
    report = validate_patches(patch_folder)
    assert report.success, report.summary()
    manifest = json.loads((patch_folder / "manifest.json").read_text())
    assert report.rows == manifest["count"]
    bands = [r for r in report.results if r["column"] == "psnr_input_label"]
    assert len(bands) == len(manifest["settings"]["scales"])


def test_sample_limits_rows_deterministically(patch_folder: Path) -> None:
    first = validate_patches(patch_folder, sample=40, seed=3)
    again = validate_patches(patch_folder, sample=40, seed=3)
    assert first.rows == 40 and first.success, first.summary()
    assert first.results == again.results


def test_nan_in_inputs_fails_naming_the_row(patch_folder: Path) -> None:
    inputs = np.load(patch_folder / "inputs.npy")
    row = len(inputs) // 2
    inputs[row, 3, 4] = np.nan
    rewrite(patch_folder / "inputs.npy", inputs)
    report = validate_patches(patch_folder)
    nan = result_for(report, "expect_column_values_to_be_in_set", "has_nan")
    assert report.success is False and nan["success"] is False
    assert nan["offending"] == [row]
    assert f"offending index: {row}" in report.summary()


def test_labels_out_of_unit_range_fail(patch_folder: Path) -> None:
    labels = np.load(patch_folder / "labels.npy")
    scaled = labels * 1.5
    rewrite(patch_folder / "labels.npy", scaled)
    report = validate_patches(patch_folder)
    high = result_for(report, "expect_column_values_to_be_between", "label_max")
    expected_rows = np.flatnonzero(scaled.reshape(len(scaled), -1).max(axis=1) > 1.0)
    assert len(expected_rows) > 0
    assert report.success is False and high["success"] is False
    assert high["observed"]["unexpected_count"] == len(expected_rows)
    assert high["offending"] == expected_rows[:10].tolist()
    assert str(expected_rows[0]) in report.summary()


def test_unbalanced_scales_fail_naming_the_scales(patch_folder: Path) -> None:
    scales = np.load(patch_folder / "scales.npy")
    scales[scales == 4] = 2  # no x4 patches left, twice as many x2 patches
    rewrite(patch_folder / "scales.npy", scales)
    report = validate_patches(patch_folder)
    balance = result_for(report, "expect_column_values_to_be_between", "count")
    assert report.success is False and balance["success"] is False
    assert sorted(balance["offending"]) == [2, 4]
    assert "offending scale: 2, 4" in report.summary()


def test_unknown_scale_fails(patch_folder: Path) -> None:
    scales = np.load(patch_folder / "scales.npy")
    scales[:3] = 5
    rewrite(patch_folder / "scales.npy", scales)
    report = validate_patches(patch_folder)
    known = result_for(report, "expect_column_values_to_be_in_set", "scale")
    assert known["success"] is False and known["offending"] == [5]


def test_shuffled_labels_fail_the_psnr_band(patch_folder: Path) -> None:
    labels = np.load(patch_folder / "labels.npy")
    rewrite(patch_folder / "labels.npy", labels[np.random.default_rng(0).permutation(len(labels))])
    report = validate_patches(patch_folder)
    bands = [r for r in report.results if r["column"] == "psnr_input_label"]
    assert report.success is False
    assert bands and all(not r["success"] for r in bands)
    for band in bands:
        assert (
            band["observed"]["unexpected_count"]
            > (1 - band["parameters"]["mostly"]) * band["observed"]["element_count"]
        )
        assert band["offending"]
    assert "psnr_input_label" in report.summary()
    # the value ranges themselves are still fine: only the pairing is broken
    assert {column for _, column in failed_names(report)} == {"psnr_input_label"}


def test_arrays_of_different_lengths_fail(patch_folder: Path) -> None:
    labels = np.load(patch_folder / "labels.npy")
    rewrite(patch_folder / "labels.npy", labels[:-5])
    report = validate_patches(patch_folder)
    lengths = result_for(report, "expect_arrays_to_have_manifest_count")
    assert report.success is False and lengths["success"] is False
    assert lengths["observed"]["labels"] == len(labels) - 5
    assert lengths["observed"]["inputs"] == len(labels)
    assert "expect_arrays_to_have_manifest_count" in report.summary()
    assert report.rows == len(labels) - 5  # the common rows are still checked


def test_patch_side_other_than_manifest_fails(patch_folder: Path) -> None:
    labels = np.load(patch_folder / "labels.npy")
    rewrite(patch_folder / "labels.npy", labels[:, :-1, :-1])
    report = validate_patches(patch_folder)
    side = result_for(report, "expect_patch_side_to_equal_manifest")
    assert report.success is False and side["success"] is False
    assert "expect_patch_side_to_equal_manifest" in report.summary()


def test_patch_psnr_matches_metrics_psnr_and_clips() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 1, (3, 9, 9))
    inputs = labels + rng.normal(0, 0.02, labels.shape)
    inputs[2] = labels[2]
    values = patch_psnr(inputs, labels)
    for i in range(2):
        assert values[i] == pytest.approx(psnr(labels[i] * 255, inputs[i] * 255), abs=1e-9)
    assert values[2] == PSNR_CLIP_DB
    assert set(PSNR_BANDS_DB) == {2, 3, 4}


# --------------------------------------------------------------------------- reports


def test_report_files_and_failure_exception(image_folder: Path, tmp_path: Path) -> None:
    (image_folder / "broken.png").write_bytes(b"garbage")
    report = validate_images(image_folder)
    json_path, html_path = tmp_path / "out" / "report.json", tmp_path / "out" / "report.html"
    report.write(json_path, html_path)

    data = json.loads(json_path.read_text())
    assert data["success"] is False and data["name"] == report.name
    assert [r["expectation"] for r in data["results"]] == [r["expectation"] for r in report.results]

    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "expect_column_values_to_be_in_set" in page and "broken.png" in page
    assert 'class="fail"' in page and 'class="pass"' in page
    assert "<link" not in page and "src=" not in page and "http" not in page  # renders offline

    with pytest.raises(ValidationFailed, match="broken.png") as raised:
        raise_on_failure(report)
    assert str(raised.value) == report.summary()
