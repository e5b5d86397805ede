"""Weight Normalization (``torch._weight_norm``): the fast path.

The definition and every convention are in :mod:`refnorm.reference.weight_norm`
(``w = v * (g / ||v||)``, the L2 norm over every dimension but ``dim``; ``dim=None``
or ``-1``: over the whole tensor).  Here ``v`` is copied, in float64, into the
rows ``v2`` of shape ``(C, D)``: row ``c`` is the slice ``c`` along ``dim``
(``np.moveaxis(v, dim, 0)``), ``D`` its size; the whole tensor is one row.

The norm without overflow or underflow (:func:`_row_stats`), per row (as
:mod:`refnorm.ops.scale_norm`)::

    m  = max_j |v_j|  (exact),  m = f * 2^e with f in [0.5, 1)   (math.frexp)
    a_j = v_j * 2^-e   (math.ldexp: exact, |a_j| < 1)
    ss = sum_j a_j^2   in double-double (two_prod + two_sum), in [1/4, D]
    rs = 1/sqrt(ss)    (rsqrt_dd, double-double (rh, rl));   k = -e
    n  = sqrt(ss) * 2^e   (the saved statistic ``norm``),   r = 1/n = rs * 2^k

so ``xhat_j = v_j / n = a_j * rs`` (one rounding of the exact product) never
overflows, and ``r * t`` is evaluated as ``ldexp(t * rs, k)``.  Zero row: ``n = 0``
and every output of the row is NaN (PyTorch: ``0 * (g / 0)``); NaN in a row: NaN;
an infinite element: ``n = inf``, ``r = 0``, ``w = g v * 0`` (NaN at the infinite
element, 0 elsewhere, as PyTorch's ``v * (g / inf)``).

Forward, backward, forward mode, second order (derivations: docs/ops/weight_norm.md),
per row ``c`` with ``g = g_c``, ``dw`` the cotangent of ``w`` (the argument ``dy``),
``a = <dw, xhat>`` and ``P(t) = t - xhat <xhat, t>``::

    w_j   = g * xhat_j
    dv_j  = g * r * P(dw)_j = g r (dw_j - xhat_j a),      dg_c = a   (= sum_j dw_j v_j / n)
    tw_j  = tg * xhat_j + g * r * P(tv)_j
    d2dy  = cg xhat + g r P(cv)                            (the JVP along (cv, cg))
    d2v   = cg r P(dw) - g r^2 ((<cv, dw> - a b) xhat + a P(cv) + b P(dw)),  b = <xhat, cv>
    d2g_c = r (<cv, dw> - a b)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _validate as V
from . import _layout as L
from . import _rownorm as RN
from ._dd import rsqrt_dd, two_prod
from ._jit import pjit, prange

# the per-row state kept by _row_stats: rs = RH + RL, r = rs * 2^K, IND = 1 (no clamp: the kernels of
# refnorm.ops._rownorm, shared with ScaleNorm, with its derivative 1), NORM the saved statistic n
RH, RL, K, IND, NORM = RN.RH, RN.RL, RN.K, RN.IND, 4


@pjit
def _row_stats(x, st):
    """Per row of ``x`` ``(C, D)``: ``st[:, RH], st[:, RL], st[:, K]`` (the scale
    ``r = 1/n``) and ``st[:, NORM]`` (``n``, rounded once); see the module docstring."""
    R, D = x.shape
    for i in prange(R):
        m, nan = RN.row_absmax(x, i)
        k = 0
        if nan:  # NaN norm: every output of the row NaN
            rh, rl, n = math.nan, 0.0, math.nan
        elif m == math.inf:  # n = inf: r = 0
            rh, rl, n = 0.0, 0.0, math.inf
        elif m == 0.0:  # a zero row: n = 0, r = inf; 0 * inf = NaN everywhere on the row (PyTorch)
            rh, rl, n = math.nan, 0.0, 0.0
        else:
            e = math.frexp(m)[1]
            sh, sl = RN.scaled_sumsq(x, i, e)  # (1) ss = sum (v 2^-e)^2 in [1/4, D]
            rh, rl = rsqrt_dd(sh, sl)  # (2)-(3) rs = 1/sqrt(ss)
            k = -e
            s = math.sqrt(sh)  # (2) sqrt(ss), one Newton step on the double-double ss
            p, pe = two_prod(s, s)
            s += ((sh - p) - pe + sl) / (2.0 * s)
            n = math.ldexp(s, e)
        st[i, RH] = rh
        st[i, RL] = rl
        st[i, K] = k
        st[i, NORM] = n


def _check_dim(dim, ndim):
    """``dim`` as the kept axis ``k``, or None for the whole tensor (``dim`` None or -1)."""
    if dim is None:
        return None
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int or None, got {type(dim).__name__} {dim!r}")
    dim = int(dim)
    if dim == -1:
        return None
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be None, -1 (the whole tensor) or in [-{ndim}, {ndim - 1}] for v of "
                         f"{ndim} dimensions, got {dim}")
    return dim + ndim if dim < 0 else dim


def _norm_shape(shape, k):
    """The shape of ``norm_except_dim``: ``shape`` with every axis but ``k`` set to 1; ``()`` for ``k`` None."""
    return () if k is None else tuple(s if i == k else 1 for i, s in enumerate(shape))


def layout(v_shape, dim=0) -> L.Layout:
    """``v`` viewed as ``(pre, C, post)`` around ``dim`` (``(1, 1, size)`` for the
    whole tensor): set ``c`` is the slice ``c`` along ``dim``; ``g`` and the
    statistic ``norm`` hold one value per set (``norm`` in the keepdims shape of
    ``norm_except_dim``, ``()`` for the whole tensor)."""
    shape = tuple(int(s) for s in v_shape)
    k = _check_dim(dim, len(shape))
    if k is None:
        view = (1, 1, V.prod(shape))
    else:
        view = (V.prod(shape[:k]), shape[k], V.prod(shape[k + 1:]))
    return L.Layout(shape, {"norm": _norm_shape(shape, k)}, view, (view[1], 1, view[2]), ())


def _rows(a, k):
    """``a`` (float64, shaped like ``v``) as the C-contiguous rows ``(C, D)``."""
    if k is None:
        return np.ascontiguousarray(a).reshape(1, -1)
    return np.ascontiguousarray(np.moveaxis(a, k, 0)).reshape(a.shape[k], -1)


def _unrows(a2, shape, k):
    if k is None:
        return a2.reshape(shape)
    moved = (shape[k],) + tuple(s for i, s in enumerate(shape) if i != k)
    return np.moveaxis(a2.reshape(moved), 0, k)


def _prepare(v, g, dim):
    va = V.check_input("v", v, min_ndim=1, layout="any weight shape, e.g. (out, in) or (C_out, C_in, *kernel)")
    k = _check_dim(dim, va.ndim)
    if va.size == 0:
        raise ValueError(f"v must have at least one element (PyTorch returns an empty w and a zero dg), "
                         f"got shape {tuple(va.shape)}")
    ga = V.as_float_array("g", g)
    want = _norm_shape(va.shape, k)
    ok = (tuple(ga.shape) in (want, (1,) * va.ndim)) if k is None else tuple(ga.shape) == want
    if not ok:
        what = (f"() or {(1,) * va.ndim} (one length for the whole tensor, dim={dim!r})" if k is None else
                f"{want} (v.shape with every dimension but dim={dim} set to 1, as norm_except_dim)")
        raise ValueError(f"g must have shape {what}, got shape {tuple(ga.shape)}")
    v2 = _rows(V.to_f64(va), k)
    g1 = V.to_f64(ga).reshape(-1).copy()
    return va.shape, k, v2, g1, tuple(ga.shape)


def _stats(v2):
    st = np.empty((v2.shape[0], 5))
    _row_stats(v2, st)
    st[:, IND] = 1.0
    return st


def weight_norm_stats(v, g, dim=0):
    """``w`` and the saved statistic ``norm`` (``n`` per slice, the shape of
    ``norm_except_dim(v, 2, dim)``: ``g``'s shape for ``dim = k``, ``()`` for the
    whole tensor).  Arguments as :func:`weight_norm`."""
    shape, k, v2, g1, _ = _prepare(v, g, dim)
    st = _stats(v2)
    y = np.empty_like(v2)
    RN.forward(v2, st, g1, y)
    return _unrows(y, shape, k), {"norm": st[:, NORM].reshape(_norm_shape(shape, k)).copy()}


def weight_norm(v, g, dim=0):
    """Weight Normalization (Salimans & Kingma 2016): ``w = v * (g / ||v||)``, the L2 norm over
    every dimension except ``dim`` (``torch._weight_norm(v, g, dim)``).

    Parameters
    ----------
    v : array, float16/bfloat16/float32/float64, at least one dimension and one element
        (the direction, ``parametrizations.weight.original1``)
    g : array, the length per slice (``original0``): ``v.shape`` with every dimension but
        ``dim`` set to 1; for the whole tensor ``()`` or ``(1,) * v.ndim``
    dim : int or None.  The dimension kept (one norm per index along it; negative values
        other than -1 count from the end).  ``None`` or ``-1``: one norm over the WHOLE
        tensor, as PyTorch (``-1`` is not the last dimension here).

    Returns
    -------
    w : float64 array shaped like ``v``.  A slice of zeros gives NaN (no eps, as PyTorch).
    """
    return weight_norm_stats(v, g, dim)[0]


def weight_norm_backward(dy, v, g, dim=0):
    """Gradients of :func:`weight_norm` for the cotangent ``dy`` of ``w``: ``{"v": dv, "g": dg}``, float64.

    Per slice, with ``n = ||v||``: ``dg = sum(dy * v) / n`` and
    ``dv = (g / n) (dy - v sum(dy * v) / n^2)`` (PyTorch's ``_weight_norm_differentiable_backward``).
    ``dv`` is shaped like ``v``, ``dg`` like ``g``.  A zero slice: NaN.
    """
    shape, k, v2, g1, gshape = _prepare(v, g, dim)
    dy2 = _rows(V.check_dy(dy, shape, "dy", "the forward output w"), k)
    st = _stats(v2)
    dv = np.empty_like(v2)
    rows = np.empty((v2.shape[0], 2))
    RN.backward(dy2, v2, st, g1, dv, rows)
    dg = rows[:, 0] + rows[:, 1]  # the per-row <dw, xhat>, rounded once
    return {"v": _unrows(dv, shape, k), "g": dg.reshape(gshape)}


def _directions(kind, value, v, g, v2, k, ga_shape):
    D = V.check_directions(kind, value, {"v": v, "g": g})
    tv = np.zeros_like(v2) if D["v"] is None else _rows(D["v"], k)
    tg = np.zeros(v2.shape[0]) if D["g"] is None else D["g"].reshape(-1).copy()
    return tv, tg


def weight_norm_jvp(tangents, v, g, dim=0):
    """Forward mode of :func:`weight_norm`: ``(w, tw)``.

    ``tangents``: a dict over ``"v"`` (shaped like ``v``) and ``"g"`` (shaped like
    ``g``); a missing key is a zero tangent.  Per slice
    ``tw = tg * v / n + (g / n) (tv - (v / n) <v / n, tv>)``.  ``w`` has the bits of
    :func:`weight_norm`; float64, shaped like ``v``.
    """
    shape, k, v2, g1, gshape = _prepare(v, g, dim)
    tv, tg = _directions("tangents", tangents, v, g, v2, k, gshape)
    st = _stats(v2)
    y = np.empty_like(v2)
    RN.forward(v2, st, g1, y)
    ty = np.empty_like(v2)
    RN.jvp(v2, tv, st, g1, tg, ty)
    return _unrows(y, shape, k), _unrows(ty, shape, k)


def weight_norm_double_backward(cotangents, dy, v, g, dim=0):
    """Second order of :func:`weight_norm`: the VJP of :func:`weight_norm_backward`.

    ``cotangents``: a dict over ``"v"``, ``"g"`` (the cotangents of ``dv`` and
    ``dg``; missing = zero).  Returns ``{"dy": ..., "v": ..., "g": ...}``, the
    gradients of ``L = <cv, dv> + <cg, dg>``, float64, shaped like ``dy``, ``v`` and
    ``g`` (docs/ops/weight_norm.md#weight-norm-second-order).
    """
    shape, k, v2, g1, gshape = _prepare(v, g, dim)
    dy2 = _rows(V.check_dy(dy, shape, "dy", "the forward output w"), k)
    cx, cg = _directions("cotangents", cotangents, v, g, v2, k, gshape)
    st = _stats(v2)
    ddy = np.empty_like(v2)
    RN.jvp(v2, cx, st, g1, cg, ddy)  # d2dy = J c
    d2x = np.empty_like(v2)
    d2g = np.empty(v2.shape[0])
    RN.double_backward(dy2, v2, cx, st, g1, cg, d2x, d2g)
    return {"dy": _unrows(ddy, shape, k), "v": _unrows(d2x, shape, k), "g": d2g.reshape(gshape)}


__all__ = ["weight_norm", "weight_norm_backward", "weight_norm_double_backward", "weight_norm_jvp",
           "weight_norm_stats"]
