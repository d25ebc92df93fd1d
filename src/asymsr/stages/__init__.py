"""The pipeline's stages, one module each: what the CLI, ``dvc.yaml`` and Kubeflow all run.

=================  =====================================================================
``fetch``          a dataset source -> an image folder with a checksum manifest
``validate``       Great Expectations checks of an image folder or a patch set
``prepare``        image folders -> memory-mapped training patches
``tune``           an Optuna study of one architecture's training settings
``train``          one architecture on the patches (torchrun for several GPUs)
``compress``       a trained VDSR -> an Asym_VDSR (closed form, refit, distillation)
``evaluate``       PSNR/SSIM on the test sets, plus parameters, bytes, MACs, latency
``report``         the comparison table, plots and crops
``register``       MLflow runs, registry versions and the promotion gate
``start-run``      the MLflow parent run of an orchestrated pipeline (Kubeflow)
``profile``        params.yaml from a profile (with overrides)
``upscale``        a user's photo through a model
``import-weights`` published VDSR weights -> a checkpoint
``bench``          latency, throughput and cost of every form
=================  =====================================================================

Stage modules import only the schema at module level; everything heavy is imported inside
``run``. The CLI imports just the stage it runs (:func:`load`), so a stage's code is the import
closure of its own module, which is what its ``deps`` in ``dvc.yaml`` list.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# command -> module, in the order of `asymsr --help`
STAGES: dict[str, str] = {
    "profile": "asymsr.stages.profile",
    "fetch": "asymsr.stages.fetch",
    "validate": "asymsr.stages.validate",
    "prepare": "asymsr.stages.prepare",
    "tune": "asymsr.stages.tune",
    "train": "asymsr.stages.train",
    "compress": "asymsr.stages.compress",
    "evaluate": "asymsr.stages.evaluate",
    "report": "asymsr.stages.report",
    "register": "asymsr.stages.register",
    "start-run": "asymsr.stages.start_run",
    "import-weights": "asymsr.stages.import_weights",
    "upscale": "asymsr.stages.upscale",
    "bench": "asymsr.stages.bench",
}


def load(command: str) -> ModuleType:
    """The stage module of ``command`` (its ``NAME``, ``HELP``, ``Args`` and ``run``)."""
    return importlib.import_module(STAGES[command])


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix: reported as one line, exit status 2 (imported only when one occurs)."""
    from asymsr.mlops.tracking import TrackingUnavailable
    from asymsr.training.loop import TrainingDiverged

    return (ValueError, KeyError, FileNotFoundError, TrainingDiverged, TrackingUnavailable)
