"""The quality gate that decides whether a new Asym_VDSR version becomes the champion.

A candidate is promoted only if all three hold:

(a) quality: its mean PSNR over the evaluation sets is at most ``max_psnr_drop`` dB below
    the reference (VDSR) trained and evaluated in the same pipeline run;
(b) size: it has fewer parameters and a smaller checkpoint than that reference;
(c) progress: it beats the current champion's mean PSNR on the same evaluation data
    (strictly), or there is no champion yet.

The rule is a pure function of the figures, so every branch is testable without a store.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Figures:
    """What the gate compares for one model version.

    Attributes:
        mean_psnr: mean PSNR over every evaluation dataset and scale, dB.
        params: trainable parameters.
        model_bytes: bytes of the inference checkpoint.
        version: registry version, when the figures belong to a registered one.
    """

    mean_psnr: float
    params: int
    model_bytes: int
    version: str | None = None


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and why; ``figures`` are the numbers it compared (recorded as tags)."""

    promote: bool
    reason: str
    figures: dict[str, Any]

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "rejected"


def decide(candidate: Figures, reference: Figures, champion: Figures | None, max_psnr_drop: float) -> Decision:
    """Apply rules (a), (b) and (c) in that order; the first one that fails is the reason."""
    if max_psnr_drop < 0:
        raise ValueError(f"max_psnr_drop must be >= 0 dB, got {max_psnr_drop}")
    drop = reference.mean_psnr - candidate.mean_psnr
    figures: dict[str, Any] = {
        "candidate": asdict(candidate),
        "reference": asdict(reference),
        "champion": asdict(champion) if champion else None,
        "psnr_drop_db": drop,
        "max_psnr_drop_db": max_psnr_drop,
    }
    if drop > max_psnr_drop:
        return Decision(
            False,
            f"quality: mean PSNR {candidate.mean_psnr:.3f} dB is {drop:.3f} dB below the reference's "
            f"{reference.mean_psnr:.3f} dB (allowed drop {max_psnr_drop} dB)",
            figures,
        )
    if candidate.params >= reference.params or candidate.model_bytes >= reference.model_bytes:
        return Decision(
            False,
            f"size: {candidate.params:,} parameters / {candidate.model_bytes:,} bytes is not smaller than the "
            f"reference's {reference.params:,} / {reference.model_bytes:,}",
            figures,
        )
    relation = f"{drop:.3f} dB below" if drop >= 0 else f"{-drop:.3f} dB above"
    quality = f"mean PSNR {candidate.mean_psnr:.3f} dB, {relation} the reference (allowed drop {max_psnr_drop} dB)"
    size = (
        f"{candidate.params:,} < {reference.params:,} parameters, "
        f"{candidate.model_bytes:,} < {reference.model_bytes:,} bytes"
    )
    if champion is None:
        return Decision(True, f"no champion yet; {quality}; {size}", figures)
    if candidate.mean_psnr <= champion.mean_psnr:
        return Decision(
            False,
            f"progress: mean PSNR {candidate.mean_psnr:.3f} dB does not beat champion version {champion.version} "
            f"({champion.mean_psnr:.3f} dB on the same evaluation data)",
            figures,
        )
    return Decision(
        True,
        f"beats champion version {champion.version} ({champion.mean_psnr:.3f} dB); {quality}; {size}",
        figures,
    )
