"""Adaptive LayerNorm (adaLN), as in DiT: a LayerNorm without affine whose
scale and shift are given per sample (regressed from a conditioning vector).

.. math::

   \\mu = \\frac{1}{D}\\sum_{i} x_i, \\qquad
   \\sigma^2 = \\frac{1}{D}\\sum_i (x_i - \\mu)^2, \\qquad
   y_{n,m,i} = \\frac{x_{n,m,i} - \\mu_{n,m}}{\\sqrt{\\sigma^2_{n,m} + \\epsilon}}\\,(1 + s_{n,i}) + t_{n,i}

over each row ``(n, m)`` of the trailing ``normalized_shape`` (``D =
prod(normalized_shape)`` elements; ``s`` = scale, ``t`` = shift).

Shapes
    x: ``(N, *mid, *normalized_shape)`` -- a batch dimension, then any number of
    dimensions (``mid``, possibly none: DiT's ``(N, T, hidden)`` has ``mid =
    (T,)``), then the normalized ones; scale, shift: ``(N, *normalized_shape)``,
    one vector per sample, the same for every position of ``mid``; saved
    statistics mean, rstd: ``x.shape[:-len(normalized_shape)] = (N, *mid)``.

Conventions
    LayerNorm's (biased variance, ``eps`` inside the square root), with no
    elementwise affine of its own, ``eps`` default ``1e-6`` (DiT's
    ``nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)``).  The gain
    is ``1 + scale`` (DiT's ``modulate``: a zero-initialised scale is the identity
    gain), computed once in float64.  scale and shift are required and must be
    exactly ``(N, *normalized_shape)``: DiT's ``scale.unsqueeze(1)`` broadcast
    over the token dimension is done here over all of ``mid``.

References
    Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023
    (arXiv:2212.09748), section 3.2 "adaLN"; facebookresearch/DiT ``models.py``:
    ``modulate(x, shift, scale) = x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)``
    applied to ``norm_final(x)`` / ``norm1(x)``.
"""

import math

import autograd.numpy as np


# [docs:forward-start]
def ada_layer_norm(x, normalized_shape, scale, shift, eps=1e-6):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    N, D = x.shape[0], math.prod(ns)
    M = math.prod(x.shape[1: x.ndim - len(ns)])  # the positions of mid (1 when mid is empty)
    x3 = np.reshape(x, (N, M, D))  # (0) (N, M, D): one reduction set per row (n, m)
    mean = np.mean(x3, axis=2, keepdims=True)  # (1) (N, M, 1)
    xc = x3 - mean  # (2) (N, M, D)
    var = np.mean(xc * xc, axis=2, keepdims=True)  # (3) (N, M, 1), biased
    rstd = 1.0 / np.sqrt(var + eps)  # (4) (N, M, 1)
    xhat = xc * rstd  # (5) (N, M, D)
    gain = 1.0 + np.reshape(scale, (N, 1, D))  # (6) (N, 1, D): the per-sample gain 1 + scale
    y = xhat * gain + np.reshape(shift, (N, 1, D))  # (7) (N, M, D), broadcast over mid
    return np.reshape(y, x.shape)
# [docs:forward-end]
