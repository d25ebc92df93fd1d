"""Models by name: ``bicubic``, a checkpoint path, or an MLflow model URI.

MLflow URIs (``models:/asym_vdsr@champion``, ``models:/vdsr/3``, ``runs:/<id>/model``) are read
from the tracking store of :func:`asymsr.mlops.tracking.tracking_uri`; the rest goes to
:func:`asymsr.eval.inference.load_predictor`.
"""

from __future__ import annotations

import hashlib
import os

from asymsr.eval.inference import DEFAULT_TILE, Predictor, predictor_for
from asymsr.eval.inference import load_predictor as load_local_predictor
from asymsr.nn.devices import resolve_device
from asymsr.nn.models import VDSR, architecture_of

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


def load_weights(spec: str, downloads: str | os.PathLike[str]) -> VDSR:
    """A network from a checkpoint, an ``.npz``, a model URI or a pinned path or URL (see :func:`load_teacher`)."""
    return _load(spec, downloads)[0]


def load_teacher(spec: str, downloads: str | os.PathLike[str]) -> tuple[VDSR, str]:
    """A compression teacher -> (VDSR network in eval mode on the CPU, sha256 of its source).

    ``spec``: an asymsr checkpoint, an ``.npz`` in the ``import-weights`` layout, an MLflow
    model URI, or a path or ``https://`` URL pinned as ``#sha256=<hex>`` (downloads go into
    ``downloads``). For a registered model the hash is that of its weights' bytes.

    Raises:
        ValueError: the file is missing, truncated or fails its pin, or the network is not a
            VDSR (3x3 middle layers); the message names the source.
    """
    model, digest = _load(spec, downloads)
    if model.block != "full":
        raise ValueError(f"{spec}: the teacher must be a VDSR (3x3 middle layers), not an {model.block} network")
    return model, digest


def _load(spec: str, downloads: str | os.PathLike[str]) -> tuple[VDSR, str]:
    from asymsr.data.download import fetch_file
    from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint
    from asymsr.nn.reference_weights import load_npz_weights

    if is_model_uri(spec):
        from asymsr.mlops.tracking import load_logged_model

        model = load_logged_model(spec)
        digest = hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()
    else:
        path, digest = fetch_file(spec, downloads)
        if path.suffix != ".npz":
            model = model_from_checkpoint(load_checkpoint(path), str(path))
        else:
            model = load_npz_weights(path)
    return model.eval(), digest
