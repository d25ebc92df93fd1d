"""The promotion gate as a pure rule (no store): every branch, in order, and every boundary.

The boundary figures are dyadic fractions (multiples of 2**-10), so the PSNR drop the gate
computes by subtraction is exact: "on the threshold" really is on it, and "just past" is past
it by 2**-10 dB, far less than any plausible slack a bug could add.
"""

from __future__ import annotations

import pytest

from asymsr.mlops.promotion import Figures, decide

STEP = 2.0**-10  # dB: the smallest margin used below, exact in binary floating point


def figures(mean_psnr: float, params: int = 443_520, model_bytes: int = 1_785_713, version: str | None = None):
    return Figures(mean_psnr=mean_psnr, params=params, model_bytes=model_bytes, version=version)


REFERENCE = figures(30.0, 664_704, 2_665_255)


def test_gate_rules_in_order() -> None:
    """Each rule, when it alone fails, is the one named as the reason; a pass of all three promotes."""
    assert decide(figures(29.85), REFERENCE, None, 0.2).promote
    quality = decide(figures(29.7), REFERENCE, None, 0.2)
    assert not quality.promote and quality.reason.startswith("quality")
    size = decide(figures(29.9, 664_704, 1_000), REFERENCE, None, 0.2)
    assert not size.promote and size.reason.startswith("size")
    champion = figures(29.9, version="3")
    progress = decide(figures(29.9), REFERENCE, champion, 0.2)
    assert not progress.promote and progress.reason.startswith("progress") and "version 3" in progress.reason
    assert decide(figures(29.95), REFERENCE, champion, 0.2).promote
    with pytest.raises(ValueError, match="max_psnr_drop"):
        decide(figures(29.0), REFERENCE, None, -0.1)


@pytest.mark.parametrize("max_drop", [0.0, 0.25, 0.5])
def test_a_drop_exactly_at_the_allowance_passes_and_one_step_more_fails(max_drop: float) -> None:
    """Rule (a) allows a drop of *at most* ``max_psnr_drop``: equal passes, 2**-10 dB more is rejected."""
    reference = figures(32.0, 664_704, 2_665_255)
    on_threshold = decide(figures(32.0 - max_drop), reference, None, max_drop)
    assert on_threshold.promote and on_threshold.label == "promoted"
    assert on_threshold.figures.psnr_drop_db == max_drop and on_threshold.figures.max_psnr_drop_db == max_drop
    past = decide(figures(32.0 - max_drop - STEP), reference, None, max_drop)
    assert not past.promote and past.label == "rejected" and past.reason.startswith("quality")
    assert past.figures.psnr_drop_db == max_drop + STEP


def test_a_candidate_better_than_the_reference_passes_the_quality_rule() -> None:
    """A negative drop (the candidate beats VDSR) passes, even with no allowance at all."""
    decision = decide(figures(30.0 + STEP), REFERENCE, None, 0.0)
    assert decision.promote and decision.figures.psnr_drop_db == -STEP
    assert f"{STEP:.3f} dB above the reference" in decision.reason


@pytest.mark.parametrize(
    ("params", "model_bytes", "promote"),
    [
        (664_704 - 1, 2_665_255 - 1, True),  # both strictly smaller
        (664_704, 2_665_255 - 1, False),  # equal parameters
        (664_704 + 1, 1_000, False),  # more parameters
        (443_520, 2_665_255, False),  # equal bytes: bytes alone must fail the rule
        (443_520, 2_665_255 + 1, False),  # more bytes
    ],
)
def test_size_rule_needs_fewer_parameters_and_fewer_bytes(params: int, model_bytes: int, promote: bool) -> None:
    """Rule (b) is strict on both counts, each on its own: a tie in either one rejects."""
    decision = decide(figures(30.0, params, model_bytes), REFERENCE, None, 0.0)
    assert decision.promote is promote
    if not promote:
        assert decision.reason.startswith("size") and f"{model_bytes:,} bytes" in decision.reason


def test_progress_rule_is_strict_at_the_champion() -> None:
    """Rule (c): equal to the champion's PSNR is rejected, 2**-10 dB above it is promoted."""
    champion = figures(29.75, version="7")
    tie = decide(figures(29.75), REFERENCE, champion, 0.25)
    assert not tie.promote and tie.reason.startswith("progress") and "version 7" in tie.reason
    above = decide(figures(29.75 + STEP), REFERENCE, champion, 0.25)
    assert above.promote and above.reason.startswith("beats champion version 7")
    assert above.figures.champion == champion


def test_rules_are_applied_in_order() -> None:
    """A candidate that fails quality and size is rejected for quality; size is checked before progress."""
    both = decide(figures(29.0, 664_704, 2_665_255), REFERENCE, None, 0.25)
    assert both.reason.startswith("quality")
    size_and_progress = decide(figures(29.5, 664_704, 1_000), REFERENCE, figures(29.9, version="1"), 0.5)
    assert size_and_progress.reason.startswith("size")
    first = decide(figures(29.9), REFERENCE, None, 0.25)
    assert first.promote and first.reason.startswith("no champion yet")


def test_reasons_state_the_figures_compared() -> None:
    """A reason names the drop (below or above the reference), the allowance and both sizes."""
    equal = decide(figures(30.0), REFERENCE, None, 0.25)
    assert ", 0.000 dB below the reference (allowed drop 0.25 dB)" in equal.reason
    better = decide(figures(30.5), REFERENCE, figures(30.25, version="2"), 0.25)
    assert ", 0.500 dB above the reference" in better.reason and "(30.250 dB)" in better.reason
    assert "443,520 < 664,704 parameters, 1,785,713 < 2,665,255 bytes" in better.reason
    worse = decide(figures(29.5), REFERENCE, None, 0.25)
    assert "29.500 dB is 0.500 dB below the reference's 30.000 dB (allowed drop 0.25 dB)" in worse.reason
