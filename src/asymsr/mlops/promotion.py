"""The quality gate that decides whether a new Asym_VDSR version becomes the champion.

A candidate is promoted only if all three hold:

(a) quality: its mean PSNR over the evaluation sets is at most ``max_psnr_drop`` dB below
    the reference (VDSR) trained and evaluated in the same pipeline run;
(b) size: it has fewer parameters and a smaller checkpoint than that reference;
(c) progress: it beats the current champion's mean PSNR on the same evaluation data
    (strictly), or there is no champion yet.

When the pipeline offers several candidate versions (trained from scratch, compressed from the
reference), :func:`best_candidate` picks the one with the best mean PSNR on the run's
evaluation data, and only that one is judged.

The rule is a pure function of the figures, so every branch is testable without a store.
"""

from __future__ import annotations

from collections.abc import Mapping

from asymsr.schema.records import Decision, DecisionFigures, EvaluationSummary, Figures

__all__ = ["Decision", "Figures", "best_candidate", "decide"]


def best_candidate(summaries: Mapping[str, EvaluationSummary]) -> str:
    """The name of the candidate with the best mean test PSNR (the first listed on a tie)."""
    if not summaries:
        raise ValueError("no candidate runs to choose from")
    return max(summaries, key=lambda name: summaries[name].mean("psnr"))


def decide(candidate: Figures, reference: Figures, champion: Figures | None, max_psnr_drop: float) -> Decision:
    """Apply rules (a), (b) and (c) in that order; the first one that fails is the reason."""
    if max_psnr_drop < 0:
        raise ValueError(f"max_psnr_drop must be >= 0 dB, got {max_psnr_drop}")
    drop = reference.mean_psnr - candidate.mean_psnr
    figures = DecisionFigures(
        candidate=candidate, reference=reference, champion=champion, psnr_drop_db=drop, max_psnr_drop_db=max_psnr_drop
    )

    def verdict(promote: bool, reason: str) -> Decision:
        return Decision(label="promoted" if promote else "rejected", reason=reason, figures=figures)

    if drop > max_psnr_drop:
        return verdict(
            False,
            f"quality: mean PSNR {candidate.mean_psnr:.3f} dB is {drop:.3f} dB below the reference's "
            f"{reference.mean_psnr:.3f} dB (allowed drop {max_psnr_drop} dB)",
        )
    if candidate.params >= reference.params or candidate.model_bytes >= reference.model_bytes:
        return verdict(
            False,
            f"size: {candidate.params:,} parameters / {candidate.model_bytes:,} bytes is not smaller than the "
            f"reference's {reference.params:,} / {reference.model_bytes:,}",
        )
    relation = f"{drop:.3f} dB below" if drop >= 0 else f"{-drop:.3f} dB above"
    quality = f"mean PSNR {candidate.mean_psnr:.3f} dB, {relation} the reference (allowed drop {max_psnr_drop} dB)"
    size = (
        f"{candidate.params:,} < {reference.params:,} parameters, "
        f"{candidate.model_bytes:,} < {reference.model_bytes:,} bytes"
    )
    if champion is None:
        return verdict(True, f"no champion yet; {quality}; {size}")
    if candidate.mean_psnr <= champion.mean_psnr:
        return verdict(
            False,
            f"progress: mean PSNR {candidate.mean_psnr:.3f} dB does not beat champion version {champion.version} "
            f"({champion.mean_psnr:.3f} dB on the same evaluation data)",
        )
    return verdict(True, f"beats champion version {champion.version} ({champion.mean_psnr:.3f} dB); {quality}; {size}")
