"""The networks and their files.

* :mod:`.models`: VDSR and Asym_VDSR (variants are data in ``ARCHITECTURES``; add a third
  architecture there), :func:`~asymsr.nn.models.fuse`, exact parameter counts;
* :mod:`.checkpoint`: checkpoints loadable with ``weights_only=True``;
* :mod:`.devices`: devices by name;
* :mod:`.ensemble`: a network averaged over flipped inputs (a distillation target);
* :mod:`.native`, :mod:`.rowkernel`: the row-fused AVX2 kernels (C sources in ``kernels/``);
* :mod:`.reference_weights`: published VDSR weights from an ``.npz``.
"""
