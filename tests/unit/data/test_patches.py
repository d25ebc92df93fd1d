import pickle

import numpy as np
import pytest
import torch

from asymsr.data.patches import PatchBatches, PatchSetError, dihedral, epoch_plan, read_manifest


def test_epoch_plan_is_deterministic_and_varies_by_epoch():
    a_idx, a_t = epoch_plan(100, 8, seed=1, epoch=0)
    b_idx, b_t = epoch_plan(100, 8, seed=1, epoch=0)
    c_idx, _ = epoch_plan(100, 8, seed=1, epoch=1)
    assert torch.equal(a_idx, b_idx) and torch.equal(a_t, b_t)
    assert not torch.equal(a_idx, c_idx)
    assert a_idx.shape == (12, 8) and len(set(a_idx.flatten().tolist())) == 96
    assert epoch_plan(100, 8, 1, 0, steps=3)[0].shape == (3, 8)
    with pytest.raises(ValueError, match="^batch_size 8 exceeds the 4 patches available$"):
        epoch_plan(4, 8, 0, 0)
    assert sorted(epoch_plan(8, 8, 0, 0)[0].flatten().tolist()) == list(range(8))  # exactly one batch


def test_the_plan_is_drawn_from_the_documented_seed():
    """The seeding is part of the reproducibility contract (a change would alter every trained model):
    one generator seeded with seed * 1_000_003 + epoch draws the permutation, then the transforms."""
    for seed, epoch in [(0, 0), (1, 0), (0, 1), (3, 2)]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order, transforms = torch.randperm(50, generator=generator), torch.randint(0, 8, (50,), generator=generator)
        indices, plan_transforms = epoch_plan(50, 10, seed, epoch)
        assert torch.equal(indices.flatten(), order) and torch.equal(plan_transforms.flatten(), transforms)


def test_dihedral_gives_the_eight_distinct_symmetries():
    patch = torch.arange(9.0).view(1, 3, 3)
    results = [dihedral(patch, torch.tensor([t]))[0] for t in range(8)]
    assert len({tuple(r.flatten().tolist()) for r in results}) == 8
    assert torch.equal(results[1], torch.rot90(patch[0], 1))
    assert torch.equal(results[4], patch[0].flip(-1))


def transformed(patch: np.ndarray, t: int) -> np.ndarray:
    """The documented transform t in 0..7, in NumPy: mirrored left-right if t >= 4, then rotated t % 4 times."""
    return np.rot90(patch[:, ::-1] if t >= 4 else patch, t % 4)


def test_dihedral_matches_the_documented_transforms():
    """All 8 transforms of a batch holding every one, against the NumPy definition."""
    batch = torch.arange(8 * 3 * 3, dtype=torch.float32).view(8, 3, 3)
    transforms = torch.tensor([5, 0, 7, 2, 4, 1, 6, 3])
    result = dihedral(batch, transforms)
    for item, t in enumerate(transforms.tolist()):
        assert np.array_equal(result[item].numpy(), transformed(batch[item].numpy(), t)), t


def test_every_item_of_a_batch_is_its_stored_pair_under_one_transform(patch_folder):
    """Item b of step s is (inputs[i], labels[i], scales[i]) for i = indices[s, b], images under transforms[s, b]."""
    stored_inputs = np.load(patch_folder / "inputs.npy").astype(np.float32)
    stored_labels = np.load(patch_folder / "labels.npy").astype(np.float32)
    stored_scales = np.load(patch_folder / "scales.npy")
    indices, transforms = epoch_plan(len(stored_inputs), 8, seed=2, epoch=0, steps=4)
    assert len(set(transforms.flatten().tolist())) == 8  # the plan exercises every transform
    batches = PatchBatches(patch_folder, indices, transforms)
    for step in range(len(batches)):
        inputs, labels, scales = batches[step]
        assert inputs.shape == labels.shape == (8, 1, 21, 21) and inputs.dtype == labels.dtype == torch.float32
        assert scales.tolist() == stored_scales[indices[step].numpy()].tolist()
        for item, (index, t) in enumerate(zip(indices[step].tolist(), transforms[step].tolist(), strict=True)):
            assert np.array_equal(inputs[item, 0].numpy(), transformed(stored_inputs[index], t)), (step, item)
            assert np.array_equal(labels[item, 0].numpy(), transformed(stored_labels[index], t)), (step, item)


def test_missing_or_foreign_folders_are_rejected(tmp_path):
    with pytest.raises(PatchSetError, match="run `asymsr prepare` first"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(PatchSetError, match="unsupported patch format 'other' version None$"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "asymsr-patches", "format_version": 99}')
    with pytest.raises(PatchSetError, match="unsupported patch format 'asymsr-patches' version 99$"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "asymsr-patches", "format_version": 1}')
    (tmp_path / "inputs.npy").write_bytes(b"")
    with pytest.raises(PatchSetError, match="missing labels.npy$"):
        read_manifest(tmp_path)


def test_loader_workers_deliver_the_same_batches(patch_folder):
    indices, transforms = epoch_plan(read_manifest(patch_folder)["count"], 4, seed=3, epoch=2, steps=4)
    batches = PatchBatches(patch_folder, indices, transforms)
    direct = [batches[i] for i in range(len(batches))]
    loaded = list(torch.utils.data.DataLoader(batches, batch_size=None, num_workers=2))
    assert len(loaded) == 4
    for direct_batch, loaded_batch in zip(direct, loaded, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(direct_batch, loaded_batch, strict=True))


def test_a_pickled_loader_carries_no_array_data(patch_folder):
    """Sent to a worker, the dataset is a few bytes (the arrays are mapped again there) and yields the same."""
    indices, transforms = epoch_plan(read_manifest(patch_folder)["count"], 4, seed=0, epoch=0, steps=2)
    batches = PatchBatches(patch_folder, indices, transforms)
    first = batches[0]  # maps the arrays in this process
    data = pickle.dumps(batches)
    assert len(data) < 4_000 < (patch_folder / "inputs.npy").stat().st_size
    clone = pickle.loads(data)
    assert all(torch.equal(a, b) for a, b in zip(clone[0], first, strict=True))
