r"""Forward mode (JVP) and second order (the VJP of the backward) of every
mean/variance normalizer, on the canonical view of :mod:`refnorm.ops._sets`.

The derivations are in docs/ops/layer_norm.md ("Forward mode", "Second
order") and docs/autodiff.md; the notation is the one of :mod:`refnorm.ops._sets`.
For one reduction set of ``n`` elements let the *projection* be

.. math:: P(v) = v - \mathrm{mean}(v) - \hat x\,\mathrm{mean}(\hat x v)

(RMSNorm drops ``mean(v)``; with constant statistics ``P`` is the identity).
It is symmetric, ``<u, P v> = <P u, v>``, and it is the whole derivative of
the normalization: ``d xhat = rstd * P(dx)``.

**JVP.**  Tangents ``tx``, ``tw``, ``tb``::

    ty = w * rstd * P(tx) + tw * xhat + tb

**Second order.**  The backward maps ``(dy, x, w)`` to ``dx = rstd * P(w dy)``,
``dw = sum dy xhat``, ``db = sum dy``.  For the cotangents ``a`` (of ``dx``),
``gw`` (of ``dw``), ``gb`` (of ``db``) and
``L = <a, dx> + <gw, dw> + <gb, db>``, with ``g = w dy`` and ``c = gw dy``
per element, ``alpha = mean(xhat a)``, ``beta = mean(xhat g)``,
``kappa = mean(xhat c)``::

    dL/ddy = w * rstd * P(a) + gw * xhat + gb      (the JVP along (a, gw, gb))
    dL/dw  = sum dy * rstd * P(a)                  (over the parameter's positions)
    dL/dx  = rstd * P(c)
             - rstd^2 * (beta (a - abar) + alpha (g - gbar)
                         + (mean(a g) - abar gbar - 3 alpha beta) xhat)

(``abar = mean(a)``, ``gbar = mean(g)``; both 0 for RMSNorm), and with
constant statistics ``dL/ddy = w rstd a + gw xhat + gb``, ``dL/dx = rstd c``,
``dL/dw = sum dy rstd a``.  ``dL/db = 0``.

Accuracy and determinism as in :mod:`refnorm.ops._sets`: the statistics are
the forward's double-double ones, every reduction is a compensated (Sum2) sum
accumulated by one thread in ascending order, ``prange`` distributes whole
sets (or whole parameter sums), so the bits do not depend on the number of
threads.
"""

from __future__ import annotations

import numpy as np

from . import _normalize as nz
from ._dd import dd_div_int, two_sum
from ._jit import jit, pjit, prange
from ._sets import MODE_BATCH_STATS, MODE_CONST_STATS, MODE_RMS, _xhat, set_stats

__all__ = ["MODE_BATCH_STATS", "MODE_CONST_STATS", "MODE_RMS", "double_backward_sets", "jvp_sets", "param_sums"]


@jit
def _mean(sh, sl, n):
    """The Sum2 sum ``sh + sl`` divided by ``n``, rounded once."""
    mh, ml = dd_div_int(sh, sl, n)
    return mh + ml


@pjit
def jvp_sets(x, stats, w, tx, tw, tb, P, Q, T, mode, ty):
    """``ty = w * rstd * P(tx) + tw * xhat + tb`` for every set (the module
    docstring); ``w``, ``tw``, ``tb`` are affine vectors of length ``P * Q``
    (zeros for an absent tangent, ones for an absent weight).

    Per set: ``c1 = mean(tx)`` (0 without centring), ``c2 = mean(xhat tx)``,
    then ``t_xhat = rstd * ((tx - c1) - xhat * c2)``, the backward's
    ``dx`` formula with ``tx`` in place of ``g``."""
    A, B, S = x.shape
    n = A * S
    period = stats.shape[1]
    for b in prange(B):
        mh, ml, rh, rl = set_stats(stats, b % period)
        p = b % P
        c1 = 0.0
        c2 = 0.0
        if mode != MODE_CONST_STATS and n > 0:
            s1h = 0.0
            s1l = 0.0
            s2h = 0.0
            s2l = 0.0
            for a in range(A):
                for s in range(S):
                    t = tx[a, b, s]
                    s1h, e = two_sum(s1h, t)
                    s1l += e
                    s2h, e = two_sum(s2h, _xhat(x[a, b, s], mh, ml, rh, rl) * t)
                    s2l += e
            if mode == MODE_BATCH_STATS:
                c1 = _mean(s1h, s1l, n)
            c2 = _mean(s2h, s2l, n)
        for a in range(A):
            for q in range(Q):
                k = p * Q + q
                for i in range(T):
                    s = q * T + i
                    xhat = _xhat(x[a, b, s], mh, ml, rh, rl)
                    if mode == MODE_CONST_STATS:
                        txhat = rh * tx[a, b, s]
                    else:
                        txhat = rh * ((tx[a, b, s] - c1) - xhat * c2)
                    ty[a, b, s] = (w[k] * txhat + tw[k] * xhat) + tb[k]


@jit
def _element(xv, av, dyv, wk, gwk, mh, ml, rh, rl):
    """One element's ``(xhat, a, g = w dy, c = gw dy)`` for :func:`double_backward_sets`."""
    return _xhat(xv, mh, ml, rh, rl), av, wk * dyv, gwk * dyv


@pjit
def double_backward_sets(dy, x, stats, w, ca, gw, gb, P, Q, T, mode, d2dy, d2x, rpa):
    """The second-order gradients of the module docstring for every set:
    ``d2dy = dL/ddy``, ``d2x = dL/dx`` and ``rpa = rstd * P(a)`` (the caller
    sums ``dy * rpa`` per parameter for ``dL/dw``: :func:`param_sums`).
    ``ca`` is the cotangent ``a`` of ``dx``; ``gw``, ``gb`` those of ``dw``,
    ``db`` as affine vectors (zeros when absent)."""
    A, B, S = x.shape
    n = A * S
    period = stats.shape[1]
    center = mode == MODE_BATCH_STATS
    for b in prange(B):
        mh, ml, rh, rl = set_stats(stats, b % period)
        p = b % P
        abar = 0.0
        gbar = 0.0
        cbar = 0.0
        alpha = 0.0
        beta = 0.0
        kappa = 0.0
        coef = 0.0
        if mode != MODE_CONST_STATS and n > 0:
            # the seven set reductions, compensated: a, g, c, xhat a, xhat g, xhat c, a g
            sums = np.zeros(14)
            for a in range(A):
                for q in range(Q):
                    k = p * Q + q
                    for i in range(T):
                        s = q * T + i
                        xhat, av, g, c = _element(x[a, b, s], ca[a, b, s], dy[a, b, s], w[k], gw[k], mh, ml, rh, rl)
                        terms = (av, g, c, xhat * av, xhat * g, xhat * c, av * g)
                        for r in range(7):
                            sums[2 * r], e = two_sum(sums[2 * r], terms[r])
                            sums[2 * r + 1] += e
            if center:
                abar = _mean(sums[0], sums[1], n)
                gbar = _mean(sums[2], sums[3], n)
                cbar = _mean(sums[4], sums[5], n)
            alpha = _mean(sums[6], sums[7], n)
            beta = _mean(sums[8], sums[9], n)
            kappa = _mean(sums[10], sums[11], n)
            coef = (_mean(sums[12], sums[13], n) - abar * gbar) - 3.0 * alpha * beta
        r2 = rh * rh
        for a in range(A):
            for q in range(Q):
                k = p * Q + q
                for i in range(T):
                    s = q * T + i
                    xhat, av, g, c = _element(x[a, b, s], ca[a, b, s], dy[a, b, s], w[k], gw[k], mh, ml, rh, rl)
                    if mode == MODE_CONST_STATS:
                        pa = rh * av
                        d2x[a, b, s] = rh * c
                    else:
                        pa = rh * ((av - abar) - xhat * alpha)
                        d2x[a, b, s] = (rh * ((c - cbar) - xhat * kappa)
                                        - r2 * ((beta * (av - abar) + alpha * (g - gbar)) + coef * xhat))
                    rpa[a, b, s] = pa
                    d2dy[a, b, s] = (w[k] * pa + gw[k] * xhat) + gb[k]


@pjit
def param_sums(u, v, P, Q, T, out):
    """``out[k] = sum u * v`` over the elements ``(a, b, s)`` with
    ``b % P == p`` and ``s // T == q`` (``k = p * Q + q``), in ascending
    ``(a, b, s)``, compensated; each parameter summed by one thread."""
    A, B, S = u.shape
    for k in prange(P * Q):
        p = k // Q
        q = k % Q
        sh = 0.0
        sl = 0.0
        for a in range(A):
            for b in range(p, B, P):
                for i in range(T):
                    s = q * T + i
                    sh, e = two_sum(sh, u[a, b, s] * v[a, b, s])
                    sl += e
        out[k] = sh + sl


# ----------------------------------------------------------------------------- Python glue


def _affine(v, size: int) -> np.ndarray:
    """An affine vector of length ``size``: ``v`` flattened, or zeros when absent."""
    return np.zeros(size) if v is None else np.ascontiguousarray(v, dtype=np.float64).reshape(-1)


def _elementwise(v, x3) -> np.ndarray:
    """``v`` (shaped like the input) viewed like ``x3``, or zeros when absent."""
    return np.zeros_like(x3) if v is None else np.ascontiguousarray(v, dtype=np.float64).reshape(x3.shape)


def _inner(x3, Q: int) -> int:
    S = x3.shape[2]
    return S // Q if Q > 0 else 0


def jvp(x3, stats, weight, directions: dict, P: int, Q: int, mode: int) -> np.ndarray:
    """``ty`` on the canonical view for the validated ``directions`` (keys
    ``"x"``, ``"weight"``, ``"bias"``; None = zero); ``weight`` the scale
    vector actually used (None: ones), ``stats`` the forward's
    :class:`~refnorm.ops._normalize.Stats` (its data array)."""
    size = P * Q
    w = np.ones(size) if weight is None else _affine(weight, size)
    ty = np.empty_like(x3)
    jvp_sets(x3, stats.data, w, _elementwise(directions.get("x"), x3), _affine(directions.get("weight"), size),
             _affine(directions.get("bias"), size), P, Q, _inner(x3, Q), mode, ty)
    return ty


def double_backward(dy3, x3, stats, weight, cotangents: dict, P: int, Q: int, mode: int):
    """``(d2dy3, d2x3, d2weight)`` on the canonical view for the validated
    ``cotangents`` (keys ``"x"``, ``"weight"``, ``"bias"``; None = zero);
    ``d2weight`` is the flat vector of length ``P * Q``."""
    size = P * Q
    T = _inner(x3, Q)
    w = np.ones(size) if weight is None else _affine(weight, size)
    d2dy, d2x, rpa = np.empty_like(x3), np.empty_like(x3), np.empty_like(x3)
    double_backward_sets(dy3, x3, stats.data, w, _elementwise(cotangents.get("x"), x3),
                         _affine(cotangents.get("weight"), size), _affine(cotangents.get("bias"), size), P, Q, T,
                         mode, d2dy, d2x, rpa)
    d2w = np.empty(size)
    param_sums(dy3, rpa, P, Q, T, d2w)
    return d2dy, d2x, d2w


def _statistics_mode(running, center: bool) -> int:
    if running is not None:
        return MODE_CONST_STATS
    return MODE_BATCH_STATS if center else MODE_RMS


def normalize_jvp(x3, eps: float, weight, bias, P: int, Q: int, directions: dict, *, running=None,
                  center: bool = True):
    """``(y3, ty3)``: the forward on the canonical view (the kernels of the
    op's forward: the same bits) and its JVP, with batch statistics
    (``running=None``; RMSNorm: ``center=False``) or the constant running
    ``(mean, var)``."""
    if running is None:
        y3, st = nz.normalize(x3, eps, weight, bias, P=P, Q=Q, center=center)
    else:
        st = nz.const_stats(*running, eps)
        y3 = nz.forward(x3, st, weight, bias, P=P, Q=Q)
    return y3, jvp(x3, st, weight, directions, P, Q, _statistics_mode(running, center))


def normalize_double_backward(dy3, x3, eps: float, weight, P: int, Q: int, cotangents: dict, *, running=None,
                              center: bool = True):
    """:func:`double_backward` with the statistics of the forward (batch or
    the constant running ones, as in :func:`normalize_jvp`)."""
    st = nz.batch_stats(x3, eps, center=center) if running is None else nz.const_stats(*running, eps)
    return double_backward(dy3, x3, st, weight, cotangents, P, Q, _statistics_mode(running, center))


def second_order_dict(shape, d2dy3, d2x3, d2w, weight, bias, param_shape=None, dy_name: str = "dy") -> dict:
    """The ``<op>_double_backward`` result: ``{"dy": ..., "x": ...}`` plus
    ``"weight"`` / ``"bias"`` for the parameters that were given (the backward
    does not depend on the bias: its entry is zeros)."""
    out = {dy_name: d2dy3.reshape(shape), "x": d2x3.reshape(shape)}
    pshape = d2w.shape if param_shape is None else tuple(param_shape)
    if weight is not None:
        out["weight"] = d2w.reshape(pshape)
    if bias is not None:
        out["bias"] = np.zeros(pshape)
    return out
