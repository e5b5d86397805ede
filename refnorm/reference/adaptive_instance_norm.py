"""Adaptive Instance Normalization, AdaIN (Huang & Belongie 2017): give each
channel of the content features the mean and standard deviation of the same
channel of the style features.

For each sample ``n`` and channel ``c``, with the content set
``x[n, c, :]`` of ``M`` positions and the style set ``style[n, c, :]`` of
``Ms`` positions:

.. math::

   \\mu_x = \\frac{1}{M}\\sum_i x_i, \\qquad
   \\sigma_x = \\Big(\\frac{1}{M - 1}\\sum_i (x_i - \\mu_x)^2 + \\epsilon\\Big)^{1/2}, \\qquad
   \\mu_s, \\ \\sigma_s \\ \\text{likewise over the style set},

   y_i = \\sigma_s \\, \\frac{x_i - \\mu_x}{\\sigma_x} + \\mu_s

Shapes
    x (the content features): ``(N, C, *spatial)``, at least one spatial
    dimension (any number: a PyTorch user passes ``(N, C, L)``, ``(N, C, H, W)``
    or ``(N, C, D, H, W)``; the authors' code asserts 4-D, and on a 4-D input
    this is exactly their computation).  style: ``(N, C, *spatial_s)`` with
    the same ``N`` and ``C``; its spatial sizes (and even its number of
    spatial dimensions) may differ from x's: only the statistics of each
    ``(n, c)`` set are used.  y: shaped like x.  Saved statistics, each
    ``(N, C)``: ``mean`` (``mu_x``), ``rstd`` (``1 / sigma_x``), ``style_mean``
    (``mu_s``) and ``style_std`` (``sigma_s``).

Conventions
    * The UNBIASED variance (divisor ``M - 1``), as the authors' ``calc_mean_std``
      computes it with ``Tensor.var(dim=2)`` (PyTorch's default ``correction=1``),
      for the content and the style alike; InstanceNorm uses the biased one.
    * ``eps`` is added to the variance inside the square root, for both
      (``feat_var = var + eps; feat_std = feat_var.sqrt()``); default ``1e-5``,
      the authors' default.
    * Every reduction set needs at least two elements (``M >= 2``, ``Ms >= 2``):
      with one element the unbiased variance is ``0/0`` (PyTorch returns NaN
      with a warning); refnorm refuses it with a ``ValueError`` naming x or style.
    * Gradients flow into the style features too (through ``mu_s`` and ``sigma_s``),
      as in style-transfer training where both come from the same encoder.

References
    Huang & Belongie, "Arbitrary Style Transfer in Real-time with Adaptive
    Instance Normalization", ICCV 2017, eq. (8); the authors' PyTorch port
    ``pytorch-AdaIN`` (naoto0804), ``function.py``: ``calc_mean_std`` and
    ``adaptive_instance_normalization``.
"""

import math

import autograd.numpy as np


def _mean_std(f, eps):
    """Per (n, c): the mean and ``sqrt(unbiased var + eps)``, each ``(N, C, 1)``."""
    N, C = f.shape[0], f.shape[1]
    M = math.prod(f.shape[2:])
    f3 = np.reshape(f, (N, C, M))  # (1) (N, C, M): one set per (n, c)
    mean = np.mean(f3, axis=2, keepdims=True)  # (2) (N, C, 1)
    fc = f3 - mean  # (3) centred
    var = np.sum(fc * fc, axis=2, keepdims=True) / (M - 1)  # (4) unbiased variance
    std = np.sqrt(var + eps)  # (5) eps inside the square root
    return f3, mean, std


# [docs:forward-start]
def adaptive_instance_norm(x, style, eps=1e-5):
    x3, mean, std = _mean_std(x, eps)  # (1)-(5) content statistics
    _, s_mean, s_std = _mean_std(style, eps)  # (1)-(5) style statistics
    xhat = (x3 - mean) / std  # (6) the normalized content
    y = xhat * s_std + s_mean  # (7) the style's std and mean
    return np.reshape(y, x.shape)
# [docs:forward-end]
