"""VDSR and Asym_VDSR: very deep residual super-resolution networks for luminance.

VDSR: J. Kim, J. K. Lee, K. M. Lee, "Accurate Image Super-Resolution Using Very Deep
Convolutional Networks", CVPR 2016. Twenty bias-free 3x3 convolutions with 64 channels,
zero padding, ReLU after all but the last, and a global residual connection:
``output = input + net(input)``. The input is the bicubic-upsampled luminance in [0, 1],
shape (N, 1, H, W); the output has the same shape (it is not clipped).

Asym_VDSR replaces each of the 18 middle 3x3 convolutions with a 3x1 convolution followed
directly by a 1x3 convolution (both bias-free) and one ReLU after the pair. Because nothing
non-linear sits between the two factors, the pair equals one 3x3 kernel of limited rank, and
:func:`fuse` turns a trained Asym_VDSR into a plain VDSR that computes the same function.

The width between the two factors of a pair is the *rank* r (64, the channel count, in the
original Asym_VDSR): a pair is a 3x3 kernel of rank at most r when laid out as a
(C_out x 3) by (C_in x 3) matrix, and a smaller r gives a smaller model
(:func:`asymsr.nn.factorize.closed_form` makes one from a trained VDSR).

Parameter counts (exact, tested):
    vdsr:            9*64 + 18*9*64*64 + 9*64          = 664,704
    asym_vdsr:       9*64 + 18*(3+3)*64*64 + 9*64      = 443,520
    asym_vdsr, r:    1,152 + 6,912 * r                 (r = 16: 111,744; 32: 222,336; 48: 332,928)
Multiply-adds per output pixel equal the parameter count, since every layer runs at the
output resolution.

Variants are data: :data:`asymsr.nn.architectures.ARCHITECTURES` maps a name to keyword arguments of :class:`VDSR`,
and :func:`build` merges user overrides into them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from asymsr.nn.architectures import ARCHITECTURES, architecture_names

__all__ = ["ARCHITECTURES", "VDSR", "architecture_names", "architecture_of", "build", "count_parameters", "fuse"]

BlockType = Literal["full", "asymmetric"]
InitScheme = Literal["he_fan_out", "variance_preserving"]


class VDSR(nn.Module):
    """A VDSR-shaped network on one luminance channel.

    Args:
        depth: number of convolution *layers* counted as in VDSR (input layer, ``depth - 2``
            middle layers, output layer); 20 in the paper. Must be at least 3.
        channels: feature channels of the hidden layers; 64 in the paper.
        block: ``"full"`` for 3x3 middle layers (VDSR) or ``"asymmetric"`` for a 3x1 then
            1x3 pair per middle layer (Asym_VDSR).
        init: ``"he_fan_out"`` draws every kernel from N(0, 2 / (kh * kw * out_channels)),
            as VDSR does. Applied to both factors of an asymmetric pair it doubles the
            variance twice per block, so activations grow about 2^18-fold over 18 blocks.
            ``"variance_preserving"`` (the default for Asym_VDSR) draws the first factor of
            each pair with gain 1 and the second with the ReLU gain 2, so that a pair has the
            forward variance gain of one He-initialised 3x3 layer. For ``"full"`` blocks both
            schemes are the same.
        rank: channels between the 3x1 and the 1x3 of each asymmetric pair (default: ``channels``);
            ignored for ``"full"`` blocks. Between 1 and ``channels``.

    Shapes: input (N, 1, H, W) in [0, 1], output (N, 1, H, W); any H, W >= 1.
    """

    def __init__(
        self,
        depth: int = 20,
        channels: int = 64,
        block: BlockType = "full",
        init: InitScheme = "he_fan_out",
        rank: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError(f"depth must be >= 3, got {depth}")
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if block not in ("full", "asymmetric"):
            raise ValueError(f"block must be 'full' or 'asymmetric', got {block!r}")
        if init not in ("he_fan_out", "variance_preserving"):
            raise ValueError(f"init must be 'he_fan_out' or 'variance_preserving', got {init!r}")
        rank = channels if rank is None else rank
        if not 1 <= rank <= channels:
            raise ValueError(f"rank must be between 1 and channels={channels}, got {rank}")
        self.depth = depth
        self.channels = channels
        self.block = block
        self.init_scheme = init
        self.rank = rank if block == "asymmetric" else channels

        layers: list[nn.Module] = [_conv(1, channels, (3, 3)), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            if block == "full":
                layers.append(_conv(channels, channels, (3, 3)))
            else:
                layers.append(_conv(channels, self.rank, (3, 1)))
                layers.append(_conv(self.rank, channels, (1, 3)))
            layers.append(nn.ReLU(inplace=True))
        layers.append(_conv(channels, 1, (3, 3)))
        self.body = nn.Sequential(*layers)
        self.reset_parameters()

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that one output pixel depends on (20 for VDSR).

        Tiled inference with at least this much overlap reproduces untiled output exactly.
        """
        return self.depth

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture with :class:`VDSR`."""
        config = {"depth": self.depth, "channels": self.channels, "block": self.block, "init": self.init_scheme}
        if self.rank != self.channels:  # so that checkpoints of full-rank models keep their old layout
            config["rank"] = self.rank
        return config

    def parameter_count(self) -> int:
        """Exact parameter count (and multiply-adds per output pixel) from the shape alone."""
        c, r, middle = self.channels, self.rank, self.depth - 2
        per_middle = 9 * c * c if self.block == "full" else 6 * c * r
        return 18 * c + middle * per_middle

    def reset_parameters(self) -> None:
        """Draw all kernels according to ``self.init_scheme`` (see the class docstring)."""
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv in convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if self.block == "asymmetric" and self.init_scheme == "variance_preserving":
            first_factors = convs[1:-1:2]  # the 3x1 of each pair: linear, gain 1
            for conv in first_factors:
                out_channels, _, kh, kw = conv.weight.shape
                nn.init.normal_(conv.weight, 0.0, math.sqrt(1.0 / (kh * kw * out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + residual(x)`` for x of shape (N, 1, H, W) in [0, 1]."""
        return x + self.body(x)


def _conv(in_channels: int, out_channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Conv2d(in_channels, out_channels, kernel, padding=padding, bias=False)


def build(name: str, **overrides: Any) -> VDSR:
    """Build the architecture registered as ``name`` with optional keyword overrides.

    >>> build("asym_vdsr", init="he_fan_out").block
    'asymmetric'

    Raises:
        KeyError: ``name`` is not registered; the message lists the known names.
    """
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(architecture_names())}")
    kwargs = {**ARCHITECTURES[name], **overrides}
    return VDSR(**kwargs)


def architecture_of(model: VDSR) -> str:
    """The registered name whose block type ``model`` has (``vdsr`` or ``asym_vdsr``)."""
    for name, kwargs in ARCHITECTURES.items():
        if kwargs["block"] == model.block:
            return name
    raise KeyError(f"no registered architecture has block type {model.block!r}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def pair_kernel(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernel (C_out, C_in, 3, 3) of a 3x1 (W1, (r, C_in, 3, 1)) then 1x3 (W2, (C_out, r, 1, 3)) pair:
    ``W[o, i, y, x] = sum_m W2[o, m, 0, x] * W1[m, i, y, 0]``."""
    return torch.einsum("omx,miy->oiyx", w2[:, :, 0, :], w1[:, :, :, 0])


@torch.no_grad()
def fuse(model: VDSR) -> VDSR:
    """Return a plain 3x3 VDSR that computes exactly what ``model`` computes.

    Each 3x1 (W1, shape (C, C, 3, 1)) then 1x3 (W2, shape (C, C, 1, 3)) pair becomes one 3x3
    kernel ``W[o, i, y, x] = sum_m W2[o, m, 0, x] * W1[m, i, y, 0]``. Zero padding matches:
    the 3x1's zero rows and the 1x3's zero columns are the 3x3's zero border. A ``"full"``
    model is returned as a copy. The result is in eval mode on the same device and dtype.
    """
    fused = VDSR(depth=model.depth, channels=model.channels, block="full", init="he_fan_out")
    fused = fused.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)
    source = [m for m in model.body if isinstance(m, nn.Conv2d)]
    target = [m for m in fused.body if isinstance(m, nn.Conv2d)]
    if model.block == "full":
        kernels = [conv.weight for conv in source]
    else:
        middle = source[1:-1]
        pairs = zip(middle[0::2], middle[1::2], strict=True)
        kernels = [source[0].weight]
        kernels += [pair_kernel(w1.weight, w2.weight) for w1, w2 in pairs]
        kernels.append(source[-1].weight)
    for conv, kernel in zip(target, kernels, strict=True):
        conv.weight.copy_(kernel)
    return fused.eval()
