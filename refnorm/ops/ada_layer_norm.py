"""Adaptive LayerNorm (adaLN, DiT): the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.ada_layer_norm`.  ``x`` of shape
``(N, *mid, *normalized_shape)`` is viewed as LayerNorm views it,
``(1, N*M, D)`` (``M = prod(mid)``, ``D = prod(normalized_shape)``): each row
is one reduction set, whose statistics, ``xhat`` and input gradient are the
shared LayerNorm kernels (:mod:`refnorm.ops._normalize`,
:mod:`refnorm.ops._derivatives`) with a unit affine.  The per-sample
modulation is elementwise on the ``(N, M, D)`` view::

    gain = 1 + scale                       (N, 1, D), rounded once
    y    = xhat * gain + shift             broadcast over the M rows of sample n

Backward (derivation: docs/ops/ada_layer_norm.md#ada-layer-norm-backward), per
row, with ``g = gain * dy`` (the row's gain times its cotangent)::

    dx     = rstd * (g - mean(g) - xhat * mean(g * xhat))    (LayerNorm's, weight -> gain)
    dscale = sum_{m} dy * xhat,   dshift = sum_{m} dy        (over mid, per (n, d))

The sums over ``mid`` are compensated (Sum2), one thread per ``(n, d)``, in
ascending ``m`` (:func:`refnorm.ops._derivatives.param_sums` on the transposed
``(M, N, D)`` view), so the bits do not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _derivatives as D
from . import _layout as L
from . import _normalize as nz
from ._sets import MODE_BATCH_STATS


def layout(x_shape, normalized_shape) -> L.Layout:
    """LayerNorm's view ``(1, N*M, D)`` and statistics ``mean``, ``rstd`` of shape
    ``(N, *mid)``; scale and shift span the batch axis and the normalized axes
    (``param_axes = (0, *trailing)``, shape ``(N, *normalized_shape)``).  The
    affine rule ``(1, D, 1)`` is the column of a set's element; the parameter
    row is the sample ``n = b // M``, which no ``(P, Q, T)`` rule expresses."""
    ns = V.check_normalized_shape(normalized_shape, x_shape)
    lay = L.trailing(x_shape, ns, ("mean", "rstd"))
    k = len(x_shape) - len(ns)
    axes = ((0,) if k > 0 else ()) + tuple(range(k, len(x_shape)))
    return L.Layout(lay.shape, lay.stats, lay.view, lay.affine, axes)


def _required(name, value, shape):
    if value is None:
        raise TypeError(f"{name} is required: an array of shape {shape} ((N, *normalized_shape), one vector per "
                        f"sample), got None")
    return V.check_param(name, value, shape, "(N, *normalized_shape): one vector per sample, broadcast by the op "
                         "over the dimensions between the batch and the normalized ones")


def _prepare(x, normalized_shape, scale, shift, eps):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, *mid, *normalized_shape): a batch dimension first")
    ns = V.check_normalized_shape(normalized_shape, xa.shape)
    if len(ns) >= xa.ndim:
        raise ValueError(f"x must have a batch dimension before normalized_shape {ns} "
                         f"((N, *mid, *normalized_shape)), got x of shape {tuple(xa.shape)}")
    pshape = (xa.shape[0],) + ns
    s = _required("scale", scale, pshape)
    t = _required("shift", shift, pshape)
    eps = V.check_real("eps", eps)
    x3 = V.to_f64(xa).reshape(layout(xa.shape, ns).view)
    N, D = xa.shape[0], math.prod(ns)
    M = math.prod(xa.shape[1: xa.ndim - len(ns)])
    return xa.shape, ns, x3, (N, M, D), s, t, eps


def _per_sample(p, dims):
    """A ``(N, *normalized_shape)`` array as ``(N, 1, D)``: broadcast over the M rows of each sample."""
    N, _, D = dims
    return p.reshape(N, 1, D)


def _gain(s, dims):
    """``1 + scale``, ``(N, 1, D)``, rounded once (a new array: scale is not modified)."""
    return 1.0 + _per_sample(s, dims)


def _normalized(x3, eps, D_):
    """``(xhat3, stats)``: LayerNorm with a unit affine (``1 * xhat + 0`` is ``xhat``)."""
    return nz.normalize(x3, eps, None, None, P=1, Q=D_)


def _mid_sums(u, v, dims, ns):
    """``sum_m u * v`` per ``(n, d)`` (u, v shaped ``(N, M, D)``), compensated, ascending ``m``:
    :func:`~refnorm.ops._derivatives.param_sums` on the ``(M, N, D)`` view with one parameter per
    ``(n, d)`` (``P = N, Q = D, T = 1``)."""
    N, M, D_ = dims
    ut = np.ascontiguousarray(np.asarray(u, dtype=np.float64).reshape(N, M, D_).transpose(1, 0, 2))
    vt = np.ascontiguousarray(np.asarray(v, dtype=np.float64).reshape(N, M, D_).transpose(1, 0, 2))
    out = np.empty(N * D_)
    if N * D_ > 0:
        D.param_sums(ut, vt, N, D_, 1, out)
    return out.reshape((N,) + tuple(ns))


def ada_layer_norm_stats(x, normalized_shape, scale, shift, eps=1e-6):
    """``y`` together with the saved statistics ``mean`` and ``rstd``, each of
    shape ``(N, *mid) = x.shape[:-len(normalized_shape)]``."""
    shape, ns, x3, dims, s, t, eps = _prepare(x, normalized_shape, scale, shift, eps)
    xhat3, st = _normalized(x3, eps, dims[2])
    y = xhat3.reshape(dims) * _gain(s, dims) + _per_sample(t, dims)  # (6)-(7)
    lead = shape[: len(shape) - len(ns)]
    return y.reshape(shape), {"mean": st.mean.reshape(lead), "rstd": st.rstd.reshape(lead)}


def ada_layer_norm(x, normalized_shape, scale, shift, eps=1e-6):
    """Adaptive LayerNorm (adaLN), as DiT's ``modulate(norm(x), shift, scale)``.

    .. math:: y = \\frac{x - \\mathrm{E}[x]}{\\sqrt{\\mathrm{Var}[x] + \\epsilon}} \\cdot (1 + s) + t

    over the last ``len(normalized_shape)`` dimensions (biased variance, ``eps``
    inside the square root: LayerNorm without affine), with the scale ``s`` and
    shift ``t`` of sample ``n`` applied to every row of that sample.

    Parameters
    ----------
    x : array ``(N, *mid, *normalized_shape)``, float16/bfloat16/float32/float64; ``mid`` may be
        empty (DiT: ``(N, T, hidden)``, ``normalized_shape = hidden``)
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    scale, shift : arrays ``(N, *normalized_shape)``, required: one vector per sample (DiT's
        ``adaLN_modulation(c).chunk(...)``); any other shape is refused (no silent broadcast)
    eps : float, added to the variance inside the square root (DiT's ``1e-6``)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return ada_layer_norm_stats(x, normalized_shape, scale, shift, eps)[0]


def ada_layer_norm_backward(dy, x, normalized_shape, scale, shift, eps=1e-6):
    """Gradients of :func:`ada_layer_norm`: ``{"x": dx, "scale": dscale, "shift": dshift}``, float64.

    Per row, with ``g = (1 + scale) * dy``: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``
    (LayerNorm's backward with the per-sample gain as the weight); over the ``mid``
    positions of each sample: ``dscale = sum dy * xhat``, ``dshift = sum dy``
    (docs/ops/ada_layer_norm.md#ada-layer-norm-backward).

    Shapes: ``dy`` and ``dx`` like ``x``; ``dscale``, ``dshift`` ``(N, *normalized_shape)``.
    """
    shape, ns, x3, dims, s, t, eps = _prepare(x, normalized_shape, scale, shift, eps)
    dy3 = V.check_dy(dy, shape).reshape(dims)
    xhat3, st = _normalized(x3, eps, dims[2])
    g = dy3 * _gain(s, dims)  # (b1) the row's gain times dy
    dx3, _, _ = nz.backward(g.reshape(x3.shape), x3, st, None, P=1, Q=dims[2], affine=False)  # (b2)-(b4)
    return {"x": dx3.reshape(shape), "scale": _mid_sums(dy3, xhat3, dims, ns),  # (b5)
            "shift": _mid_sums(dy3, np.ones(dims), dims, ns)}  # (b6)


# ============================================================================= forward mode and second order
#
# With P(v) = v - mean(v) - xhat mean(xhat v) per row (docs/ops/layer_norm.md; d xhat = rstd P(dx)):
#   JVP:  ty = gain * rstd P(tx) + tscale * xhat + tshift
#   second order, for the cotangents (a, gs, gb) of (dx, dscale, dshift), g = gain dy, c = gs dy:
#     d2dy    = gain * rstd P(a) + gs * xhat + gb
#     d2scale = sum_m dy * rstd P(a)
#     d2shift = 0
#     d2x     = rstd P(c) - rstd^2 (beta (a - abar) + alpha (g - gbar) + (mean(a g) - abar gbar - 3 alpha beta) xhat)
# (LayerNorm's second order with the per-sample gain and cotangent; docs/ops/ada_layer_norm.md#ada-layer-norm-jvp).


def _directions(kind, value, x, scale, shift, dims):
    d = V.check_directions(kind, value, {"x": x, "scale": scale, "shift": shift})
    per = {k: None if d[k] is None else _per_sample(d[k], dims) for k in ("scale", "shift")}
    return d["x"], per["scale"], per["shift"]


def _projected(x3, st, v):
    """``rstd * P(v)`` per row (the JVP kernel with a unit affine), shaped like ``x3``."""
    return D.jvp(x3, st, None, {"x": v}, 1, x3.shape[2], MODE_BATCH_STATS)


def ada_layer_norm_jvp(tangents, x, normalized_shape, scale, shift, eps=1e-6):
    """Forward mode of :func:`ada_layer_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"scale"``, ``"shift"`` (missing = zero), each
    shaped like its argument.  Per row, with ``P(v) = v - mean(v) - xhat * mean(xhat * v)``:
    ``ty = (1 + scale) * rstd * P(tx) + tscale * xhat + tshift``.  ``y`` has the bits of
    :func:`ada_layer_norm`; both float64, shaped like ``x``.
    """
    shape, ns, x3, dims, s, t, eps = _prepare(x, normalized_shape, scale, shift, eps)
    tx, ts, tt = _directions("tangents", tangents, x, scale, shift, dims)
    xhat3, st = _normalized(x3, eps, dims[2])
    xhat = xhat3.reshape(dims)
    gain = _gain(s, dims)
    y = xhat * gain + _per_sample(t, dims)
    ty = _projected(x3, st, tx).reshape(dims) * gain
    if ts is not None:
        ty = ty + ts * xhat
    if tt is not None:
        ty = ty + tt
    return y.reshape(shape), ty.reshape(shape)


def ada_layer_norm_double_backward(cotangents, dy, x, normalized_shape, scale, shift, eps=1e-6):
    """Second order of :func:`ada_layer_norm`: the VJP of :func:`ada_layer_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"scale"``, ``"shift"`` (the keys of the
    backward's result; missing = zero).  For ``L = sum_k <cotangents[k], backward(dy, ...)[k]>``
    returns ``{"dy": dL/ddy, "x": dL/dx, "scale": dL/dscale, "shift": 0}`` (the backward
    does not read the shift); float64, shaped like the arguments
    (docs/ops/ada_layer_norm.md#ada-layer-norm-second-order).
    """
    shape, ns, x3, dims, s, t, eps = _prepare(x, normalized_shape, scale, shift, eps)
    dy3 = V.check_dy(dy, shape).reshape(dims)
    ca, gs, gb = _directions("cotangents", cotangents, x, scale, shift, dims)
    xhat3, st = _normalized(x3, eps, dims[2])
    gain = _gain(s, dims)
    g = (dy3 * gain).reshape(x3.shape)
    # LayerNorm's second order at unit weight and cotangent dy' = g: rpa = rstd P(a), and the d2x terms of a
    rpa3, d2x3, _ = D.double_backward(g, x3, st, None, {"x": ca}, 1, x3.shape[2], MODE_BATCH_STATS)
    rpa = rpa3.reshape(dims)
    d2dy = rpa * gain
    d2x = d2x3.reshape(dims)
    if gs is not None:
        xhat = xhat3.reshape(dims)
        d2dy = d2dy + gs * xhat
        d2x = d2x + _projected(x3, st, (gs * dy3).reshape(x3.shape)).reshape(dims)  # rstd P(c), c = gs dy
    if gb is not None:
        d2dy = d2dy + gb
    return {"dy": d2dy.reshape(shape), "x": d2x.reshape(shape), "scale": _mid_sums(dy3, rpa, dims, ns),
            "shift": np.zeros((dims[0],) + tuple(ns))}


__all__ = ["ada_layer_norm", "ada_layer_norm_backward", "ada_layer_norm_double_backward", "ada_layer_norm_jvp",
           "ada_layer_norm_stats"]
