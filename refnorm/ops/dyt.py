"""Dynamic Tanh (DyT): the fast path.

The definition is :mod:`refnorm.reference.dyt` (docs/ops/dyt.md): ``y = w * tanh(alpha * x) + b``
with one scalar ``alpha`` and ``w``, ``b`` over the last dimension.  ``x`` of shape ``(*, C)`` is
held as a C-contiguous ``(R, C)`` array (``R`` = the product of the leading dimensions).

DyT: tanh and its derivative
----------------------------
Per element, with ``z = alpha * x`` (one rounding), ``a = |z|``, ``em = expm1(-2a)`` and
``e = exp(-2a)`` (:func:`_tanh_sech2`)::

    t  = tanh(z)   = sign(z) * (-em) / (2 + em)
    s  = sech^2(z) = 1 - t^2 = 4 e / (2 + em)^2

Both are free of cancellation: ``-em`` is formed by ``expm1`` itself (``1 - exp(-2a)`` would lose
all its digits for small ``a``), ``2 + em`` lies in ``(1, 2]``, and ``s`` is a product and a
quotient of positive numbers, where ``1 - t^2`` (or ``(1 - t)(1 + t)`` from a rounded ``t``)
cancels to an absolute error of ``u`` -- a relative error of ``u / s``, total where ``t`` rounds
to 1 (``|z| > 19``) -- exactly where ``s`` is tiny.  With ``expm1`` and ``exp`` within 1 ulp (2u,
the C library's documented accuracy for double) the relative error of ``t`` is at most
``2u + u + u + u = 5u`` and that of ``s`` at most ``2u + 2(u + u) + u + u = 8u`` (u = 2^-53), for
every finite ``z``; ``z = +-inf`` gives ``t = +-1``, ``s = 0``; a NaN propagates.

DyT: backward
-------------
With ``g = w * dy`` (``dy`` without a weight) and ``q = g * s`` (the cotangent of ``z``)::

    dx     = q * alpha
    dalpha = sum over every element of q * x
    dw_c   = sum over the leading dimensions of dy * t
    db_c   = sum over the leading dimensions of dy

Sums are compensated (``two_sum``); ``dx`` and the row partials of ``dalpha`` come from one row
per thread (:func:`_backward_rows`), ``dw``/``db`` from one column per thread
(:func:`_param_sums`), and the row partials are added by :func:`math.fsum`: the same bits for any
thread count.

DyT: forward mode and second order
----------------------------------
Tangents ``tx, talpha, tw, tb``: ``tz = talpha x + alpha tx`` and ``ty = w s tz + t tw + tb``.
For the cotangents ``cx, calpha, cw, cb`` of ``(dx, dalpha, dw, db)``, with ``A = alpha cx +
calpha x`` (the tangent of ``z`` along the cotangents), ``s' = ds/dz = -2 t s`` and
``m = g s' A``::

    d2dy   = w s A + t cw + cb                   (the JVP along the cotangents)
    d2x    = alpha m + s (g calpha + alpha dy cw)
    d2alpha = sum x m + s (g cx + x dy cw)
    d2w_c  = sum dy s A,   d2b = 0

(docs/ops/dyt.md#dyt-second-order).  A direction that is not given is a structural zero (no
``0 * x`` term, which would be NaN at an infinite ``x``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .. import _validate as V
from . import _layout as L
from ._dd import two_sum
from ._jit import jit, pjit, prange


@jit
def _tanh_sech2(z):
    """``(tanh z, sech^2 z)`` without cancellation (module docstring: <= 5u and <= 8u relative)."""
    a = abs(z)
    em = math.expm1(-2.0 * a)  # -(1 - e^{-2a}), exact sign, no cancellation
    d = 2.0 + em  # 1 + e^{-2a}, in (1, 2]
    t = -em / d
    if z < 0.0 or (z == 0.0 and math.copysign(1.0, z) < 0.0):
        t = -t  # tanh is odd (and tanh(-0) = -0)
    s = 4.0 * math.exp(-2.0 * a) / (d * d)
    return t, s


@pjit
def _forward(x2, alpha, w, b, has_w, has_b, y2):
    """``y = w * tanh(alpha * x) + b`` on ``(R, C)``, one row per thread."""
    R, C = x2.shape
    for r in prange(R):
        for c in range(C):
            t, _ = _tanh_sech2(alpha * x2[r, c])  # (1)-(2)
            if has_w:
                t = t * w[c]  # (3)
            if has_b:
                t = t + b[c]  # (4)
            y2[r, c] = t


@pjit
def _backward_rows(dy2, x2, alpha, w, has_w, dx2, part):
    """``dx = g s alpha`` and the row partials ``part[r] = sum_c g s x`` (compensated) of dalpha."""
    R, C = x2.shape
    for r in prange(R):
        hi = 0.0
        lo = 0.0
        for c in range(C):
            xv = x2[r, c]
            _, s = _tanh_sech2(alpha * xv)
            g = dy2[r, c] * w[c] if has_w else dy2[r, c]
            q = g * s  # the cotangent of z
            dx2[r, c] = q * alpha
            hi, e = two_sum(hi, q * xv)
            lo += e
        part[r] = hi + lo


@pjit
def _param_sums(dy2, x2, alpha, dw, db):
    """Per column c: ``dw_c = sum_r dy t`` and ``db_c = sum_r dy`` (compensated), one column per thread."""
    R, C = x2.shape
    for c in prange(C):
        wh = 0.0
        wl = 0.0
        bh = 0.0
        bl = 0.0
        for r in range(R):
            t, _ = _tanh_sech2(alpha * x2[r, c])
            d = dy2[r, c]
            wh, e = two_sum(wh, d * t)
            wl += e
            bh, e = two_sum(bh, d)
            bl += e
        dw[c] = wh + wl
        db[c] = bh + bl


@pjit
def _jvp(x2, alpha, w, b, tx2, ta, tw, tb, has_w, has_b, has_tx, has_ta, has_tw, has_tb, y2, ty2):
    """``y`` (as :func:`_forward`) and ``ty = w s tz + t tw + tb``, ``tz = ta x + alpha tx``; a
    direction that is not given contributes no term."""
    R, C = x2.shape
    for r in prange(R):
        for c in range(C):
            xv = x2[r, c]
            t, s = _tanh_sech2(alpha * xv)
            y = t * w[c] if has_w else t
            if has_b:
                y = y + b[c]
            y2[r, c] = y
            tz = 0.0
            if has_ta:
                tz = ta * xv
            if has_tx:
                tz = tz + alpha * tx2[r, c] if has_ta else alpha * tx2[r, c]
            v = s * tz
            if has_w:
                v = v * w[c]
            if has_tw:
                v = v + t * tw[c]
            if has_tb:
                v = v + tb[c]
            ty2[r, c] = v


@pjit
def _double_rows(dy2, x2, alpha, w, cx2, ca, cw, cb, has_w, has_cx, has_ca, has_cw, has_cb, d2dy, d2x, part):
    """Per element ``d2dy``, ``d2x`` and the row partials of ``d2alpha`` (module docstring)."""
    R, C = x2.shape
    for r in prange(R):
        hi = 0.0
        lo = 0.0
        for c in range(C):
            xv = x2[r, c]
            d = dy2[r, c]
            t, s = _tanh_sech2(alpha * xv)
            g = d * w[c] if has_w else d
            A = 0.0  # the tangent of z along the cotangents
            if has_cx:
                A = alpha * cx2[r, c]
            if has_ca:
                A = A + ca * xv if has_cx else ca * xv
            sA = s * A
            v = sA * w[c] if has_w else sA
            if has_cw:
                v = v + t * cw[c]
            if has_cb:
                v = v + cb[c]
            d2dy[r, c] = v
            m = g * (-2.0 * t * s) * A  # g s' A
            k = 0.0  # s (g calpha + alpha dy cw), the first-order terms
            j = 0.0  # s (g cx + x dy cw), their d2alpha counterpart
            if has_ca:
                k = g * ca
            if has_cx:
                j = g * cx2[r, c]
            if has_cw:
                dc = d * cw[c]
                k = k + alpha * dc
                j = j + xv * dc
            d2x[r, c] = alpha * m + s * k
            hi, e = two_sum(hi, xv * m + s * j)
            lo += e
        part[r] = hi + lo


@pjit
def _double_cols(dy2, x2, alpha, cx2, ca, has_cx, has_ca, d2w):
    """Per column c: ``d2w_c = sum_r dy s A`` (compensated), one column per thread."""
    R, C = x2.shape
    for c in prange(C):
        hi = 0.0
        lo = 0.0
        for r in range(R):
            xv = x2[r, c]
            _, s = _tanh_sech2(alpha * xv)
            A = 0.0
            if has_cx:
                A = alpha * cx2[r, c]
            if has_ca:
                A = A + ca * xv if has_cx else ca * xv
            hi, e = two_sum(hi, dy2[r, c] * (s * A))
            lo += e
        d2w[c] = hi + lo


# --- argument checks ---------------------------------------------------------

def layout(x_shape) -> L.Layout:
    """No statistics, no reduction sets (an elementwise map); the parameters lie on the last axis."""
    return L.Layout(x_shape, {}, None, None, (len(x_shape) - 1,))


def _alpha(alpha):
    """``(value, shape)`` of ``alpha``: a Python real number (shape ``()``), or a float array (or
    NumPy float scalar) of shape ``()`` or ``(1,)``."""
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, (bool, np.generic)):
        return float(alpha), ()  # a Python int or float
    a = V.as_float_array("alpha", alpha)
    if a.shape not in ((), (1,)):
        raise ValueError(f"alpha must be a real number or an array of shape (1,) or () (one learnable scalar "
                         f"shared by every element), got shape {tuple(a.shape)}")
    return float(a.astype(np.float64).reshape(())), a.shape


def _prepare(x, alpha, weight, bias):
    xa = V.check_input("x", x, min_ndim=1, layout="(*, C): weight and bias lie on the last dimension")
    C = xa.shape[-1]
    av, ashape = _alpha(alpha)
    w = V.check_param("weight", weight, (C,), "one value per element of the last dimension of x")
    b = V.check_param("bias", bias, (C,), "one value per element of the last dimension of x")
    x2 = V.to_f64(xa).reshape(-1, C) if xa.size else np.zeros((V.prod(xa.shape[:-1]), C))
    return xa.shape, x2, av, ashape, w, b


def _vec(a, C):
    return np.zeros(C) if a is None else a


# --- public API ----------------------------------------------------------------

def dyt(x, alpha, weight=None, bias=None):
    """Dynamic Tanh (docs/ops/dyt.md): ``y = weight * tanh(alpha * x) + bias``.

    Parameters
    ----------
    x : array of shape ``(*, C)``, any float dtype (upcast exactly to float64).
    alpha : the learnable scalar: a Python real number, a 0-d array or a shape-``(1,)`` array
        (the authors' module initialises it to 0.5).
    weight, bias : arrays of shape ``(C,)`` over the last dimension, or None (no scale / no shift).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    shape, x2, av, _, w, b = _prepare(x, alpha, weight, bias)
    C = x2.shape[1]
    y2 = np.empty_like(x2)
    _forward(x2, av, _vec(w, C), _vec(b, C), w is not None, b is not None, y2)
    return y2.reshape(shape)


def dyt_backward(dy, x, alpha, weight=None, bias=None):
    """Gradients of :func:`dyt`: ``{"x", "alpha"}`` and ``"weight"``/``"bias"`` when given.

    ``dx`` is shaped like ``x``; ``alpha``'s gradient like the given ``alpha`` (``()`` for a
    Python number, ``()`` or ``(1,)`` for an array); ``weight``/``bias`` ``(C,)``.  All float64.
    Derivation: the module docstring and docs/ops/dyt.md#dyt-backward.  At an infinite ``x`` (with
    ``alpha != 0``) ``dx`` is 0 and ``dalpha`` is NaN (``s * x = 0 * inf``), as autograd and PyTorch
    give it."""
    shape, x2, av, ashape, w, b = _prepare(x, alpha, weight, bias)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    R, C = x2.shape
    dx2 = np.empty_like(x2)
    part = np.empty(R)
    _backward_rows(dy2, x2, av, _vec(w, C), w is not None, dx2, part)
    out = {"x": dx2.reshape(shape), "alpha": np.full(ashape, math.fsum(part) if R else 0.0)}
    if w is not None or b is not None:
        dw, db = np.empty(C), np.empty(C)
        _param_sums(dy2, x2, av, dw, db)
        if w is not None:
            out["weight"] = dw
        if b is not None:
            out["bias"] = db
    return out


def _directions(kind, value, x, alpha, weight, bias, x2):
    D = V.check_directions(kind, value, {"x": x, "alpha": np.asarray(alpha), "weight": weight, "bias": bias})
    C = x2.shape[1]
    dx = D["x"].reshape(x2.shape) if D["x"] is not None else np.zeros((1, C))
    da = float(D["alpha"].reshape(())) if D["alpha"] is not None else 0.0
    return (dx, D["x"] is not None), (da, D["alpha"] is not None), \
        (_vec(D["weight"], C), D["weight"] is not None), (_vec(D["bias"], C), D["bias"] is not None)


def dyt_jvp(tangents, x, alpha, weight=None, bias=None):
    """Forward-mode derivative of :func:`dyt`: ``(y, ty)``.

    ``tangents``: dict over ``"x"``, ``"alpha"``, ``"weight"``, ``"bias"`` (each shaped like its
    argument; ``alpha``'s like the given alpha); a missing key is a zero tangent.  ``y`` is
    bit-identical to :func:`dyt`; ``ty = w sech^2(z) (talpha x + alpha tx) + tanh(z) tw + tb``."""
    shape, x2, av, _, w, b = _prepare(x, alpha, weight, bias)
    (tx, hx), (ta, ha), (tw, hw), (tb, hb) = _directions("tangents", tangents, x, alpha, weight, bias, x2)
    C = x2.shape[1]
    y2, ty2 = np.empty_like(x2), np.empty_like(x2)
    _jvp(x2, av, _vec(w, C), _vec(b, C), tx, ta, tw, tb, w is not None, b is not None, hx, ha, hw, hb, y2, ty2)
    return y2.reshape(shape), ty2.reshape(shape)


def dyt_double_backward(cotangents, dy, x, alpha, weight=None, bias=None):
    """Second order: the VJP of :func:`dyt_backward`.

    For ``L = <cx, dx> + calpha dalpha + <cweight, dweight> + <cbias, dbias>`` (``cotangents``
    keyed like the backward's result; missing keys are zero) returns ``{"dy", "x", "alpha"}`` and
    ``"weight"``/``"bias"`` when given (``"bias"`` identically 0: the backward does not read the
    bias), shaped like ``dy`` and the arguments, float64; derivation in the module docstring and
    docs/ops/dyt.md#dyt-second-order."""
    shape, x2, av, ashape, w, b = _prepare(x, alpha, weight, bias)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    (cx, hx), (ca, ha), (cw, hw), (cb, hb) = _directions("cotangents", cotangents, x, alpha, weight, bias, x2)
    R, C = x2.shape
    d2dy, d2x, part = np.empty_like(x2), np.empty_like(x2), np.empty(R)
    _double_rows(dy2, x2, av, _vec(w, C), cx, ca, cw, cb, w is not None, hx, ha, hw, hb, d2dy, d2x, part)
    out = {"dy": d2dy.reshape(shape), "x": d2x.reshape(shape),
           "alpha": np.full(ashape, math.fsum(part) if R else 0.0)}
    if w is not None:
        d2w = np.empty(C)
        _double_cols(dy2, x2, av, cx, ca, hx, ha, d2w)
        out["weight"] = d2w
    if b is not None:
        out["bias"] = np.zeros(C)
    return out


__all__ = ["dyt", "dyt_backward", "dyt_double_backward", "dyt_jvp"]
