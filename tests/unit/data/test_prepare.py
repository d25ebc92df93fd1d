import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from asymsr.data import prepare as prepare_module
from asymsr.data.patches import read_manifest
from asymsr.data.prepare import PrepareConfig, image_patches, planned_counts, prepare
from asymsr.sr.color import luminance
from asymsr.sr.protocol import degrade
from asymsr.sr.resize import imresize
from asymsr.util.images import ImageReadError
from tests.conftest import smooth_image

CONFIG = PrepareConfig(patch_size=21, stride=21, scales=(2, 3, 4), downsize_factors=(1.0, 0.7))


def test_prepare_writes_a_consistent_patch_set(image_folder, tmp_path):
    Image.fromarray(smooth_image(15, 15, seed=9)).save(image_folder / "tiny.png")  # smaller than one patch
    out = tmp_path / "patches"
    manifest = prepare([image_folder], out, CONFIG, progress=False)
    assert read_manifest(out) == json.loads((out / "manifest.json").read_text()) == manifest

    expected = sum(sum(planned_counts(h, w, CONFIG).values()) for h, w in [(96, 120), (88, 100), (90, 90)])
    inputs = np.load(out / "inputs.npy", mmap_mode="r")
    labels = np.load(out / "labels.npy", mmap_mode="r")
    scales = np.load(out / "scales.npy")
    assert manifest["count"] == expected == len(inputs) == len(labels) == len(scales)
    assert inputs.shape[1:] == (21, 21) and inputs.dtype == np.float16 and labels.dtype == np.float16
    assert sum(manifest["counts_per_scale"].values()) == expected
    assert {int(k) for k, v in manifest["counts_per_scale"].items() if v} == {2, 3, 4}
    assert [s["path"].rsplit("/", 1)[1] for s in manifest["sources"]] == ["a.png", "b.png", "c.png"]
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert manifest["skipped"] == [{"path": str(image_folder / "tiny.png"), "reason": "smaller than one 21px patch"}]
    assert 0.0 <= float(labels.min()) and float(labels.max()) <= 1.0
    assert not np.isnan(np.asarray(inputs, dtype=np.float32)).any()


# A 50x62 image cut into 12px patches every 7px. Sizes worked out by hand: down-sized copies are
# ceil(50 f) x ceil(62 f), i.e. 35x44 for 0.7 and 25x31 for 0.5, then cropped to multiples of the
# scale; an axis of length L holds (L - 12) // 7 + 1 patches. Every label here has even sides,
# so pairing any label with an x2 input would not even fail loudly: only the values can tell.
STRIDED = PrepareConfig(patch_size=12, stride=7, scales=(2, 3, 4), downsize_factors=(1.0, 0.7, 0.5))
PLAN = {  # (factor, scale): (cropped size, patches per axis)
    (1.0, 2): ((50, 62), (6, 8)),
    (1.0, 3): ((48, 60), (6, 7)),
    (1.0, 4): ((48, 60), (6, 7)),
    (0.7, 2): ((34, 44), (4, 5)),
    (0.7, 3): ((33, 42), (4, 5)),
    (0.7, 4): ((32, 44), (3, 5)),
    (0.5, 2): ((24, 30), (2, 3)),
    (0.5, 3): ((24, 30), (2, 3)),
    (0.5, 4): ((24, 28), (2, 3)),
}


def expected_patches(image: np.ndarray, factor: float, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The protocol applied by hand: Y, down-sized, cropped, degraded at ``scale``; cut on the plan's grid."""
    (height, width), (rows, cols) = PLAN[(factor, scale)]
    hr_y = luminance(image)
    base = hr_y if factor == 1.0 else imresize(hr_y, factor)
    label = base[:height, :width]
    network_input = degrade(label, scale)
    corners = [(7 * i, 7 * j) for i in range(rows) for j in range(cols)]
    inputs = np.stack([network_input[r : r + 12, c : c + 12] for r, c in corners])
    labels = np.stack([label[r : r + 12, c : c + 12] for r, c in corners]) / 255.0
    return inputs.astype(np.float32), labels.astype(np.float32)


def test_every_patch_is_the_protocol_degradation_of_its_crop():
    """Each patch of each scale and down-size factor, in plan order, with a stride unlike the patch size."""
    image = smooth_image(50, 62, seed=4)
    stacks = image_patches(image, STRIDED)
    for factor, scale in PLAN:  # the plan order: factors, then scales
        got_scale, inputs, labels = next(stacks)
        want_inputs, want_labels = expected_patches(image, factor, scale)
        assert got_scale == scale and inputs.shape == want_inputs.shape, (factor, scale)
        assert np.array_equal(labels, want_labels), (factor, scale)
        assert np.array_equal(inputs, want_inputs), (factor, scale)
    assert next(stacks, None) is None
    counts = {key: rows * cols for key, (_, (rows, cols)) in PLAN.items()}
    assert planned_counts(50, 62, STRIDED) == counts


def test_prepare_stores_the_patches_in_plan_order(tmp_path, monkeypatch):
    """The written set holds exactly image_patches' stacks (as float16), image by image, with their scales,
    counts and sources; unusable files are listed as skipped with the reason.

    The pool runs in threads here, so that coverage and mutation tools see the work of its workers
    (the process pool itself is exercised by the other tests).
    """
    monkeypatch.setattr(prepare_module, "ProcessPoolExecutor", ThreadPoolExecutor)
    folder = tmp_path / "in"
    folder.mkdir()
    images = {"a_gray.png": smooth_image(30, 26, channels=1, seed=5), "b_rgb.png": smooth_image(50, 62, seed=4)}
    for name, image in images.items():
        Image.fromarray(image).save(folder / name)
    Image.fromarray(images["b_rgb.png"][:11, :11]).save(folder / "c_small.png")  # less than one patch
    (folder / "d_corrupt.png").write_bytes(b"not a png")
    config = STRIDED.model_copy(update={"skip_corrupt": True})
    manifest = prepare([folder], tmp_path / "patches", config, progress=False)

    stacks = [stack for image in images.values() for stack in image_patches(image, config)]
    want_inputs = np.concatenate([inputs for _, inputs, _ in stacks]).astype(np.float16)
    want_labels = np.concatenate([labels for _, _, labels in stacks]).astype(np.float16)
    want_scales = np.concatenate([np.full(len(inputs), scale) for scale, inputs, _ in stacks])
    assert np.array_equal(np.load(tmp_path / "patches" / "inputs.npy"), want_inputs)
    assert np.array_equal(np.load(tmp_path / "patches" / "labels.npy"), want_labels)
    assert np.array_equal(np.load(tmp_path / "patches" / "scales.npy"), want_scales)
    assert manifest["count"] == len(want_scales) and manifest["patch_size"] == 12
    assert manifest["counts_per_scale"] == {str(s): int((want_scales == s).sum()) for s in (2, 3, 4)}
    assert manifest["settings"]["stride"] == 7
    assert manifest["sources"] == [
        {
            "path": str(folder / name),
            "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest(),
            "shape": list(image.shape),
            "mode": "gray" if image.ndim == 2 else "rgb",
        }
        for name, image in images.items()
    ]
    corrupt, small = manifest["skipped"]
    assert corrupt["path"] == str(folder / "d_corrupt.png") and "d_corrupt.png: cannot decode" in corrupt["reason"]
    assert small == {"path": str(folder / "c_small.png"), "reason": "smaller than one 12px patch"}


def test_scales_too_large_for_an_image_yield_nothing_and_the_others_still_do():
    """Scales in any order: a scale whose crop is shorter than a patch on one axis is skipped, the next
    one is not. 14x40 at patch 13: x4 crops to 12x40 (no row fits), x2 keeps 14x40 (1 x 3 patches)."""
    config = PrepareConfig(patch_size=13, stride=13, scales=(4, 2), downsize_factors=(1.0,))
    image = smooth_image(14, 40, seed=6)
    assert [(scale, len(inputs)) for scale, inputs, _ in image_patches(image, config)] == [(2, 3)]
    assert planned_counts(14, 40, config) == {(1.0, 4): 0, (1.0, 2): 3}


def test_edge_cases_of_the_grid_and_of_the_set(tmp_path, monkeypatch):
    """A side equal to the patch holds one patch; a set of one patch is a set; a scale without patches
    counts 0; the arrays have their documented dtypes; the progress bars name their phase."""
    config = PrepareConfig(patch_size=12, stride=6, scales=(2, 5), downsize_factors=(1.0,))
    # x2: 12 x 18, one row and (18 - 12) / 6 + 1 = 2 columns; x5: cropped to 10 x 15, nothing
    assert planned_counts(12, 18, config) == {(1.0, 2): 1 * 2, (1.0, 5): 0}
    monkeypatch.setattr(prepare_module, "ProcessPoolExecutor", ThreadPoolExecutor)
    (tmp_path / "in").mkdir()
    Image.fromarray(smooth_image(12, 12, seed=7)).save(tmp_path / "in" / "one.png")
    manifest = prepare([tmp_path / "in"], tmp_path / "patches", config)  # progress shown by default
    assert manifest["count"] == 1 and manifest["counts_per_scale"] == {"2": 1, "5": 0}
    assert manifest["dtype"] == "float16" and manifest["settings"] == json.loads(config.model_dump_json())
    assert np.load(tmp_path / "patches" / "scales.npy").dtype == np.uint8
    assert np.load(tmp_path / "patches" / "inputs.npy").dtype == np.float16


def test_progress_bars_name_each_phase(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_module, "ProcessPoolExecutor", ThreadPoolExecutor)
    (tmp_path / "in").mkdir()
    Image.fromarray(smooth_image(24, 24, seed=8)).save(tmp_path / "in" / "a.png")
    config = PrepareConfig(patch_size=12, stride=12, scales=(2,), downsize_factors=(1.0,))
    prepare([tmp_path / "in"], tmp_path / "quiet", config, progress=False)
    assert capsys.readouterr().err == ""
    prepare([tmp_path / "in"], tmp_path / "patches", config)
    bars = capsys.readouterr().err.replace("\r", "\n")
    assert "inspect: 100%" in bars and "1/1" in bars
    assert "prepare: 100%" in bars and "4/4" in bars and ("patch/s" in bars or "s/patch" in bars)


def test_arguments_and_empty_sets_are_refused_with_a_reason(tmp_path):
    (tmp_path / "in").mkdir()
    Image.fromarray(smooth_image(8, 8, seed=9)).save(tmp_path / "in" / "small.png")
    with pytest.raises(ValueError, match="^workers must be >= 1, got 0$"):
        prepare([tmp_path / "in"], tmp_path / "out", CONFIG, workers=0, progress=False)
    with pytest.raises(
        ValueError, match=rf"^no patches of 21px could be cut from 1 images in \[{str(tmp_path / 'in')!r}"
    ):
        prepare([str(tmp_path / "in")], tmp_path / "out", CONFIG, progress=False)
    assert not (tmp_path / "out").exists()


def test_corrupt_image_stops_with_its_name_and_writes_nothing(image_folder, tmp_path):
    (image_folder / "zz_corrupt.png").write_bytes(b"garbage")
    out = tmp_path / "patches"
    with pytest.raises(ImageReadError, match="zz_corrupt.png"):
        prepare([image_folder], out, CONFIG, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".patches.*"))

    manifest = prepare(
        [image_folder], out, PrepareConfig(**{**CONFIG.model_dump(), "skip_corrupt": True}), progress=False
    )
    assert [entry["path"] for entry in manifest["skipped"]] == [str(image_folder / "zz_corrupt.png")]
    assert len(manifest["sources"]) == 3


def test_config_validation():
    with pytest.raises(ValueError, match="scale"):
        PrepareConfig(scales=(1,))
    with pytest.raises(ValueError, match="downsize_factors"):
        PrepareConfig(downsize_factors=(1.5,))
