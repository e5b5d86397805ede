"""Fused residual add + LayerNorm: the fast path.

``h = x + residual`` rounded once to ``residual_dtype`` (:mod:`refnorm.ops._residual`),
then the LayerNorm kernels of :mod:`refnorm.ops.layer_norm` on that rounded
``h``, viewed as LayerNorm's ``(1, rows, D)``.  The backward adds the
cotangent ``dh`` of the returned residual stream to LayerNorm's input
gradient; ``x`` and ``residual`` get that same total.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _residual as RS
from . import layer_norm as ln


def layout(x_shape, normalized_shape):
    """As LayerNorm's: the view ``(1, rows, D)`` of ``h`` (shaped like ``x``), ``mean``/``rstd`` per row."""
    return ln.layout(x_shape, normalized_shape)


def _prepare(x, residual, normalized_shape, residual_dtype):
    xa, h, _ = RS.prepare(x, residual, residual_dtype)
    V.check_normalized_shape(normalized_shape, xa.shape)
    return xa, h


def add_layer_norm_stats(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                         residual_dtype=None):
    """``((y, h), {"mean": mean, "rstd": rstd})``: the outputs and the saved
    statistics of ``h`` (shape ``x.shape[:-len(normalized_shape)]``)."""
    xa, h = _prepare(x, residual, normalized_shape, residual_dtype)
    y, stats = ln.layer_norm_stats(h, normalized_shape, weight, bias, eps, offset=offset)
    return (y, h), stats


def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                   residual_dtype=None):
    """Residual add fused with LayerNorm: the interface of flash-attn's
    ``layer_norm_fn(x, weight, bias, residual=residual, prenorm=True)``, which
    however normalizes the unrounded float32 sum; here ``y`` is the norm of the
    ``h`` that is returned.

    ``h = x + residual`` rounded once to ``residual_dtype`` (None: the dtype of
    ``x``; ``"float32"``: flash-attn's ``residual_in_fp32``), and
    ``y = layer_norm(h, normalized_shape, weight, bias, eps, offset=offset)``:
    the normalization of the *rounded* ``h``.

    Parameters
    ----------
    x, residual : arrays of the same shape ``(*, *normalized_shape)``,
        float16/bfloat16/float32/float64 (each may have its own dtype)
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    weight, bias : arrays of shape ``normalized_shape`` or None
    eps : float, added to the variance inside the square root
    offset : float, keyword only; the scale is ``offset + weight``
    residual_dtype : None or "float64"/"float32"/"float16"/"bfloat16" (or a NumPy dtype), keyword only

    Returns
    -------
    (y, h) : float64 arrays shaped like ``x``; ``h`` holds values of ``residual_dtype``.
    """
    xa, h = _prepare(x, residual, normalized_shape, residual_dtype)
    return ln.layer_norm(h, normalized_shape, weight, bias, eps, offset=offset), h


def add_layer_norm_backward(dy, dh, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                            residual_dtype=None, stats=None):
    """Gradients of :func:`add_layer_norm` for the cotangents ``dy`` (of ``y``)
    and ``dh`` (of the returned ``h``; None: zero).

    Returns ``{"x": dx, "residual": dresidual[, "weight": dweight][, "bias": dbias]}``
    with ``dx = dresidual = layer_norm_backward(dy, h, ...)["x"] + dh``; all float64.

    ``stats`` (keyword only): the statistics dict :func:`add_layer_norm_stats`
    returned for the same arguments (the statistics of ``h``); the backward
    then reads them instead of recomputing them (same bits), as
    :func:`~refnorm.ops.layer_norm.layer_norm_backward` does, with its checks.
    """
    xa, h = _prepare(x, residual, normalized_shape, residual_dtype)
    dh = RS.check_dh(dh, xa.shape)  # validated before any kernel runs
    dy = np.zeros(xa.shape) if dy is None else dy  # no cotangent of y: zero
    g = ln._layer_norm_backward(dy, h, normalized_shape, weight, bias, eps, offset, None, stats,
                                "add_layer_norm_backward")
    dx = g.pop("x") if dh is None else g.pop("x") + dh
    return {"x": dx, "residual": dx.copy(), **g}


def add_layer_norm_jvp(tangents, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                       residual_dtype=None):
    """Forward mode of :func:`add_layer_norm`: ``((y, h), (ty, th))``.

    ``tangents``: a dict over ``"x"``, ``"residual"``, ``"weight"``, ``"bias"``
    (missing = zero).  ``th = tx + tresidual`` (the rounding of ``h`` is
    straight-through, as in the backward) and ``ty`` is
    :func:`~refnorm.ops.layer_norm.layer_norm_jvp` of the rounded ``h`` along ``th``.
    """
    xa, h = _prepare(x, residual, normalized_shape, residual_dtype)
    ln._prepare(h, normalized_shape, weight, bias, eps, offset)  # the forward's checks come first
    t = V.check_directions("tangents", tangents, {"x": x, "residual": residual, "weight": weight, "bias": bias})
    th = RS.tangent_of_h(t, xa.shape)
    y, ty = ln.layer_norm_jvp({"x": th, "weight": t["weight"], "bias": t["bias"]}, h, normalized_shape, weight,
                              bias, eps, offset=offset)
    return (y, h), (ty, th)


def add_layer_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, bias=None,
                                   eps=1e-5, *, offset=0.0, residual_dtype=None):
    """Second order of :func:`add_layer_norm`: the VJP of
    :func:`add_layer_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"residual"``, ``"weight"``, ``"bias"``
    (missing = zero).  Returns ``{"dy", "dh", "x", "residual"}`` plus
    ``"weight"``, ``"bias"`` (zeros) when given: with ``a = cot_x + cot_residual``,
    ``dL/ddh = a`` and the rest is :func:`~refnorm.ops.layer_norm.layer_norm_double_backward`
    of ``h`` (``x`` and ``residual`` both get its ``dL/dh``).  ``dy``/``dh`` None: zero.
    """
    xa, h = _prepare(x, residual, normalized_shape, residual_dtype)
    ln._prepare(h, normalized_shape, weight, bias, eps, offset)
    RS.check_dh(dh, xa.shape)
    dy = np.zeros(xa.shape) if dy is None else dy
    c = V.check_directions("cotangents", cotangents, {"x": x, "residual": residual, "weight": weight, "bias": bias})
    inner = ln.layer_norm_double_backward({"x": RS.tangent_of_h(c, xa.shape), "weight": c["weight"],
                                           "bias": c["bias"]}, dy, h, normalized_shape, weight, bias, eps,
                                          offset=offset)
    return RS.fused_second_order(inner, c, xa.shape)
