"""The model-from-code file logged with every registered asymsr model (see :mod:`asymsr.mlops.serving`).

MLflow runs it when it loads the model as a pyfunc (``mlflow models serve``); asymsr's own
commands never do: they read only the weights-only checkpoint artifact.
"""

import mlflow

from asymsr.mlops.serving import SuperResolver

mlflow.models.set_model(SuperResolver())
