"""Fused residual add + LayerNorm: the new residual stream and its normalization.

.. math::

   h = \\operatorname{round}_{d}(x + r), \\qquad
   y = \\operatorname{layer\\_norm}(h) = \\frac{h - \\mathrm{E}[h]}{\\sqrt{\\mathrm{Var}[h] + \\epsilon}}\\,(o + \\gamma) + \\beta

Shapes
    x, residual r: ``(*, *normalized_shape)``; weight (gamma), bias (beta):
    ``normalized_shape``; outputs y and h: like x; saved statistics mean, rstd
    (of h): ``x.shape[:-len(normalized_shape)]``.

Conventions
    ``h`` is the sum rounded **once** to ``residual_dtype`` d (None: the dtype
    of x; ``"float32"``: flash-attn's ``residual_in_fp32``), and ``y``
    normalizes that rounded ``h``.  Everything else as
    :mod:`refnorm.reference.layer_norm` (biased variance, ``offset``).  The
    reference receives float64 arrays and the ``residual_dtype`` name (None:
    no rounding).  Backward: the rounding is differentiated as the identity,
    so ``dx = dresidual = layer_norm_vjp(dy) + dh``.

References
    The LayerNorm counterpart of add_rms_norm; flash-attn's
    ``layer_norm_fn(..., residual=, prenorm=True)`` has the same interface but
    normalizes the unrounded float32 sum (docs/ops/add_layer_norm.md).
"""

from ._rounding import rounded_sum
from .layer_norm import layer_norm


# [docs:forward-start]
def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                   residual_dtype=None):
    h = rounded_sum(x, residual, residual_dtype)  # (1) the new residual stream: x + residual rounded once
    y = layer_norm(h, normalized_shape, weight, bias, eps, offset=offset)  # (2) LayerNorm of the rounded h
    return y, h
# [docs:forward-end]
