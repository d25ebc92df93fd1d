"""Checkpoints are data: what does not describe one finite network is refused with one line."""

from __future__ import annotations

import pytest
import torch

from asymsr.nn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, model_payload, save_checkpoint
from asymsr.nn.models import build


def test_a_label_that_disagrees_with_the_network_is_refused() -> None:
    payload = model_payload("asym_vdsr", build("asym_vdsr", depth=4, channels=16))
    payload["arch"] = "vdsr"
    with pytest.raises(CheckpointError, match=r"m.pt: labelled 'vdsr' but its arch_config builds 'asymmetric'"):
        model_from_checkpoint(payload, "m.pt")


def test_an_unknown_arch_config_key_or_misfit_weights_are_one_line() -> None:
    payload = model_payload("vdsr", build("vdsr", depth=4, channels=8))
    payload["arch_config"] = {**payload["arch_config"], "colour": 3}
    with pytest.raises(CheckpointError, match=r"m.pt: arch_config .* is not a VDSR: .*'colour'"):
        model_from_checkpoint(payload, "m.pt")
    payload = model_payload("vdsr", build("vdsr", depth=4, channels=8))
    payload["arch_config"] = {**payload["arch_config"], "channels": 16}
    with pytest.raises(CheckpointError, match=r"m.pt: weights do not fit 'vdsr'") as error:
        model_from_checkpoint(payload, "m.pt")
    assert "\n" not in str(error.value)


def test_non_finite_or_non_tensor_weights_are_refused_on_load(tmp_path) -> None:
    payload = model_payload("vdsr", build("vdsr", depth=4, channels=8))
    payload["model"]["body.0.weight"][0, 0, 0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", payload)
    with pytest.raises(CheckpointError, match=r"nan.pt: weight 'body.0.weight' holds NaN or Inf"):
        load_checkpoint(tmp_path / "nan.pt")
    payload["model"]["body.0.weight"] = [1.0, 2.0]
    torch.save(payload, tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list.pt: weight 'body.0.weight' is a list, not a tensor"):
        load_checkpoint(tmp_path / "list.pt")


def test_a_config_too_large_to_build_is_refused_before_building() -> None:
    payload = model_payload("vdsr", build("vdsr", depth=4, channels=8))
    for config in ({"depth": 10**7}, {"channels": 10**6}, {"channels": "64"}):
        payload["arch_config"] = {**model_payload("vdsr", build("vdsr", depth=4, channels=8))["arch_config"], **config}
        with pytest.raises(CheckpointError, match=r"m.pt: arch_config .* exceed what a VDSR can be here"):
            model_from_checkpoint(payload, "m.pt")
    payload = model_payload("vdsr", build("vdsr", depth=4, channels=8))
    payload["arch"] = ["vdsr"]
    with pytest.raises(CheckpointError, match=r"m.pt: 'arch' must be a name"):
        model_from_checkpoint(payload, "m.pt")
