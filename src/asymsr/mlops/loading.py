"""Models by name: ``bicubic``, a checkpoint path, or an MLflow model URI.

MLflow URIs (``models:/asym_vdsr@champion``, ``models:/vdsr/3``, ``runs:/<id>/model``) are read
from the tracking store of :func:`asymsr.mlops.tracking.tracking_uri`; the rest goes to
:func:`asymsr.eval.inference.load_predictor`.
"""

from __future__ import annotations

import os

from asymsr.eval.inference import DEFAULT_TILE, Predictor, predictor_for
from asymsr.eval.inference import load_predictor as load_local_predictor
from asymsr.nn.devices import resolve_device
from asymsr.nn.models import architecture_of

MODEL_URI_PREFIXES = ("models:/", "runs:/")


def is_model_uri(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a model in an MLflow store rather than a file."""
    return str(spec).startswith(MODEL_URI_PREFIXES)


def load_predictor(
    spec: str | os.PathLike[str], device: str = "auto", tile: int = DEFAULT_TILE, deploy: str = "as_trained"
) -> Predictor:
    """``"bicubic"``, a checkpoint path or an MLflow model URI -> :class:`Predictor`.

    Raises:
        asymsr.nn.checkpoint.CheckpointError: the checkpoint or registered model is missing or invalid.
        asymsr.mlops.tracking.TrackingUnavailable: the tracking server does not answer.
    """
    if not is_model_uri(spec):
        return load_local_predictor(spec, device=device, tile=tile, deploy=deploy)
    from asymsr.mlops.tracking import load_logged_model

    target = resolve_device(device)  # checked before the store is contacted
    model = load_logged_model(str(spec))
    return predictor_for(model, architecture_of(model), str(spec), target, tile, deploy)
