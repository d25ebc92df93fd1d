"""The registered architectures, as data: name -> keyword arguments of :class:`asymsr.nn.models.VDSR`.

Torch-free, so that the schema (and so the CLI) can check an architecture name without loading
torch. A third architecture is one more entry here (plus, if it needs a new block type, that
block in :mod:`asymsr.nn.models`).
"""

from __future__ import annotations

from typing import Any

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "vdsr": {"block": "full", "init": "he_fan_out"},
    "asym_vdsr": {"block": "asymmetric", "init": "variance_preserving"},
}


def architecture_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(ARCHITECTURES)
