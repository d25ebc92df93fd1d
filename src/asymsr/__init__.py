"""asymsr: VDSR and Asym_VDSR super-resolution with the MATLAB-exact evaluation protocol.

Public API (imported on first use, so that ``import asymsr.schema`` stays light)::

    from asymsr import build, fuse, architecture_names, count_parameters
    from asymsr import imresize, luminance, psnr, ssim, make_test_pair, score
    from asymsr import PrepareConfig, prepare, TrainConfig, train
    from asymsr import load_predictor, evaluate, upscale_file

The package, layer by layer (a module imports only from layers above it in this list):

==============  ==========================================================================
``util``        atomic file writes, hashes, image files
``sr``          the protocol: colour, MATLAB imresize, PSNR/SSIM, degradation and scoring
``nn``          the networks, checkpoints, devices, native row kernels, published weights
``schema``      the configuration (params.yaml and every stage's settings) and typed records
``data``        dataset sources, patch extraction, the patch loader, Great Expectations checks
``eval``        inference, deploy forms, evaluation, cost figures, reports and plots
``mlops``       MLflow tracking, model loading by URI, the registry and its promotion gate
``training``    the training loop, DDP, Optuna tuning
``bench``       latency and throughput benchmarks, the GPU check
``stages``      one module per pipeline stage: what the CLI, dvc.yaml and Kubeflow run
``cli``         the ``asymsr`` command, built from the stages
==============  ==========================================================================
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "VDSR": "asymsr.nn.models",
    "architecture_names": "asymsr.nn.models",
    "build": "asymsr.nn.models",
    "count_parameters": "asymsr.nn.models",
    "fuse": "asymsr.nn.models",
    "imresize": "asymsr.sr.resize",
    "luminance": "asymsr.sr.color",
    "psnr": "asymsr.sr.metrics",
    "ssim": "asymsr.sr.metrics",
    "make_test_pair": "asymsr.sr.protocol",
    "score": "asymsr.sr.protocol",
    "PrepareConfig": "asymsr.schema.params",
    "TrainConfig": "asymsr.schema.params",
    "prepare": "asymsr.data.prepare",
    "train": "asymsr.training.loop",
    "evaluate": "asymsr.eval.evaluation",
    "load_predictor": "asymsr.mlops.loading",
    "upscale_file": "asymsr.eval.upscale",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'asymsr' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
