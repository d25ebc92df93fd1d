"""The SR evaluation protocol, MATLAB-exact: where every published figure is reproduced.

* :mod:`.color`: MATLAB ``rgb2ycbcr`` luminance (BT.601, uint8 rounding);
* :mod:`.resize`: MATLAB ``imresize`` bicubic (antialiased when shrinking);
* :mod:`.metrics`: PSNR and SSIM on [0, 255] with a shaved border;
* :mod:`.protocol`: degradation of a test image and scoring of a result (the x3 PSNR of Set14
  is :func:`asymsr.sr.protocol.score` of :func:`asymsr.sr.protocol.make_test_pair` at scale 3).
"""
