"""LayerNorm: the fast path (validation, canonical view, kernels).

The definition is :mod:`refnorm.reference.layer_norm`.  Here ``x`` of shape
``(*, *normalized_shape)`` is viewed as ``(1, rows, D)`` with
``D = prod(normalized_shape)``: each row is one reduction set, and the affine
parameters are per element of the row (``P = 1, T = 1``).
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _normalize as nz


def _prepare(x, normalized_shape, weight, bias, eps):
    xa = V.check_input("x", x, min_ndim=1, layout="(*, *normalized_shape)")
    ns = V.check_normalized_shape(normalized_shape, xa.shape)
    w = V.check_param("weight", weight, ns, "normalized_shape")
    b = V.check_param("bias", bias, ns, "normalized_shape")
    eps = V.check_real("eps", eps)
    D = V.prod(ns)
    rows = V.prod(xa.shape[: xa.ndim - len(ns)])
    x3 = V.to_f64(xa).reshape(1, rows, D)
    return xa.shape, ns, x3, w, b, eps


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``y`` together with the saved statistics ``mean`` and ``rstd``, each of
    shape ``x.shape[:-len(normalized_shape)]``."""
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps)
    st = nz.batch_stats(x3, eps)
    y = nz.forward(x3, st, w, b, P=1, Q=x3.shape[2]).reshape(shape)
    lead = shape[: len(shape) - len(ns)]
    return y, {"mean": st.mean.reshape(lead), "rstd": st.rstd.reshape(lead)}


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization, as ``torch.nn.functional.layer_norm``.

    .. math:: y = \\frac{x - \\mathrm{E}[x]}{\\sqrt{\\mathrm{Var}[x] + \\epsilon}} \\cdot \\gamma + \\beta

    over the last ``len(normalized_shape)`` dimensions, with the biased
    variance and ``eps`` inside the square root.

    Parameters
    ----------
    x : array, shape ``(*, *normalized_shape)``, float16/bfloat16/float32/float64
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    weight, bias : array of shape ``normalized_shape`` or None (per element)
    eps : float, added to the variance inside the square root

    Returns
    -------
    y : float64 array shaped like ``x``.
    """
    return layer_norm_stats(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Gradients of :func:`layer_norm` for the cotangent ``dy``.

    Returns ``{"x": dx, "weight": dweight, "bias": dbias}`` (the last two only
    when given), float64, shaped like the corresponding arguments.  With
    ``g = weight * dy`` per row: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``;
    ``dweight = sum_rows dy * xhat``; ``dbias = sum_rows dy``.
    """
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    st = nz.batch_stats(x3, eps)
    dx3, dw, db = nz.backward(dy3, x3, st, w, P=1, Q=x3.shape[2], affine=w is not None or b is not None)
    out = {"x": dx3.reshape(shape)}
    if w is not None:
        out["weight"] = dw.reshape(ns)
    if b is not None:
        out["bias"] = db.reshape(ns)
    return out
