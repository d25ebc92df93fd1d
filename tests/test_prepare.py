import json

import numpy as np
import pytest
from PIL import Image

from asymsr.fsutil import atomic_directory
from asymsr.images import ImageReadError
from asymsr.patches import read_manifest
from asymsr.prepare import PrepareConfig, image_patches, planned_counts, prepare
from asymsr.protocol import degrade, modcrop
from tests.conftest import smooth_image

CONFIG = PrepareConfig(patch_size=21, stride=21, scales=(2, 3, 4), downsize_factors=(1.0, 0.7), workers=1)


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


def test_first_patch_equals_the_protocol_degradation(image_folder):
    image = np.asarray(Image.open(image_folder / "a.png"))
    scale, inputs, labels = next(image_patches(image, CONFIG))
    assert scale == 2
    from asymsr.color import luminance

    hr = modcrop(luminance(image), 2)
    assert np.allclose(labels[0], hr[:21, :21] / 255.0)
    assert np.allclose(inputs[0], degrade(hr, 2)[:21, :21])


def test_corrupt_image_stops_with_its_name_and_writes_nothing(image_folder, tmp_path):
    (image_folder / "zz_corrupt.png").write_bytes(b"garbage")
    out = tmp_path / "patches"
    with pytest.raises(ImageReadError, match="zz_corrupt.png"):
        prepare([image_folder], out, CONFIG, progress=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".patches.*"))

    manifest = prepare([image_folder], out, PrepareConfig(**{**CONFIG.__dict__, "skip_corrupt": True}), progress=False)
    assert [entry["path"] for entry in manifest["skipped"]] == [str(image_folder / "zz_corrupt.png")]
    assert len(manifest["sources"]) == 3


def test_a_failed_rewrite_keeps_the_previous_output(tmp_path):
    out = tmp_path / "result"
    with atomic_directory(out) as staging:
        (staging / "file").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as staging:
            (staging / "file").write_text("half")
            raise RuntimeError("killed midway")
    assert (out / "file").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]


def test_config_validation():
    with pytest.raises(ValueError, match="scale"):
        PrepareConfig(scales=(1,))
    with pytest.raises(ValueError, match="downsize_factors"):
        PrepareConfig(downsize_factors=(1.5,))
