"""ScaleNorm: the fast path.

The definition and every convention are in :mod:`refnorm.reference.scale_norm`
(``y = g * x / max(||x||_2, eps)`` over the last dimension, one scalar ``g``).
``x`` of shape ``(*, d)`` is viewed as ``(rows, d)``; each row is one set.

The norm without overflow or underflow (:func:`_row_stats`), per row::

    m  = max_j |x_j|  (exact),  m = f * 2^e with f in [0.5, 1)   (math.frexp)
    xs_j = x_j * 2^-e  (math.ldexp: exact, |xs_j| < 1; an element below 2^-1022 m may
                        lose bits as a subnormal, which changes ss by < 2^-2000 relative)
    ss = sum_j xs_j^2  in double-double (two_prod + two_sum), in [1/4, d]
    n  = sqrt(ss) * 2^e

so the sum of squares can neither overflow nor underflow for any finite float64
input.  ``ss`` is the exact sum of the exact squares to about ``d * 2^-104``
relative (the compensated sum of exact products), and ``rs = 1/sqrt(ss)``
comes from :func:`refnorm.ops._dd.rsqrt_dd` to about ``2^-104``: the saved
``rnorm = rs * 2^-e`` is the correctly rounded value of ``1/n`` but in a
vanishing fraction of cases (ties within ``~d 2^-104`` of a rounding
boundary), and is never computed as ``1/n`` from an overflowed ``n``.

Per row the kernels keep ``r = (rh + rl) * 2^k``: ``rs`` and ``k = -e`` where
the norm is at least ``eps``; ``1/eps`` (double-double) and ``k = 0`` where
the clamp is active.  ``ind`` is the derivative of the clamp: 1 where
``n >= eps`` (the tie included: PyTorch's ``clamp(min=eps)`` backward), 0
where ``n < eps``; the comparison is made on ``ss`` against the exact square
of ``eps * 2^-e`` (``two_prod``), so an exact tie is found exactly.

Forward, backward, forward mode, second order (the kernels of :mod:`refnorm.ops._rownorm`,
shared with Weight Normalization; derivations: docs/ops/scale_norm.md), per row, with ``xhat_j = x_j * r`` (one rounding of
the exact product ``xs_j * rs``) and ``P(v) = v - ind * xhat * <xhat, v>``::

    y_j   = g * xhat_j
    dx_j  = g * r * P(dy)_j,          dg = sum_rows <dy, xhat>
    ty_j  = tg * xhat_j + g * r * P(tx)_j
    d2dy  = g r P(cx) + cg xhat
    d2x   = cg r P(dy) - ind g r^2 ((<cx, dy> - a b) xhat + a P(cx) + b P(dy)),
            a = <xhat, dy>,  b = <xhat, cx>
    d2g   = sum_rows r (<cx, dy> - ind a b)

where ``r * v`` is evaluated as ``ldexp(v * rs, k)``, so that neither ``r`` nor
``r^2`` overflows on its own.  NaN in a row: that row's outputs are NaN; an
infinite element: ``n = inf``, ``r = 0``, ``y = g x * 0`` (NaN at the infinite
element, 0 elsewhere), as PyTorch gives.
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

# the per-row state kept by _row_stats: r = (RH + RL) * 2^K, IND = d max(n, eps)/dn, RNORM the saved statistic
RH, RL, K, IND, RNORM = RN.RH, RN.RL, RN.K, RN.IND, 4


@pjit
def _row_stats(x, eps, st):
    """Per row of ``x`` ``(rows, d)``: ``st[:, RH], st[:, RL], st[:, K]`` (the
    scale ``r``), ``st[:, IND]`` (the clamp's derivative) and ``st[:, RNORM]``
    (``r`` rounded to a double); see the module docstring."""
    R, D = x.shape
    for i in prange(R):
        m, nan = RN.row_absmax(x, i)
        k = 0
        ind = 1.0
        if nan:  # NaN norm: clamp(NaN) is NaN (PyTorch), every output of the row NaN
            rh, rl = math.nan, 0.0
        elif m == math.inf:  # n = inf >= eps: r = 0
            rh, rl = 0.0, 0.0
        elif m == 0.0:  # a zero row: active clamp (eps > 0), or 0 >= 0 with eps = 0 (r = inf, NaN outputs)
            if eps > 0.0:
                ind = 0.0
                rh = 1.0 / eps
                p, pe = two_prod(rh, eps)
                rl = ((1.0 - p) - pe) / eps
            else:
                rh, rl = math.inf, 0.0
        else:
            e = math.frexp(m)[1]
            sh, sl = RN.scaled_sumsq(x, i, e)  # (1) ss = sum (x 2^-e)^2 in [1/4, d]
            es = math.ldexp(eps, -e)  # eps on the same scale
            if es < 0.5 ** 500:  # es^2 < 2^-1000 < ss: the norm is above eps
                above = True
            elif es > 2.0 ** 500:  # es^2 > 2^1000 > ss
                above = False
            else:
                q, qe = two_prod(es, es)  # es^2 exactly
                above = sh > q or (sh == q and sl >= qe)  # n >= eps, the tie included
            if above:
                rh, rl = rsqrt_dd(sh, sl)  # (2)-(4) r = 1/sqrt(ss) * 2^-e
                k = -e
            else:
                ind = 0.0
                rh = 1.0 / eps  # (3)-(4) the clamp: r = 1/eps
                p, pe = two_prod(rh, eps)
                rl = ((1.0 - p) - pe) / eps
        st[i, RH] = rh
        st[i, RL] = rl
        st[i, K] = k
        st[i, IND] = ind
        st[i, RNORM] = math.ldexp(rh, k)


def layout(x_shape) -> L.Layout:
    """``x`` viewed as ``(1, rows, d)``: each row of the last dimension is one
    set; ``rnorm`` has shape ``x.shape[:-1]``; ``g`` is one scalar (no
    parameter axes: it is shared by every position)."""
    d = int(x_shape[-1])
    lead = tuple(x_shape[:-1])
    return L.Layout(x_shape, {"rnorm": lead}, (1, V.prod(lead), d), (1, 1, max(d, 1)), ())


def _check_g(g):
    """``g`` as ``(float value, shape of its gradient)``: a Python real (not a
    bool), or a float array of shape ``()`` or ``(1,)``."""
    if isinstance(g, numbers.Real) and not isinstance(g, (bool, np.bool_)) and not isinstance(g, np.ndarray):
        return float(g), ()
    ga = V.as_float_array("g", g)
    if ga.shape not in ((), (1,)):
        raise ValueError(f"g must be a scalar: a Python float, a 0-d array or an array of shape (1,) "
                         f"(ScaleNorm has one learnable scale), got shape {tuple(ga.shape)}")
    return float(ga.astype(np.float64).reshape(())), tuple(ga.shape)


def _prepare(x, g, eps):
    xa = V.check_input("x", x, min_ndim=1, layout="(*, d), normalized over the last dimension")
    gv, gshape = _check_g(g)
    eps = V.check_real("eps", eps)
    if not (0.0 <= eps < math.inf):
        raise ValueError(f"eps must be finite and >= 0 (the floor of the norm), got {eps}")
    d = xa.shape[-1]
    x2 = V.to_f64(xa).reshape(-1, d) if d > 0 else np.zeros((V.prod(xa.shape[:-1]), 0))
    return xa.shape, x2, gv, gshape, eps


def _stats(x2, eps):
    st = np.empty((x2.shape[0], 5))
    _row_stats(x2, eps, st)
    return st


def _per_row(v: float, x2):
    """ScaleNorm's one gain (or its tangent / cotangent) as the per-row array the shared kernels take."""
    return np.full(x2.shape[0], v)


def _fsum_rows(a) -> float:
    """A deterministic, correctly rounded sum of per-row partials (any layout)."""
    return math.fsum(np.ravel(a).tolist())


def scale_norm_stats(x, g, eps=1e-5):
    """``y`` and the saved statistic ``rnorm = 1 / max(||x||, eps)`` per row
    (shape ``x.shape[:-1]``).  Arguments as :func:`scale_norm`."""
    shape, x2, gv, _, eps = _prepare(x, g, eps)
    st = _stats(x2, eps)
    y = np.empty_like(x2)
    RN.forward(x2, st, _per_row(gv, x2), y)
    return y.reshape(shape), {"rnorm": st[:, RNORM].reshape(shape[:-1]).copy()}


def scale_norm(x, g, eps=1e-5):
    """ScaleNorm (Nguyen & Salazar 2019): ``y = g * x / max(||x||_2, eps)`` over the last dimension.

    Parameters
    ----------
    x : array ``(*, d)``, float16/bfloat16/float32/float64
    g : the learnable scale, one scalar: a Python float, a 0-d array or an
        array of shape ``(1,)`` (the paper initialises it to ``sqrt(d)``)
    eps : float >= 0, the floor of the L2 norm (``clamp(min=eps)``, the authors' code)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return scale_norm_stats(x, g, eps)[0]


def scale_norm_backward(dy, x, g, eps=1e-5):
    """Gradients of :func:`scale_norm`: ``{"x": dx, "g": dg}``, float64.

    Per row, with ``r = 1/max(||x||, eps)``, ``xhat = x r`` and ``ind`` = 1 where
    ``||x|| >= eps`` (the tie included, as PyTorch's clamp), 0 where the clamp
    is active: ``dx = g r (dy - ind * xhat * <dy, xhat>)``; ``dg = sum over
    all rows of <dy, xhat>``.  ``dx`` is shaped like ``x``; ``dg`` has the shape
    ``g`` was given in (``()`` for a Python float or a 0-d array, ``(1,)``).
    """
    shape, x2, gv, gshape, eps = _prepare(x, g, eps)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    st = _stats(x2, eps)
    dx = np.empty_like(x2)
    rows = np.empty((x2.shape[0], 2))
    RN.backward(dy2, x2, st, _per_row(gv, x2), dx, rows)
    return {"x": dx.reshape(shape), "g": np.full(gshape, _fsum_rows(rows))}


def _directions(kind, value, x, g, x2):
    D = V.check_directions(kind, value, {"x": x, "g": g})
    tx = np.zeros_like(x2) if D["x"] is None else D["x"].reshape(x2.shape)
    tg = 0.0 if D["g"] is None else float(D["g"].reshape(()))
    return tx, tg


def scale_norm_jvp(tangents, x, g, eps=1e-5):
    """Forward mode of :func:`scale_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"`` (shaped like ``x``) and ``"g"`` (shaped
    like ``g``); a missing key is a zero tangent.  Per row
    ``ty = tg * xhat + g * r * (tx - ind * xhat * <xhat, tx>)`` (the backward's
    ``ind``).  ``y`` has the bits of :func:`scale_norm`; float64, shaped like ``x``.
    """
    shape, x2, gv, _, eps = _prepare(x, g, eps)
    tx, tg = _directions("tangents", tangents, x, g, x2)
    st = _stats(x2, eps)
    y = np.empty_like(x2)
    RN.forward(x2, st, _per_row(gv, x2), y)
    ty = np.empty_like(x2)
    RN.jvp(x2, tx, st, _per_row(gv, x2), _per_row(tg, x2), ty)
    return y.reshape(shape), ty.reshape(shape)


def scale_norm_double_backward(cotangents, dy, x, g, eps=1e-5):
    """Second order of :func:`scale_norm`: the VJP of :func:`scale_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"g"`` (the cotangents of ``dx`` and
    ``dg``; missing = zero).  Returns ``{"dy": ..., "x": ..., "g": ...}``, the
    gradients of ``L = <cx, dx> + cg * dg``, float64, shaped like ``dy``, ``x``
    and ``g`` (docs/ops/scale_norm.md#scale-norm-second-order).  Where the
    clamp is active the norm term is 0 to every order.
    """
    shape, x2, gv, gshape, eps = _prepare(x, g, eps)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    cx, cg = _directions("cotangents", cotangents, x, g, x2)
    st = _stats(x2, eps)
    y = np.empty_like(x2)
    ddy = np.empty_like(x2)
    RN.forward(x2, st, _per_row(gv, x2), y)
    RN.jvp(x2, cx, st, _per_row(gv, x2), _per_row(cg, x2), ddy)  # d2dy = J c
    d2x = np.empty_like(x2)
    rows = np.empty(x2.shape[0])
    RN.double_backward(dy2, x2, cx, st, _per_row(gv, x2), _per_row(cg, x2), d2x, rows)
    return {"dy": ddy.reshape(shape), "x": d2x.reshape(shape), "g": np.full(gshape, _fsum_rows(rows))}


__all__ = ["scale_norm", "scale_norm_backward", "scale_norm_double_backward", "scale_norm_jvp",
           "scale_norm_stats"]
