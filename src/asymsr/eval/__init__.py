"""Running and judging models.

* :mod:`.inference`: tiled inference, the :class:`~asymsr.eval.inference.Predictor`;
* :mod:`.deploy`: the fastest equivalent form per device; :mod:`.efficiency`: parameters,
  bytes, counted multiply-adds, latency;
* :mod:`.evaluation`: PSNR/SSIM over dataset folders (``asymsr evaluate``);
* :mod:`.upscale`: a user's photo; :mod:`.report`, :mod:`.plots`: comparison tables and figures.
"""
