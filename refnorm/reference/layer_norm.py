"""LayerNorm: normalize each sample over its trailing ``normalized_shape`` dims.

.. math::

   \\mu = \\frac{1}{D}\\sum_{i} x_i, \\qquad
   \\sigma^2 = \\frac{1}{D}\\sum_i (x_i - \\mu)^2, \\qquad
   y_i = \\gamma_i \\frac{x_i - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta_i

Shapes
    x: ``(*, *normalized_shape)``; weight (gamma), bias (beta): ``normalized_shape``
    (one value per normalized element); saved statistics mean, rstd:
    ``x.shape[:-len(normalized_shape)]``; ``D = prod(normalized_shape)``.

Conventions
    Biased variance (divisor D).  ``eps`` inside the square root.  No running
    statistics: train and eval are identical.  Missing weight means 1, missing
    bias means 0.  As ``torch.nn.functional.layer_norm``.  The keyword
    ``offset`` makes the scale ``offset + gamma`` (zero-centred weights:
    ``offset=1.0``, TransformerEngine's ``zero_centered_gamma``); it applies
    only with a weight, and the gradient is still taken with respect to gamma.

References
    Ba, Kiros & Hinton, "Layer Normalization", arXiv:1607.06450, eq. (4).
"""

import autograd.numpy as np


# [docs:forward-start]
def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(x.ndim - len(ns), x.ndim))  # (0) the reduction set R
    mean = np.mean(x, axis=axes, keepdims=True)  # (1) (*, 1, ...)
    xc = x - mean  # (2) (*, *ns)
    var = np.mean(xc * xc, axis=axes, keepdims=True)  # (3) (*, 1, ...), biased
    rstd = 1.0 / np.sqrt(var + eps)  # (4) (*, 1, ...)
    xhat = xc * rstd  # (5) (*, *ns)
    scale = weight if weight is None or offset == 0.0 else offset + weight  # (6a) the scale offset + gamma
    y = xhat if scale is None else xhat * scale  # (6) (*, *ns)
    y = y if bias is None else y + bias  # (7) (*, *ns)
    return y
# [docs:forward-end]
