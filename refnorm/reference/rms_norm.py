"""RMSNorm: scale each sample by the reciprocal root mean square of its trailing dims.

.. math::

   r = \\Big(\\frac{1}{D}\\sum_i x_i^2 + \\epsilon\\Big)^{-1/2}, \\qquad y_i = \\gamma_i\\, x_i\\, r

Shapes
    x: ``(*, *normalized_shape)``; weight (gamma): ``normalized_shape``; saved
    statistic rstd: ``x.shape[:-len(normalized_shape)]``.

Conventions
    No mean subtraction and no bias.  ``eps`` inside the square root.  The
    keyword ``offset`` makes the scale ``offset + gamma`` (Gemma's RMSNorm:
    ``offset=1.0``); it applies only with a weight, and the gradient is still
    taken with respect to gamma.
    ``eps=None`` is PyTorch's actual default: ``finfo(float64).eps`` for float64
    input, ``finfo(float32).eps`` for float32, float16 and bfloat16 (its CPU
    composite upcasts half types to float32 and uses float32's epsilon; the
    docs' "finfo(x.dtype).eps" is not what runs).  The reference receives the
    already-resolved float ``eps``.

References
    Zhang & Sennrich, "Root Mean Square Layer Normalization", arXiv:1910.07467,
    eq. (4); ``torch.nn.functional.rms_norm``.
"""

import autograd.numpy as np


# [docs:forward-start]
def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    axes = tuple(range(x.ndim - len(ns), x.ndim))  # (0) the reduction set R
    ms = np.mean(x * x, axis=axes, keepdims=True)  # (1) (*, 1, ...) mean square
    rstd = 1.0 / np.sqrt(ms + eps)  # (2) (*, 1, ...)
    xhat = x * rstd  # (3) (*, *ns)
    scale = weight if weight is None or offset == 0.0 else offset + weight  # (4a) the scale offset + gamma
    y = xhat if scale is None else xhat * scale  # (4) (*, *ns)
    return y
# [docs:forward-end]
