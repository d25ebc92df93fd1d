"""``benchmarks/compression.py variants``: each row is the config ``asymsr compress`` would run with
the profile and flags, then ``--set``, then the row's ``--vary`` value; bad settings name the key."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import yaml

from asymsr.stages import compress as compress_stage

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("compression_benchmark", REPO / "benchmarks" / "compression.py")
benchmark = importlib.util.module_from_spec(spec)
spec.loader.exec_module(benchmark)


def namespace(tmp_path: Path, **flags) -> argparse.Namespace:
    profile = yaml.safe_load((REPO / "params.yaml").read_text())
    profile["compress"]["teacher"] = "models/vdsr/model.pt"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(profile))
    values = {"params": tmp_path / "params.yaml", "teacher": None, "steps": None, "set": [], "vary": None}
    return argparse.Namespace(patches=tmp_path / "patches", out=tmp_path / "out", **{**values, **flags})


def test_rows_are_the_stage_config_then_set_then_vary(tmp_path):
    args = namespace(
        tmp_path,
        steps=7,
        set=[benchmark.setting("finetune.lr=2e-5"), benchmark.setting("loss.scale_balance=1")],
        vary=benchmark.vary("rank=32,48"),
    )
    rows = benchmark.variant_configs(args)
    stage = compress_stage.config_of(compress_stage.Args(params=args.params, steps=7, patches=Path("p"), out=Path("o")))
    assert [name for name, _ in rows] == ["rank=32", "rank=48"]
    for (_, config), rank in zip(rows, (32, 48), strict=True):
        assert config.rank == rank and config.steps == 7 and config.teacher == "models/vdsr/model.pt"
        assert config.finetune.lr == 2e-5 and isinstance(config.finetune.lr, float)  # 2e-5 read as a number
        assert config.loss.scale_balance == 1.0
        assert config.refit_patches == stage.refit_patches and config.finetune.batch_size == stage.finetune.batch_size
    assert stage.rank == 64 and stage.finetune.lr != 2e-5


def test_without_vary_one_row_named_after_the_profile_and_the_teacher_flag_wins(tmp_path):
    rows = benchmark.variant_configs(namespace(tmp_path, teacher="other.npz"))
    assert [(name, config.teacher) for name, config in rows] == [("quick", "other.npz")]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"vary": ("rank", [64, 64])}, "--vary rank: 64 gives the same settings as rank=64"),
        ({"vary": ("rank", [0])}, "rank=0: rank: Input should be greater than or equal to 1"),
        ({"set": [("loss.nope", 1)]}, "quick: loss.nope: Extra inputs are not permitted"),
    ],
)
def test_bad_settings_name_the_row_and_key(tmp_path, flags, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        benchmark.variant_configs(namespace(tmp_path, **flags))


def test_a_value_that_is_not_yaml_is_refused_by_argparse():
    with pytest.raises(argparse.ArgumentTypeError, match="'loss.teacher=\\[1': the value is not YAML"):
        benchmark.setting("loss.teacher=[1")
