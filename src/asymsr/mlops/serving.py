"""The MLflow pyfunc of a registered asymsr model: served by ``mlflow models serve``, built from data.

Every model the registry holds is logged as *models from code* (:data:`MODEL_CODE`, a file that
only calls ``mlflow.models.set_model``) plus one artifact, the asymsr checkpoint ``model.pt``
(a dict of tensors and the architecture spec). Nothing is pickled: ``load_context`` rebuilds the
network from the spec and loads the tensors with ``torch.load(weights_only=True)``.

Input and output (``asymsr.mlops.tracking.model_signature``): float32 (N, 1, H, W) luminance in
[0, 1], the bicubic-upsampled input in and the super-resolved luminance out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

CHECKPOINT_ARTIFACT = "checkpoint"  # the key of model.pt among a logged model's artifacts
MODEL_CODE = Path(__file__).with_name("serving_model.py")


class SuperResolver(mlflow.pyfunc.PythonModel):
    """Runs the network of the model's checkpoint artifact on (N, 1, H, W) luminance."""

    # The logged TensorSpec signature is the schema: no validation from predict's type hints
    # (MLflow would otherwise wrap predict and warn that it has none).
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from asymsr.nn.checkpoint import load_checkpoint, model_from_checkpoint

        path = context.artifacts[CHECKPOINT_ARTIFACT]
        self.model = model_from_checkpoint(load_checkpoint(path), path)

    def predict(self, context, model_input, params=None):  # no hints: MLflow would infer a schema from them
        import torch

        if isinstance(model_input, dict):  # the signature names its one input tensor
            (model_input,) = model_input.values()
        batch = np.asarray(model_input, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"expected float32 (N, 1, H, W) luminance, got shape {batch.shape}")
        with torch.inference_mode():
            output = self.model(torch.from_numpy(batch)).numpy()
        if not np.isfinite(output).all():
            raise ValueError("the network's output holds NaN or Inf")
        return output
