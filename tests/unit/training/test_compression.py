"""asymsr compress as a library: steps, records, resume, and the distillation objective."""

import pytest
import torch

from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
from asymsr.nn.models import build, pair_kernel
from asymsr.schema.params import CompressConfig, DistillLoss
from asymsr.schema.records import CompressionRecord, TrainingHistory
from asymsr.training.compression import Job, compress
from asymsr.training.distill import Distillation
from asymsr.training.refit import refit


def teacher(seed: int = 0):
    torch.manual_seed(seed)
    return build("vdsr", depth=5, channels=16).eval()


def job(patch_folder, out, **settings) -> Job:
    finetune = {"device": "cpu", "batch_size": 4, "steps_per_epoch": 2, "val_crop": 48, "val_scales": [2]}
    values = {"rank": 4, "refit_patches": 8, "steps": 4, "finetune": finetune, **settings}
    return Job(
        teacher(), "teacher.pt", "0" * 64, CompressConfig.model_validate(values), patch_folder, out, progress=False
    )


def test_steps_zero_writes_the_closed_form_and_its_record(patch_folder, image_folder, tmp_path):
    work = job(patch_folder, tmp_path / "c", steps=0)
    work.val = image_folder
    record = compress(work)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "c" / "model.pt"))
    assert model.block == "asymmetric" and model.rank == 4 and model.config()["rank"] == 4
    assert record == CompressionRecord.read(tmp_path / "c" / "compression.json") and record.finished
    assert [step.name for step in record.history] == ["teacher", "bicubic", "closed_form", "refit"]
    assert record.parameters == 16 * 18 + 3 * 6 * 16 * 4 and record.teacher_parameters == 16 * 18 + 3 * 9 * 256
    assert len(record.layers) == 3 and all(0 < layer.energy_kept <= 1 for layer in record.layers)
    assert all(step.val_psnr is not None and step.teacher_mse is not None for step in record.history)
    assert record.history[0].teacher_mse == 0.0
    refit_step, closed = record.history[3], record.history[2]
    assert refit_step.kept == (refit_step.teacher_mse < closed.teacher_mse)
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt")["epoch"] == 0  # the outputs of any compress run
    assert TrainingHistory.read(tmp_path / "c" / "history.json").epochs == []


def test_without_refit_the_closed_form_is_the_model(patch_folder, tmp_path):
    record = compress(job(patch_folder, tmp_path / "c", steps=0, refit=False))
    assert [step.name for step in record.history] == ["teacher", "bicubic", "closed_form"]
    from asymsr.nn.factorize import closed_form

    expected, _ = closed_form(teacher(), 4)
    saved = load_checkpoint(tmp_path / "c" / "model.pt")["model"]
    assert all(torch.equal(saved[key], value) for key, value in expected.state_dict().items())


def test_refit_solves_each_layer_on_the_data():
    """On its own sample, the refit brings the output closer to the teacher's, moving only the 1x3 factors."""
    from asymsr.nn.factorize import closed_form, convs

    big = teacher(1)
    student, _ = closed_form(big, 2)
    inputs = torch.rand(6, 1, 17, 17)
    refitted = refit(student, big, inputs)
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss
        assert mse(refitted(inputs), big(inputs)) < mse(student(inputs), big(inputs))
        # the first factors are kept, only the second ones move
        assert torch.equal(convs(refitted)[1].weight, convs(student)[1].weight)
        assert not torch.equal(convs(refitted)[2].weight, convs(student)[2].weight)


def test_fine_tuning_that_moves_away_from_the_teacher_is_not_kept(patch_folder, tmp_path):
    """Like the refit, the distillation must earn its place: a wild lr makes it worse, so model.pt is the start."""
    finetune = {"device": "cpu", "batch_size": 4, "steps_per_epoch": 2, "lr": 0.5, "clip_mode": "none"}
    record = compress(job(patch_folder, tmp_path / "c", finetune=finetune))
    distilled = record.history[-1]
    assert distilled.name == "distilled" and not distilled.kept
    model = load_checkpoint(tmp_path / "c" / "model.pt")["model"]
    start = load_checkpoint(tmp_path / "c" / "start.pt")["model"]
    assert all(torch.equal(model[key], start[key]) for key in start)
    trained = load_checkpoint(tmp_path / "c" / "checkpoint.pt")["model"]  # the fine-tuned state stays resumable
    assert not all(torch.equal(trained[key], start[key]) for key in start)


def test_resume_after_a_kill_gives_bit_identical_weights(patch_folder, tmp_path):
    straight = compress(job(patch_folder, tmp_path / "straight"))

    class Killed(Exception):
        pass

    def kill(record):
        if record.epoch == 1:
            raise Killed

    interrupted = job(patch_folder, tmp_path / "resumed")
    interrupted.on_epoch_end = kill
    with pytest.raises(Killed):
        compress(interrupted)
    assert not CompressionRecord.read(tmp_path / "resumed" / "compression.json").finished
    resumed = compress(job(patch_folder, tmp_path / "resumed"), resume=True)
    weights = [load_checkpoint(tmp_path / name / "model.pt")["model"] for name in ("straight", "resumed")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert resumed.finished and [s.name for s in resumed.history] == [s.name for s in straight.history]
    assert len(TrainingHistory.read(tmp_path / "resumed" / "history.json").epochs) == 2


def test_resume_refuses_another_objective_teacher_or_rank_and_a_missing_run(patch_folder, tmp_path):
    compress(job(patch_folder, tmp_path / "c"))
    with pytest.raises(ValueError, match="another objective"):
        compress(job(patch_folder, tmp_path / "c", loss={"teacher": 1.0, "label": 0.5}), resume=True)
    with pytest.raises(ValueError, match="at rank 4; given teacher 000000000000 at rank 2"):
        compress(job(patch_folder, tmp_path / "c", rank=2), resume=True)
    other = job(patch_folder, tmp_path / "c")
    other.sha256 = "f" * 64
    with pytest.raises(ValueError, match="given teacher ffffffffffff"):
        compress(other, resume=True)
    with pytest.raises(
        FileNotFoundError, match="has no checkpoint.pt and no compression.json and no start.pt to resume from"
    ):
        compress(job(patch_folder, tmp_path / "never"), resume=True)
    assert not (tmp_path / "never").exists()


def test_finetune_may_not_set_what_compress_owns():
    with pytest.raises(ValueError, match="\\['loss', 'loss_reduction'\\] are set by compress"):
        CompressConfig(finetune={"loss": "l1", "loss_reduction": "sum"})


def test_a_dead_layer_does_not_break_the_refit():
    """All-zero activations make the normal equations zero; the ridge floor keeps the solve defined."""
    from asymsr.nn.factorize import closed_form, convs

    big = teacher(5)
    with torch.no_grad():
        convs(big)[0].weight.fill_(-1.0)  # ReLU of a negative first layer on inputs >= 0: all zero
    for sweeps in (0, 2):
        refitted = refit(closed_form(big, 4)[0], big, torch.rand(3, 1, 11, 11), sweeps=sweeps)
        assert all(torch.isfinite(conv.weight).all() for conv in convs(refitted))


@pytest.mark.parametrize(
    "weights", [{"teacher": 1.0}, {"teacher": 0.0, "label": 1.0}, {"teacher": 0.5, "feature": 2.0}]
)
def test_distillation_loss_is_the_weighted_sum(weights):
    big, student = teacher(2), build("asym_vdsr", depth=5, channels=16, rank=4)
    loss = DistillLoss(**weights)
    objective = Distillation(torch.nn.MSELoss(), big, student, loss)
    inputs, labels = torch.rand(2, 1, 9, 9), torch.rand(2, 1, 9, 9)
    got = objective(student, inputs, labels)
    mse = torch.nn.functional.mse_loss
    features = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: features.append(o))
        for m in student.body
        if isinstance(m, torch.nn.ReLU)
    ]
    hooks += [
        m.register_forward_hook(lambda _m, _i, o: features.append(o)) for m in big.body if isinstance(m, torch.nn.ReLU)
    ]
    with torch.no_grad():
        output, target = student(inputs), big(inputs)
    for hook in hooks:
        hook.remove()
    half = len(features) // 2
    feature = torch.stack([mse(s, t) for s, t in zip(features[:half], features[half:], strict=True)]).mean()
    expected = loss.teacher * mse(output, target) + loss.label * mse(output, labels) + loss.feature * feature
    assert torch.allclose(got, expected, rtol=1e-5)
    expected_key = {"kind": "distillation", **loss.model_dump()}
    del expected_key["teacher_views"]  # one view: the key of checkpoints made before the option
    assert objective.key() == expected_key
    with torch.no_grad():  # a pass outside a step (validation) is not recorded
        student(inputs)
    assert objective.student_blocks is None or objective.student_blocks.outputs == []


def test_with_teacher_views_the_target_is_the_flip_mean_in_loss_and_judge(patch_folder, tmp_path):
    big, student = teacher(2), build("asym_vdsr", depth=5, channels=16, rank=4)
    loss = DistillLoss(teacher=1.0, teacher_views=2)
    objective = Distillation(torch.nn.MSELoss(), big, student, loss)
    inputs, labels = torch.rand(2, 1, 9, 11), torch.rand(2, 1, 9, 11)
    got = objective(student, inputs, labels)
    with torch.no_grad():
        output, target = student(inputs), (big(inputs) + big(inputs.flip(3)).flip(3)) / 2
        assert not torch.allclose(target, big(inputs), atol=1e-4)  # a random teacher is not flip-symmetric
    assert torch.allclose(got, torch.nn.functional.mse_loss(output, target), rtol=1e-5)
    assert objective.key()["teacher_views"] == 2  # a resume may not change the target
    record = compress(job(patch_folder, tmp_path / "c", steps=0, loss={"teacher": 1.0, "teacher_views": 2}))
    plain = compress(job(patch_folder, tmp_path / "d", steps=0))
    assert record.history[0].name == "teacher" and record.history[0].teacher_mse > 0  # judged on the mean
    assert plain.history[0].teacher_mse == 0.0 and record.loss["teacher_views"] == 2
    with pytest.raises(ValueError, match="feature > 0 needs teacher_views 1"):
        DistillLoss(feature=1.0, teacher_views=4)
    with pytest.raises(ValueError, match="teacher_views"):
        DistillLoss(teacher_views=3)


def test_candidate_runs_are_distinct_and_exclude_the_reference():
    from asymsr.schema.params import RegisterConfig

    assert RegisterConfig().runs() == ["asym_vdsr"]
    assert RegisterConfig(candidate_runs=["asym_vdsr", "asym_vdsr_compressed"]).runs()[1] == "asym_vdsr_compressed"
    for runs in (["asym_vdsr", "asym_vdsr"], ["vdsr", "asym_vdsr"]):
        with pytest.raises(ValueError, match="each run once, and not the reference 'vdsr'"):
            RegisterConfig(candidate_runs=runs)


def test_a_distillation_loss_needs_some_weight():
    with pytest.raises(ValueError, match="at least one of teacher, label, feature"):
        DistillLoss(teacher=0.0)


def test_finetune_config_splits_the_steps_into_epochs():
    config = CompressConfig(steps=2000, finetune={"steps_per_epoch": 250, "lr": 3e-4}).finetune_config()
    assert (config.epochs, config.steps_per_epoch, config.lr, config.optimizer) == (8, 250, 3e-4, "adam")
    assert config.arch == "asym_vdsr" and config.arch_overrides == {"channels": 64, "depth": 20, "rank": 64}
    short = CompressConfig(steps=30).finetune_config()
    assert (short.epochs, short.steps_per_epoch) == (1, 30)
    assert CompressConfig(steps=0).finetune_config().epochs == 0
    assert CompressConfig(steps=250, finetune={"steps_per_epoch": 100}).finetune_config().epochs == 3


def test_scale_weights_follow_the_teachers_error_and_average_to_one():
    from asymsr.training.distill import scale_weights

    errors, counts = {2: 1.0, 3: 2.0, 4: 4.0}, {2: 10, 3: 30, 4: 60}
    assert scale_weights(errors, counts, 0.0) == {2: 1.0, 3: 1.0, 4: 1.0}
    full = scale_weights(errors, counts, 1.0)
    assert full[2] / full[4] == pytest.approx(4.0) and full[3] / full[4] == pytest.approx(2.0)
    assert sum(full[s] * counts[s] for s in counts) / sum(counts.values()) == pytest.approx(1.0)
    half = scale_weights(errors, counts, 0.5)
    assert half[2] / half[4] == pytest.approx(2.0)


def test_per_scale_distillation_weighs_each_patch_by_its_scale():
    big, student = teacher(2), build("asym_vdsr", depth=5, channels=16, rank=4)
    loss = DistillLoss(teacher=1.0, label=0.5, scale_balance=1.0)
    per_scale = {2: 3.0, 4: 0.5}
    objective = Distillation(torch.nn.MSELoss(), big, student, loss, per_scale)
    inputs, labels, scales = torch.rand(3, 1, 9, 9), torch.rand(3, 1, 9, 9), torch.tensor([2, 4, 2])
    got = objective(student, inputs, labels, scales)
    with torch.no_grad():
        output, target = student(inputs), big(inputs)
    weights = torch.tensor([3.0, 0.5, 3.0])

    def weighted(a, b):
        return (weights * ((a - b) ** 2).mean(dim=(1, 2, 3))).mean()

    assert torch.allclose(got, weighted(output, target) + 0.5 * weighted(output, labels), rtol=1e-5)
    assert objective.key()["per_scale"] == {"2": 3.0, "4": 0.5}
    with pytest.raises(ValueError, match="need each patch's scale"):
        objective(student, inputs, labels)


def test_scale_balance_weighs_the_loss_and_the_judge_alike(patch_folder, tmp_path):
    """With scale_balance 1, each scale's weight is the inverse of the teacher's error there on the
    refit's patches, and the keep rule judges the held-out patches with the same weights."""
    import numpy as np

    from asymsr.training.compression import _draw

    work = job(patch_folder, tmp_path / "c", steps=2, refit_patches=24, loss={"teacher": 1.0, "scale_balance": 1.0})
    weights = work.per_scale
    scales = np.load(patch_folder / "scales.npy")
    assert weights is not None and sorted(weights) == sorted(set(scales.tolist()))
    assert sum(weights[int(s)] for s in scales) / len(scales) == pytest.approx(1.0)
    chosen = _draw(work, 0)
    inputs = torch.from_numpy(np.load(patch_folder / "inputs.npy")[chosen].astype(np.float32))[:, None]
    labels = torch.from_numpy(np.load(patch_folder / "labels.npy")[chosen].astype(np.float32))[:, None]
    with torch.no_grad():
        errors = ((teacher()(inputs) - labels) ** 2).mean(dim=(1, 2, 3))
    error = {s: float(errors[torch.from_numpy(scales[chosen] == s)].mean()) for s in weights}
    assert weights[2] / weights[4] == pytest.approx(error[4] / error[2], rel=1e-4)
    held_out = scales[_draw(work, 1)]
    assert work.judge.weights.tolist() == pytest.approx([weights[int(s)] for s in held_out])
    record = compress(work)
    assert record.history[-1].name == "distilled" and record.loss["scale_balance"] == 1.0
    assert record.scale_weights == {str(s): w for s, w in weights.items()}
    assert job(patch_folder, tmp_path / "d").per_scale is None


def _pair_loss(first, second, x, wanted) -> float:
    with torch.no_grad():
        return float((second(first(x)) - wanted).square().sum())


def _one_layer(seed: int, channels: int = 6, rank: int = 2):
    """A 3x3 layer, its closed-form pair of rank ``rank``, inputs, and the layer's output."""
    from asymsr.nn.factorize import factorize

    torch.manual_seed(seed)
    layer = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    first = torch.nn.Conv2d(channels, rank, (3, 1), padding=(1, 0), bias=False)
    second = torch.nn.Conv2d(rank, channels, (1, 3), padding=(0, 1), bias=False)
    w1, w2, _ = factorize(layer.weight.detach(), rank)
    with torch.no_grad():
        first.weight.copy_(w1)
        second.weight.copy_(w2)
        x = torch.relu(torch.randn(5, channels, 9, 11))
        return first, second, x, layer(x)


def test_alternating_sweeps_never_raise_the_layers_loss():
    """Each sweep solves W1, then W2, exactly: the layer's loss goes down and never up, from the 1x3-only fit."""
    import copy

    from asymsr.training.refit import _fit_pair

    first, second, x, wanted = _one_layer(0)
    losses = []
    for sweeps in (0, 1, 2, 4):
        f, s = copy.deepcopy(first), copy.deepcopy(second)
        with torch.no_grad():
            _fit_pair(f, s, x, wanted, sweeps)
        losses.append(_pair_loss(f, s, x, wanted))
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in zip(losses, losses[1:], strict=False))
    assert losses[1] < 0.99 * losses[0]  # re-solving the 3x1 factor is worth something on this random layer


def test_the_3x1_solve_is_the_least_squares_solution():
    """At the conjugate-gradient answer, the loss's gradient in W1 is ~0 (against its size at the start)."""
    from asymsr.training.refit import _moments, _w1_given_w2

    first, second, x, wanted = _one_layer(1)

    def gradient() -> float:
        weight = first.weight.detach().double().requires_grad_(True)
        middle = torch.nn.functional.conv2d(x.double(), weight, padding=(1, 0))
        output = torch.nn.functional.conv2d(middle, second.weight.detach().double(), padding=(0, 1))
        (grad,) = torch.autograd.grad((output - wanted.double()).square().sum(), weight)
        return float(grad.norm())

    at_start = gradient()
    with torch.no_grad():
        first.weight.copy_(_w1_given_w2(second.weight, first.weight, _moments(x, wanted, (3, 3))))
    assert gradient() < 1e-3 * at_start


def test_alternation_recovers_a_pair_from_a_poor_start():
    """A target that a rank-r pair produces exactly is reproduced from a random 3x1 start."""
    from asymsr.training.refit import _fit_pair

    torch.manual_seed(2)
    channels, rank = 5, 2
    true_first = torch.nn.Conv2d(channels, rank, (3, 1), padding=(1, 0), bias=False)
    true_second = torch.nn.Conv2d(rank, channels, (1, 3), padding=(0, 1), bias=False)
    first = torch.nn.Conv2d(channels, rank, (3, 1), padding=(1, 0), bias=False)
    second = torch.nn.Conv2d(rank, channels, (1, 3), padding=(0, 1), bias=False)
    with torch.no_grad():
        x = torch.relu(torch.randn(4, channels, 10, 10))
        wanted = true_second(true_first(x))
        _fit_pair(first, second, x, wanted, 30)
    assert _pair_loss(first, second, x, wanted) < 1e-6 * float(wanted.square().sum())


def test_balancing_the_factors_keeps_their_product():
    from asymsr.training.refit import _balance

    first, second, x, _ = _one_layer(3)
    with torch.no_grad():
        first.weight.mul_(torch.tensor([10.0, 0.1])[:, None, None, None])
        before = second(first(x))
        _balance(first.weight, second.weight)
        after = second(first(x))
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-5)
    norms_1 = first.weight.flatten(1).norm(dim=1)
    norms_2 = second.weight.transpose(0, 1).flatten(1).norm(dim=1)
    assert torch.allclose(norms_1, norms_2, rtol=1e-5)


def test_refit_with_sweeps_moves_both_factors_and_beats_the_1x3_refit():
    from asymsr.nn.factorize import closed_form, convs

    big = teacher(1)
    student, _ = closed_form(big, 2)
    inputs = torch.rand(6, 1, 17, 17)
    one_sided, both = refit(student, big, inputs), refit(student, big, inputs, sweeps=3)
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss
        assert mse(both(inputs), big(inputs)) < mse(one_sided(inputs), big(inputs))
        # the 3x1 factor moved as a function, not only by the rebalancing: the pair's product differs
        product = pair_kernel(convs(both)[1].weight, convs(both)[2].weight)
        one = pair_kernel(convs(one_sided)[1].weight, convs(one_sided)[2].weight)
        assert not torch.allclose(product, one, atol=1e-4)


def test_the_1x3_solve_from_3x3_moments_equals_the_direct_one():
    """The sweeps' W2 solve (3x3 moments projected through W1) is the sweeps=0 solve (the 3x1 output's windows)."""
    from asymsr.training.refit import _moments, _solve_w2, _w2_given_w1

    first, _, x, wanted = _one_layer(4)
    with torch.no_grad():
        direct = _solve_w2(*_moments(first(x), wanted, (1, 3)), first.weight.shape[0])
        projected = _w2_given_w1(first.weight, _moments(x, wanted, (3, 3)))
    assert torch.allclose(projected, direct, atol=1e-5, rtol=1e-4)
