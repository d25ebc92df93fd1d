import numpy as np
import pytest
import torch

from asymsr.patches import PatchBatches, PatchSetError, dihedral, epoch_plan, read_manifest


def test_epoch_plan_is_deterministic_and_varies_by_epoch():
    a_idx, a_t = epoch_plan(100, 8, seed=1, epoch=0)
    b_idx, b_t = epoch_plan(100, 8, seed=1, epoch=0)
    c_idx, _ = epoch_plan(100, 8, seed=1, epoch=1)
    assert torch.equal(a_idx, b_idx) and torch.equal(a_t, b_t)
    assert not torch.equal(a_idx, c_idx)
    assert a_idx.shape == (12, 8) and len(set(a_idx.flatten().tolist())) == 96
    assert epoch_plan(100, 8, 1, 0, steps=3)[0].shape == (3, 8)
    with pytest.raises(ValueError, match="exceeds"):
        epoch_plan(4, 8, 0, 0)


def test_dihedral_gives_the_eight_distinct_symmetries():
    patch = torch.arange(9.0).view(1, 3, 3)
    results = [dihedral(patch, torch.tensor([t]))[0] for t in range(8)]
    assert len({tuple(r.flatten().tolist()) for r in results}) == 8
    assert torch.equal(results[1], torch.rot90(patch[0], 1))
    assert torch.equal(results[4], patch[0].flip(-1))


def test_batches_pair_inputs_with_labels(patch_folder):
    manifest = read_manifest(patch_folder)
    indices, transforms = epoch_plan(manifest["count"], 4, seed=0, epoch=0, steps=2)
    batches = PatchBatches(patch_folder, indices, transforms)
    inputs, labels = batches[1]
    assert inputs.shape == labels.shape == (4, 1, 21, 21) and inputs.dtype == torch.float32
    stored = np.load(patch_folder / "labels.npy")[indices[1, 0].item()].astype(np.float32)
    expected = dihedral(torch.from_numpy(stored)[None], transforms[1, :1])[0]
    assert torch.equal(labels[0, 0], expected)


def test_missing_or_foreign_folders_are_rejected(tmp_path):
    with pytest.raises(PatchSetError, match="run `asymsr prepare` first"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(PatchSetError, match="unsupported patch format"):
        read_manifest(tmp_path)


def test_loader_workers_deliver_the_same_batches(patch_folder):
    indices, transforms = epoch_plan(read_manifest(patch_folder)["count"], 4, seed=3, epoch=2, steps=4)
    batches = PatchBatches(patch_folder, indices, transforms)
    direct = [batches[i] for i in range(len(batches))]
    loaded = list(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2))
    assert len(loaded) == 4
    for (a_in, a_label), (b_in, b_label) in zip(direct, loaded, strict=True):
        assert torch.equal(a_in, b_in) and torch.equal(a_label, b_label)
