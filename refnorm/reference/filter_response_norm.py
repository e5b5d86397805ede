"""Filter Response Normalization with the Thresholded Linear Unit (FRN + TLU).

Each (sample, channel) of ``x`` of shape ``(N, C, *spatial)`` is divided by the
root of its mean square over the ``S = prod(spatial)`` positions, then scaled,
shifted and (optionally) thresholded per channel:

.. math::

   \\nu^2_{nc} = \\frac{1}{S}\\sum_s x_{ncs}^2, \\qquad
   \\hat x_{ncs} = x_{ncs}\\,(\\nu^2_{nc} + \\epsilon)^{-1/2}, \\qquad
   z_{ncs} = \\gamma_c \\hat x_{ncs} + \\beta_c, \\qquad
   y_{ncs} = \\max(z_{ncs}, \\tau_c)

Shapes
    x: ``(N, C, *spatial)`` with at least one spatial dimension (``ndim >= 3``;
    the paper's 2-D maps are ``(N, C, H, W)``, a fully connected layer's
    activations ``(N, C, 1)``); weight (gamma), bias (beta), tau: ``(C,)``;
    saved statistic ``rstd = (nu2 + eps)^(-1/2)``: ``(N, C)``.

Conventions
    No mean subtraction (FRN is not centred).  ``eps`` inside the square root,
    default ``1e-6`` (the paper's; timm's ``FilterResponseNormTlu2d`` defaults
    to ``1e-5``: pass it).  weight and bias are required (the paper's FRN always
    has them); ``tau=None`` is FRN without the TLU (``y = z``).  The TLU's
    derivative at a tie ``z == tau`` is split half/half between ``z`` and
    ``tau``, as ``torch.maximum``'s backward (and autograd's ``np.maximum``) do.
    The mean square is over every spatial dimension (timm reduces over
    ``(2, 3)`` of a 4-D input: the same thing there).

References
    Singh & Krishnan, "Filter Response Normalization Layer: Eliminating Batch
    Dependence in the Training of Deep Neural Networks", arXiv:1911.09737,
    eq. (1)-(3) and its TensorFlow listing; timm
    ``timm/layers/norm_act.py`` ``FilterResponseNormTlu2d``.
"""

import math

import autograd.numpy as np


# [docs:forward-start]
def filter_response_norm(x, weight, bias, tau=None, eps=1e-6):
    N, C = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:])
    x3 = np.reshape(x, (N, C, S))  # (1) (N, C, S): one set per (n, c)
    nu2 = np.mean(x3 * x3, axis=2, keepdims=True)  # (2) (N, C, 1) mean square
    rstd = 1.0 / np.sqrt(nu2 + eps)  # (3) (N, C, 1)
    xhat = x3 * rstd  # (4) (N, C, S)
    z = xhat * np.reshape(weight, (1, C, 1)) + np.reshape(bias, (1, C, 1))  # (5) (N, C, S)
    y = z if tau is None else np.maximum(z, np.reshape(tau, (1, C, 1)))  # (6) TLU
    return np.reshape(y, x.shape)
# [docs:forward-end]
