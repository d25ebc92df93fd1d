import subprocess

import pytest
import torch

from asymsr.data.builtin import SPLITS
from asymsr.data.sources import MANIFEST, fetch
from asymsr.eval.efficiency import checkpoint_bytes, macs_per_pixel, measure_latency
from asymsr.nn.models import build


def test_builtin_splits_are_disjoint_and_fetch_writes_a_checkable_manifest(tmp_path):
    names = [name for split in SPLITS.values() for name in split]
    assert len(names) == len(set(names))
    files = fetch("builtin:skimage/val", tmp_path / "val")
    assert sorted(f.name for f in files) == sorted(f"{n}.png" for n in SPLITS["val"])
    assert (tmp_path / "val" / MANIFEST).is_file()
    subprocess.run(["sha256sum", "-c", "--quiet", MANIFEST], cwd=tmp_path / "val", check=True)


def test_fetch_local_folder_and_errors(image_folder, tmp_path):
    files = fetch(str(image_folder), tmp_path / "copy")
    assert sorted(f.name for f in files) == ["a.png", "b.png", "c.png"]
    assert (tmp_path / "copy" / "a.png").read_bytes() == (image_folder / "a.png").read_bytes()
    with pytest.raises(ValueError, match="unsupported dataset source 'ftp://host/x'"):
        fetch("ftp://host/x", tmp_path / "s3")
    with pytest.raises(KeyError, match="unknown builtin split 'holdout'"):
        fetch("builtin:skimage/holdout", tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        fetch(str(tmp_path / "absent"), tmp_path / "bad")
    assert not (tmp_path / "s3").exists() and not (tmp_path / "bad").exists()


def test_efficiency_figures_are_counted_and_measured():
    vdsr, asym = build("vdsr").eval(), build("asym_vdsr").eval()
    assert macs_per_pixel(vdsr) == 664_704 and macs_per_pixel(asym, size=33) == 443_520
    assert checkpoint_bytes("asym_vdsr", asym) < checkpoint_bytes("vdsr", vdsr)
    assert checkpoint_bytes("vdsr", vdsr) == pytest.approx(664_704 * 4, rel=0.01)
    latency = measure_latency(asym, 24, 24, warmup=1, repeats=3)
    assert latency["latency_ms_min"] <= latency["latency_ms"] <= latency["latency_ms_max"]
    assert latency["device"] == "cpu" and latency["threads"] == torch.get_num_threads()
