"""asymsr: VDSR and Asym_VDSR super-resolution with the MATLAB-exact evaluation protocol.

Public API::

    from asymsr import build, fuse, architecture_names, count_parameters
    from asymsr import imresize, luminance, psnr, ssim, make_test_pair, score
    from asymsr import PrepareConfig, prepare, TrainConfig, train
    from asymsr import load_predictor, evaluate, upscale_file
"""

from asymsr.color import luminance
from asymsr.evaluation import evaluate
from asymsr.inference import load_predictor
from asymsr.metrics import psnr, ssim
from asymsr.models import VDSR, architecture_names, build, count_parameters, fuse
from asymsr.prepare import PrepareConfig, prepare
from asymsr.protocol import make_test_pair, score
from asymsr.resize import imresize
from asymsr.training import TrainConfig, train
from asymsr.upscale import upscale_file

__version__ = "0.1.0"

__all__ = [
    "VDSR",
    "PrepareConfig",
    "TrainConfig",
    "architecture_names",
    "build",
    "count_parameters",
    "evaluate",
    "fuse",
    "imresize",
    "load_predictor",
    "luminance",
    "make_test_pair",
    "prepare",
    "psnr",
    "score",
    "ssim",
    "train",
    "upscale_file",
]
