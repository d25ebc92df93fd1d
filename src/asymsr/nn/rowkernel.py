"""Row-fused CPU kernels: Asym_VDSR's 3x1 + 1x3 pair in one pass, with the intermediate in cache.

Stock PyTorch runs an Asym_VDSR block as two oneDNN convolutions: the 3x1 writes a whole
64-channel image (64 MiB at 512x512) that the 1x3 then reads back, and oneDNN's kernels for
these thin shapes reach only part of the 3x3's efficiency, so the one third fewer multiply-adds
does not show in wall time (see ``benchmarks/results``). ``kernels/rowconv.c`` computes a block
row by row instead: the 3x1 output of one row (W x 64 floats, 128 KiB at W = 512) goes to a
per-thread buffer that the 1x3 consumes at once, both with an AVX2/FMA micro-kernel of 6 pixels
x 16 output channels. The same micro-kernel also runs plain 3x3 layers, so that VDSR can be
timed with it like for like.

The C source is compiled on first use by :mod:`asymsr.nn.native` (about 1 s, cached on disk) and
needs Linux on x86-64 with AVX2 and FMA and a C compiler; :func:`supports` says why not
otherwise, and callers fall back to PyTorch. Inference only: no autograd. Float32, any batch
size, any H, W >= 1; channels must be multiples of 16 (64 in VDSR).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import nn

from asymsr.nn import native
from asymsr.nn.models import VDSR

CHANNEL_MULTIPLE = 16
KernelUnavailable = native.NativeUnavailable


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled ``kernels/rowconv.c`` with its argument types declared.

    Raises:
        KernelUnavailable: see :func:`asymsr.nn.native.unavailable_reason`, or the build failed.
    """
    lib = native.load("rowconv")
    pointer, size, flag = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    shape = [pointer, size, size, size, size]  # x, N, H, W, C_in
    lib.asymsr_asym_pair.argtypes = [*shape, pointer, size, pointer, size, pointer, flag]
    lib.asymsr_conv3x3.argtypes = [*shape, pointer, size, flag, pointer, flag]
    lib.asymsr_asym_pair.restype = lib.asymsr_conv3x3.restype = ctypes.c_int
    return lib


def pack_3x3(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 3, 3) kernel as (9, C_in, C_out) float32, taps in row-major order."""
    out_channels, in_channels = weight.shape[:2]
    taps_first = weight.detach().to("cpu", torch.float32).permute(2, 3, 1, 0)
    return taps_first.reshape(9, in_channels, out_channels).contiguous()


def pack_3x1(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 3, 1) kernel as (3, C_in, C_out) float32, taps top to bottom."""
    return weight.detach().to("cpu", torch.float32)[:, :, :, 0].permute(2, 1, 0).contiguous()


def pack_1x3(weight: torch.Tensor) -> torch.Tensor:
    """A (C_out, C_in, 1, 3) kernel as (3, C_in, C_out) float32, taps left to right."""
    return weight.detach().to("cpu", torch.float32)[:, :, 0, :].permute(2, 1, 0).contiguous()


def _prepare(
    x: torch.Tensor, in_channels: int, out_channels: int, out: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"row kernel input must be a float32 CPU tensor (N, {in_channels}, H, W), "
            f"got {tuple(x.shape)} {x.dtype} on {x.device}"
        )
    if out_channels % CHANNEL_MULTIPLE:
        raise ValueError(f"row kernel output channels must be a multiple of {CHANNEL_MULTIPLE}, got {out_channels}")
    x = x.contiguous(memory_format=torch.channels_last)
    n, _, h, w = x.shape
    shape = (n, out_channels, h, w)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, memory_format=torch.channels_last)
    elif (
        tuple(out.shape) != shape
        or out.dtype != torch.float32
        or not out.is_contiguous(memory_format=torch.channels_last)
        or out.data_ptr() == x.data_ptr()
    ):
        raise ValueError(
            f"out must be a separate channels_last float32 tensor of shape {shape}, got {tuple(out.shape)}"
        )
    return x, out


def _check_weights(weight: torch.Tensor, taps: int, name: str) -> None:
    if (
        weight.dim() != 3
        or weight.shape[0] != taps
        or weight.dtype != torch.float32
        or weight.device.type != "cpu"
        or not weight.is_contiguous()
        or weight.shape[2] % CHANNEL_MULTIPLE
    ):
        raise ValueError(
            f"{name} weights must be packed contiguous float32 CPU tensors ({taps}, C_in, C_out), C_out a multiple "
            f"of {CHANNEL_MULTIPLE}; got {tuple(weight.shape)} {weight.dtype} on {weight.device}"
        )


def _check(status: int, name: str) -> None:
    if status != 0:
        raise MemoryError(f"row kernel {name}: out of memory for its per-thread row buffers")


def asym_pair(x: torch.Tensor, w3x1: torch.Tensor, w1x3: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``relu(conv1x3(conv3x1(x)))`` with zero padding; weights from :func:`pack_3x1`/:func:`pack_1x3`.

    x: (N, C_in, H, W) float32 on the CPU, any memory format. Returns ``out`` (a new tensor if None;
    else a channels_last (N, C_out, H, W) float32 tensor not sharing memory with x), channels_last.
    """
    _check_weights(w3x1, 3, "3x1")
    _check_weights(w1x3, 3, "1x3")
    if w1x3.shape[1] != w3x1.shape[2]:
        raise ValueError(f"pair weights do not chain: 3x1 {tuple(w3x1.shape)}, 1x3 {tuple(w1x3.shape)}")
    x, out = _prepare(x, w3x1.shape[1], w1x3.shape[2], out)
    n, _, h, w = x.shape
    status = library().asymsr_asym_pair(
        x.data_ptr(), n, h, w, x.shape[1], w3x1.data_ptr(), w3x1.shape[2], w1x3.data_ptr(), w1x3.shape[2],
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check(status, "asym_pair")
    return out


def conv3x3(x: torch.Tensor, weight: torch.Tensor, relu: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """``conv3x3(x)``, then ReLU if ``relu``, with zero padding; ``weight`` from :func:`pack_3x3`.

    Inputs, ``out`` and the result as in :func:`asym_pair`.
    """
    _check_weights(weight, 9, "3x3")
    x, out = _prepare(x, weight.shape[1], weight.shape[2], out)
    n, _, h, w = x.shape
    status = library().asymsr_conv3x3(
        x.data_ptr(), n, h, w, x.shape[1], weight.data_ptr(), weight.shape[2], int(relu), out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(status, "conv3x3")
    return out


def supports(model: VDSR) -> str | None:
    """None when :class:`RowKernelVDSR` can run ``model`` here, else one line saying why not."""
    if model.channels % CHANNEL_MULTIPLE:
        return f"{model.channels} channels is not a multiple of {CHANNEL_MULTIPLE}"
    if model.rank % CHANNEL_MULTIPLE:  # the 3x1's output is a row kernel output too
        return f"rank {model.rank} is not a multiple of {CHANNEL_MULTIPLE}"
    return native.unavailable_reason("rowconv")


class RowKernelVDSR(nn.Module):
    """A VDSR or Asym_VDSR whose middle layers run on the row kernels (CPU inference only).

    The first layer (1 -> C) runs on the same kernel; the last (C -> 1, about 0.15% of the
    work) stays a PyTorch convolution. Computes the same function as the source model (float32 rounding aside);
    the weights are copied, so later changes to the source do not reach it.

    Raises:
        KernelUnavailable: the kernel cannot run here (see :func:`supports`).
    """

    def __init__(self, model: VDSR) -> None:
        super().__init__()
        reason = supports(model)
        if reason is not None:
            raise KernelUnavailable(f"row kernel unavailable: {reason}")
        library()
        convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
        self.block = model.block
        self.receptive_radius = model.receptive_radius  # tiled inference needs this much context
        self.register_buffer("first", pack_3x3(convs[0].weight))
        self.last = nn.Parameter(convs[-1].weight.detach().to("cpu", torch.float32).clone(), requires_grad=False)
        middle = convs[1:-1]
        if model.block == "full":
            self.register_buffer("middle", torch.stack([pack_3x3(conv.weight) for conv in middle]))
            self.register_buffer("second", torch.empty(len(middle), 0))
        else:  # a pair's factors differ in shape when its rank is below the channel count
            self.register_buffer("middle", torch.stack([pack_3x1(conv.weight) for conv in middle[::2]]))
            self.register_buffer("second", torch.stack([pack_1x3(conv.weight) for conv in middle[1::2]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + residual(x)`` for x of shape (N, 1, H, W) float32 on the CPU (no autograd)."""
        with torch.inference_mode():
            features = conv3x3(x, self.first, relu=True)
            # Two buffers used in turn: allocating a fresh output per layer would page-fault every
            # page of it again (64 MiB per layer at 512x512), which costs as much as a tenth of the layer.
            spare = torch.empty_like(features)
            for weights, second in zip(self.middle, self.second, strict=True):
                if self.block == "full":
                    result = conv3x3(features, weights, relu=True, out=spare)
                else:
                    result = asym_pair(features, weights, second, out=spare)
                features, spare = result, features
            return x + nn.functional.conv2d(features, self.last, padding=1)
