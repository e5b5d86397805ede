"""Fused residual add + RMSNorm: the new residual stream and its normalization.

.. math::

   h = \\operatorname{round}_{d}(x + r), \\qquad
   y = \\operatorname{rms\\_norm}(h) = \\frac{h}{\\sqrt{\\frac{1}{D}\\sum_i h_i^2 + \\epsilon}}\\,(o + \\gamma)

Shapes
    x, residual r: ``(*, *normalized_shape)``; weight (gamma): ``normalized_shape``;
    outputs y and h: like x; saved statistic rstd (of h): ``x.shape[:-len(normalized_shape)]``.

Conventions
    ``h`` is the sum rounded **once** to ``residual_dtype`` d (None: the dtype
    of x; ``"float32"`` keeps the residual stream in float32, flash-attn's
    ``residual_in_fp32``), and ``y`` normalizes that rounded ``h`` (not the
    unrounded sum).  Everything else as :mod:`refnorm.reference.rms_norm`
    (``eps=None``, ``offset``).  The reference receives float64 arrays, a
    resolved ``eps`` and the ``residual_dtype`` name (None: no rounding).
    Backward: the rounding is differentiated as the identity, so with the
    cotangents dy (of y) and dh (of h), ``dx = dresidual = rms_norm_vjp(dy) + dh``.

References
    vLLM's CUDA ``fused_add_rms_norm`` and Liger-Kernel's ``LigerFusedAddRMSNorm``
    compute this function; FlashInfer and flash-attn normalize the unrounded
    float32 sum instead, a different function (docs/ops/add_rms_norm.md).
"""

from ._rounding import rounded_sum
from .rms_norm import rms_norm


# [docs:forward-start]
def add_rms_norm(x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
    h = rounded_sum(x, residual, residual_dtype)  # (1) the new residual stream: x + residual rounded once
    y = rms_norm(h, normalized_shape, weight, eps, offset=offset)  # (2) RMSNorm of the rounded h
    return y, h
# [docs:forward-end]
