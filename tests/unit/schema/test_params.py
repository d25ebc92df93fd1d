from pathlib import Path

import pytest
import yaml

from asymsr.schema.params import ParamsError, load_params

REPO = Path(__file__).resolve().parents[3]


def write_params(tmp_path: Path, edit) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_committed_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.train in params.datasets
    assert params.train.config("asym_vdsr").arch == "asym_vdsr"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["train"]["common"].update(lr="fast"), r"train\.common\.lr: Input should be a valid number"),
        (lambda p: p["train"]["common"].update(lr=True), r"train\.common\.lr: Input should be a valid number"),
        (lambda p: p["train"]["common"].update(learning_rate=0.1), r"train\.common\.learning_rate: Extra inputs"),
        (lambda p: p["train"]["arch"]["vdsr"].update(clip_mode="norm", clip=0), r"train \(resolved for vdsr\): clip=0"),
        (lambda p: p["prepare"].update(patch_size="big"), r"prepare\.patch_size: Input should be a valid integer"),
        (lambda p: p["prepare"].update(patchsize=41), r"prepare\.patchsize: Extra inputs are not permitted"),
        (lambda p: p["prepare"].update(scales=[1]), r"prepare\.scales\.0: scale must be an integer >= 2"),
        (lambda p: p["train"]["arch"].update(srcnn={}), r"train\.arch\.srcnn\.\[key\]: unknown architecture"),
        (lambda p: p["data"].update(val="nowhere"), r"data\.val: 'nowhere' is not a key of datasets"),
        (lambda p: p["evaluate"].update(latency_size=2), r"evaluate\.latency_size: Input should be greater than"),
        (lambda p: p.pop("datasets"), r"datasets: Field required"),
        (lambda p: p.pop("train"), r"the train block is missing; declare it .*paper's defaults"),
        (lambda p: (p.pop("train"), p.pop("evaluate")), r"the train and evaluate blocks are missing"),
    ],
)
def test_schema_errors_name_the_key(tmp_path, edit, message):
    path = write_params(tmp_path, edit)
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def test_unreadable_params(tmp_path):
    with pytest.raises(ParamsError, match="parameters file not found"):
        load_params(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("datasets: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")


def test_params_yaml_is_the_quick_profile_and_profiles_switch(tmp_path):
    from asymsr.schema.params import activate_profile

    assert (REPO / "params.yaml").read_text() == (REPO / "profiles" / "quick.yaml").read_text()
    target = tmp_path / "params.yaml"
    activate_profile("paper", profiles=REPO / "profiles", target=target)
    assert target.read_text() == (REPO / "profiles" / "paper.yaml").read_text()
    paper = load_params(target)
    assert paper.data.test == ["Set5", "Set14", "B100", "Urban100"]
    assert paper.train.config("vdsr").epochs * paper.train.config("vdsr").steps_per_epoch * 64 == 640_000
    with pytest.raises(ParamsError, match=r"unknown profile 'huge'; known: \['paper', 'quick', 'transfer'\]"):
        activate_profile("huge", profiles=REPO / "profiles", target=target)


def test_resolved_profile_is_validated_before_anything_is_written(tmp_path):
    from asymsr.schema.params import resolve_profile

    out = tmp_path / "params.yaml"
    with pytest.raises(ParamsError, match="tune.trials"):
        resolve_profile("quick", {"tune": {"trials": 0}}, out, profiles=REPO / "profiles")
    assert not out.exists()
    params = resolve_profile("quick", {"tune": {"trials": 5}}, out, profiles=REPO / "profiles")
    assert params.tune.trials == 5 and load_params(out).tune.trials == 5


def test_transfer_profile_pins_the_published_teacher_and_compresses_it():
    transfer = load_params(REPO / "profiles" / "transfer.yaml")
    vdsr = transfer.train.config("vdsr")
    assert vdsr.epochs == 0 and vdsr.init is not None
    path, _, pin = vdsr.init.partition("#sha256=")
    assert path == "../shared/reference/vdsr_reference_x234.npz"
    assert pin == "610afbe725f0432d983297114fff114381569f0f886ff559db52f3d10f50d59c"  # ../shared/reference/README.md
    assert transfer.data.test == ["Set5", "Set14", "B100", "Urban100"]
    finetune = transfer.compress.finetune_config()
    assert transfer.compress.rank == 64
    assert finetune.epochs * finetune.steps_per_epoch == transfer.compress.steps  # whole epochs, no rounding up
    assert finetune.lr_step_epochs < finetune.epochs  # the reduced lr is reached within the budget
    assert transfer.compress.loss.scale_balance == 1.0 and transfer.compress.loss.teacher > 0
    assert transfer.registry.runs() == ["asym_vdsr", "asym_vdsr_compressed"]
