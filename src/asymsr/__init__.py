"""asymsr: VDSR and Asym_VDSR super-resolution with the MATLAB-exact evaluation protocol.

Public API::

    from asymsr import build, fuse, architecture_names, count_parameters
    from asymsr import imresize, luminance, psnr, ssim, make_test_pair, score
    from asymsr import PrepareConfig, prepare, TrainConfig, train
    from asymsr import load_predictor, evaluate, upscale_file

Importing asymsr before torch turns on PyTorch's transparent-huge-page hint for large CPU
tensors (``THP_MEM_ALLOC_ENABLE=1``, unless the variable is already set): every layer of a
VDSR-sized network allocates its output afresh (64 MiB at 512x512), and with 4 KiB pages the
page faults cost a sizeable part of CPU inference time (see the README's latency section).
PyTorch reads the variable once, so it has no effect if torch has already allocated memory.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from asymsr.color import luminance  # noqa: E402 (after the allocator setting, which must precede torch)
from asymsr.evaluation import evaluate  # noqa: E402
from asymsr.inference import load_predictor  # noqa: E402
from asymsr.metrics import psnr, ssim  # noqa: E402
from asymsr.models import VDSR, architecture_names, build, count_parameters, fuse  # noqa: E402
from asymsr.prepare import PrepareConfig, prepare  # noqa: E402
from asymsr.protocol import make_test_pair, score  # noqa: E402
from asymsr.resize import imresize  # noqa: E402
from asymsr.training import TrainConfig, train  # noqa: E402
from asymsr.upscale import upscale_file  # noqa: E402

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
