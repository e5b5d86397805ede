"""Fused residual add + RMSNorm: the fast path.

``h = x + residual`` rounded once to ``residual_dtype`` (:mod:`refnorm.ops._residual`),
then the RMSNorm kernels of :mod:`refnorm.ops.rms_norm` on that rounded ``h``,
viewed as RMSNorm's ``(1, rows, D)``.  The backward adds the cotangent ``dh``
of the returned residual stream to RMSNorm's input gradient; ``x`` and
``residual`` get that same total (``h = x + residual``, the rounding
differentiated as the identity).
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _residual as RS
from . import rms_norm as rms


def layout(x_shape, normalized_shape):
    """As RMSNorm's: the view ``(1, rows, D)`` of ``h`` (shaped like ``x``), ``rstd`` per row."""
    return rms.layout(x_shape, normalized_shape)


def _prepare(x, residual, normalized_shape, eps, residual_dtype):
    xa, h, rd = RS.prepare(x, residual, residual_dtype)
    V.check_normalized_shape(normalized_shape, xa.shape)
    eps = rms.default_eps(RS.DTYPES[rd]) if eps is None else V.check_real("eps", eps)
    return xa, h, eps


def add_rms_norm_stats(x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
    """``((y, h), {"rstd": rstd})``: the outputs and the saved statistic of ``h``
    (shape ``x.shape[:-len(normalized_shape)]``)."""
    xa, h, eps = _prepare(x, residual, normalized_shape, eps, residual_dtype)
    y, stats = rms.rms_norm_stats(h, normalized_shape, weight, eps, offset=offset)
    return (y, h), stats


def add_rms_norm(x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
    """Residual add fused with RMSNorm, as vLLM's ``fused_add_rms_norm`` and
    Liger-Kernel's ``LigerFusedAddRMSNorm`` compute it.

    ``h = x + residual`` rounded once to ``residual_dtype`` (None: the dtype of
    ``x``; ``"float32"`` keeps the residual stream in float32), and
    ``y = rms_norm(h, normalized_shape, weight, eps, offset=offset)``: the
    normalization of the *rounded* ``h``.

    Parameters
    ----------
    x, residual : arrays of the same shape ``(*, *normalized_shape)``,
        float16/bfloat16/float32/float64 (each may have its own dtype)
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    weight : array of shape ``normalized_shape`` or None
    eps : float or None (None: RMSNorm's default for the dtype of ``h``)
    offset : float, keyword only; the scale is ``offset + weight`` (Gemma: 1.0)
    residual_dtype : None or "float64"/"float32"/"float16"/"bfloat16" (or a NumPy dtype), keyword only

    Returns
    -------
    (y, h) : float64 arrays shaped like ``x``; ``h`` holds values of ``residual_dtype``.
    """
    xa, h, eps = _prepare(x, residual, normalized_shape, eps, residual_dtype)
    return rms.rms_norm(h, normalized_shape, weight, eps, offset=offset), h


def add_rms_norm_backward(dy, dh, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                          residual_dtype=None, stats=None):
    """Gradients of :func:`add_rms_norm` for the cotangents ``dy`` (of ``y``) and
    ``dh`` (of the returned ``h``; None: zero).

    Returns ``{"x": dx, "residual": dresidual[, "weight": dweight]}`` with
    ``dx = dresidual = rms_norm_backward(dy, h, ...)["x"] + dh`` and
    ``dweight = sum_rows dy * xhat(h)``; all float64.

    ``stats`` (keyword only): the statistics dict :func:`add_rms_norm_stats`
    returned for the same arguments (the rstd of ``h``); the backward then
    reads it instead of recomputing it (same bits), as
    :func:`~refnorm.ops.rms_norm.rms_norm_backward` does, with its checks.
    """
    xa, h, eps = _prepare(x, residual, normalized_shape, eps, residual_dtype)
    dh = RS.check_dh(dh, xa.shape)  # validated before any kernel runs
    dy = np.zeros(xa.shape) if dy is None else dy  # no cotangent of y: zero
    g = rms._rms_norm_backward(dy, h, normalized_shape, weight, eps, offset, None, stats, "add_rms_norm_backward")
    dx = g.pop("x") if dh is None else g.pop("x") + dh
    return {"x": dx, "residual": dx.copy(), **g}


def add_rms_norm_jvp(tangents, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                     residual_dtype=None):
    """Forward mode of :func:`add_rms_norm`: ``((y, h), (ty, th))``.

    ``tangents``: a dict over ``"x"``, ``"residual"``, ``"weight"`` (missing =
    zero).  ``th = tx + tresidual`` (the rounding of ``h`` is straight-through,
    as in the backward) and ``ty`` is :func:`~refnorm.ops.rms_norm.rms_norm_jvp`
    of the rounded ``h`` along ``th``.
    """
    xa, h, eps = _prepare(x, residual, normalized_shape, eps, residual_dtype)
    rms._prepare(h, normalized_shape, weight, eps, offset)  # the forward's checks come first
    t = V.check_directions("tangents", tangents, {"x": x, "residual": residual, "weight": weight})
    th = RS.tangent_of_h(t, xa.shape)
    y, ty = rms.rms_norm_jvp({"x": th, "weight": t["weight"]}, h, normalized_shape, weight, eps, offset=offset)
    return (y, h), (ty, th)


def add_rms_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, eps=None, *,
                                 offset=0.0, residual_dtype=None):
    """Second order of :func:`add_rms_norm`: the VJP of :func:`add_rms_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"residual"``, ``"weight"`` (missing =
    zero).  Returns ``{"dy", "dh", "x", "residual"}`` plus ``"weight"`` when
    given: ``dL/ddh = cot_x + cot_residual`` and the rest is
    :func:`~refnorm.ops.rms_norm.rms_norm_double_backward` of ``h``.
    ``dy``/``dh`` None: zero.
    """
    xa, h, eps = _prepare(x, residual, normalized_shape, eps, residual_dtype)
    rms._prepare(h, normalized_shape, weight, eps, offset)
    RS.check_dh(dh, xa.shape)
    dy = np.zeros(xa.shape) if dy is None else dy
    c = V.check_directions("cotangents", cotangents, {"x": x, "residual": residual, "weight": weight})
    inner = rms.rms_norm_double_backward({"x": RS.tangent_of_h(c, xa.shape), "weight": c["weight"]}, dy, h,
                                         normalized_shape, weight, eps, offset=offset)
    return RS.fused_second_order(inner, c, xa.shape)
