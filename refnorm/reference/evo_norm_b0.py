"""EvoNorm-B0: a batch-dependent normalization-activation layer found by evolution.

Each element of ``x`` of shape ``(N, C, H, W)`` is divided by the larger of a
per-channel batch standard deviation and a per-element "instance" term, then
scaled and shifted per channel:

.. math::

   \\sigma^2_c = \\mathrm{Var}_{n,h,w}(x_{nchw}), \\qquad
   s^2_{nc} = \\mathrm{Var}_{h,w}(x_{nchw}), \\\\
   d_{nchw} = \\max\\Big(\\sqrt{\\sigma^2_c + \\epsilon},\\
              v_c\\, x_{nchw} + \\sqrt{s^2_{nc} + \\epsilon}\\Big), \\qquad
   y_{nchw} = \\gamma_c \\frac{x_{nchw}}{d_{nchw}} + \\beta_c

Shapes
    x: ``(N, C, H, W)`` (exactly 4-D, as timm asserts); weight (gamma), bias
    (beta), v and running_var: ``(C,)``.

Conventions
    Both variances are *biased* (divide by the set size).  ``eps`` (default
    ``1e-3``, timm's) is added inside both square roots.  In training
    (``training=True``) ``sigma^2`` is the batch variance over ``(N, H, W)`` and
    is differentiated (the gradient reaches every element of the channel); in
    evaluation it is ``running_var`` (required then), a constant.  The running
    variance's update is a separate function,
    :func:`refnorm.evo_norm_b0_running_stats` (timm updates its buffer inside
    the forward with ``momentum * n/(n-1)``, i.e. the unbiased variance).  At
    a tie ``left == right`` the derivative of the maximum is split half/half,
    as ``torch.maximum``'s backward (and autograd's ``np.maximum``) do.
    weight, bias and v are required (timm's module always has them when its
    activation is on; with ``apply_act=False`` it is a plain affine map, not
    this layer).

References
    Liu, Brock, Simonyan & Le, "Evolving Normalization-Activation Layers",
    NeurIPS 2020 (arXiv:2004.02967), the B0 layer of its table 1; timm
    ``timm/layers/evo_norm.py`` ``EvoNorm2dB0``.
"""

import autograd.numpy as np


# [docs:forward-start]
def evo_norm_b0(x, weight, bias, v, running_var=None, training=True, eps=1e-3):
    N, C, H, W = x.shape
    p = (1, C, 1, 1)
    if training:
        m = np.mean(x, axis=(0, 2, 3), keepdims=True)  # (1) per channel over (N, H, W)
        var = np.mean((x - m) ** 2, axis=(0, 2, 3), keepdims=True)  # biased
    else:
        var = np.reshape(running_var, p)  # a constant
    left = np.sqrt(var + eps)  # (2) (1, C, 1, 1)
    mu = np.mean(x, axis=(2, 3), keepdims=True)
    s2 = np.mean((x - mu) ** 2, axis=(2, 3), keepdims=True)  # biased, per (n, c)
    istd = np.sqrt(s2 + eps)  # (3) (N, C, 1, 1)
    right = x * np.reshape(v, p) + istd  # (4) (N, C, H, W)
    d = np.maximum(left, right)  # (5)
    xn = x / d  # (6)
    return xn * np.reshape(weight, p) + np.reshape(bias, p)  # (7)
# [docs:forward-end]
