"""Local Response Normalization (``torch.nn.functional.local_response_norm``): the fast path.

The definition and every convention are in :mod:`refnorm.reference.local_response_norm`.
Here ``x`` of shape ``(N, C, *spatial)`` is viewed as ``x3`` of shape ``(N, C, S)``
(``S = prod(spatial)``): each column ``x3[n, :, s]`` is handled by one thread in a fixed
order (``prange`` over the ``N * S`` columns), so the bits do not depend on the thread count.

The window of channel ``c`` is ``W(c) = [c - size // 2, c + (size - 1) // 2]`` cut to
``[0, C)``; channel ``i`` lies in the windows of the channels
``W'(i) = [i - (size - 1) // 2, i + size // 2]`` (the transposed window: the mirror image
of ``W``, the same for an odd size).  Forward, per column (:func:`_base`)::

    s_c   = sum_{j in W(c)} x_j^2        compensated (TwoProd squares, TwoSum)
    b_c   = k + alpha * (s_c / size)     the pool divides by size, padding included
    div_c = b_c^beta                     libm pow; the saved statistic
    y_c   = x_c / div_c

Backward (derivation: docs/ops/local_response_norm.md#lrn-backward), with
``g = 2 alpha beta / size``::

    q_c  = dy_c * y_c / b_c                       (= dy_c x_c b_c^(-beta-1))
    Q_i  = sum_{c in W'(i)} q_c                   compensated
    dx_i = dy_i / div_i - g * x_i * Q_i

Forward mode: ``ty_c = tx_c / div_c - g * (y_c / b_c) * P_c`` with
``P_c = sum_{j in W(c)} x_j tx_j``.  Second order (the VJP of the backward for the
cotangent ``a`` of ``dx``; docs/ops/local_response_norm.md#lrn-second-order)::

    d2dy_c = a_c / div_c - g * (y_c / b_c) * P_c,      P_c = sum_{j in W(c)} x_j a_j
    r_c    = (dy_c / (div_c b_c)) * (a_c - (beta + 1) * (2 alpha / size) * x_c P_c / b_c)
    d2x_i  = -g * dy_i P_i / (div_i b_i) - g * a_i * Q_i - g * x_i * R_i,   R_i = sum_{c in W'(i)} r_c

Range: float16, bfloat16 and float32 inputs are squared exactly in float64 (no overflow, no
underflow); a float64 input with ``|x|`` beyond ``~1e154`` overflows its squares, as the plain
formula does (no rescaling: ``b^beta`` of a scaled ``b`` would need a non-exact power of two).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _layout as L
from ._dd import two_prod, two_sum
from ._jit import jit, pjit, prange


@jit
def _base(x3, n, c, s, size, alpha, k):
    """``b_c = k + alpha * (sum_{j in W(c)} x_j^2) / size`` for column ``(n, s)``: the squares
    as double-double (TwoProd), summed with TwoSum, in the fixed order j ascending."""
    C = x3.shape[1]
    lo = max(0, c - size // 2)
    hi = min(C - 1, c + (size - 1) // 2)
    sh = 0.0
    sl = 0.0
    for j in range(lo, hi + 1):
        v = x3[n, j, s]
        p, pe = two_prod(v, v)
        sh, se = two_sum(sh, p)
        sl += se + pe
    total = sh + sl
    return k + alpha * (total / size)


@jit
def _window_dot(x3, t3, n, c, s, size):
    """``P_c = sum_{j in W(c)} x_j t_j`` (compensated)."""
    C = x3.shape[1]
    lo = max(0, c - size // 2)
    hi = min(C - 1, c + (size - 1) // 2)
    sh = 0.0
    sl = 0.0
    for j in range(lo, hi + 1):
        p, pe = two_prod(x3[n, j, s], t3[n, j, s])
        sh, se = two_sum(sh, p)
        sl += se + pe
    return sh + sl


@jit
def _transposed_sum(q3, n, i, s, size):
    """``sum_{c in W'(i)} q_c``, ``W'(i) = [i - (size - 1) // 2, i + size // 2]`` (compensated):
    the channels whose window holds channel ``i``."""
    C = q3.shape[1]
    lo = max(0, i - (size - 1) // 2)
    hi = min(C - 1, i + size // 2)
    sh = 0.0
    sl = 0.0
    for c in range(lo, hi + 1):
        sh, se = two_sum(sh, q3[n, c, s])
        sl += se
    return sh + sl


@pjit
def _forward(x3, size, alpha, beta, k, y3, div3):
    """``y3 = x3 / div3``, ``div3 = b^beta`` for every element."""
    N, C, S = x3.shape
    for i in prange(N * S):
        n = i // S
        s = i % S
        for c in range(C):
            d = math.pow(_base(x3, n, c, s, size, alpha, k), beta)
            div3[n, c, s] = d
            y3[n, c, s] = x3[n, c, s] / d


@pjit
def _backward(dy3, x3, size, alpha, beta, k, q3, dx3):
    """``dx_i = dy_i / div_i - g x_i Q_i`` (module docstring); ``q3`` is scratch."""
    N, C, S = x3.shape
    g = 2.0 * alpha * beta / size
    for i in prange(N * S):
        n = i // S
        s = i % S
        for c in range(C):
            b = _base(x3, n, c, s, size, alpha, k)
            d = math.pow(b, beta)
            q3[n, c, s] = dy3[n, c, s] * (x3[n, c, s] / d) / b
        for c in range(C):
            d = math.pow(_base(x3, n, c, s, size, alpha, k), beta)
            dx3[n, c, s] = dy3[n, c, s] / d - g * x3[n, c, s] * _transposed_sum(q3, n, c, s, size)


@pjit
def _jvp(x3, tx3, size, alpha, beta, k, ty3):
    """``ty_c = tx_c / div_c - g (y_c / b_c) P_c``, ``P_c = sum_{W(c)} x_j tx_j``; used by the
    double backward for ``d2dy`` too (the JVP along the cotangent)."""
    N, C, S = x3.shape
    g = 2.0 * alpha * beta / size
    for i in prange(N * S):
        n = i // S
        s = i % S
        for c in range(C):
            b = _base(x3, n, c, s, size, alpha, k)
            d = math.pow(b, beta)
            y = x3[n, c, s] / d
            ty3[n, c, s] = tx3[n, c, s] / d - g * (y / b) * _window_dot(x3, tx3, n, c, s, size)


@pjit
def _double_backward(dy3, x3, a3, size, alpha, beta, k, p3, q3, r3, ddx3):
    """``d2x`` for the cotangent ``a3`` of ``dx`` (module docstring); ``p3``, ``q3``, ``r3`` are
    scratch (``P_c``, ``q_c``, ``r_c``)."""
    N, C, S = x3.shape
    g = 2.0 * alpha * beta / size
    h = 2.0 * alpha / size
    for i in prange(N * S):
        n = i // S
        s = i % S
        for c in range(C):
            b = _base(x3, n, c, s, size, alpha, k)
            d = math.pow(b, beta)
            xc = x3[n, c, s]
            P = _window_dot(x3, a3, n, c, s, size)
            p3[n, c, s] = P
            q3[n, c, s] = dy3[n, c, s] * (xc / d) / b
            r3[n, c, s] = (dy3[n, c, s] / (d * b)) * (a3[n, c, s] - (beta + 1.0) * h * xc * P / b)
        for c in range(C):
            b = _base(x3, n, c, s, size, alpha, k)
            d = math.pow(b, beta)
            Q = _transposed_sum(q3, n, c, s, size)
            R = _transposed_sum(r3, n, c, s, size)
            ddx3[n, c, s] = (-g * dy3[n, c, s] * p3[n, c, s] / (d * b) - g * a3[n, c, s] * Q
                             - g * x3[n, c, s] * R)


# ----------------------------------------------------------------------------- validation and layout


def layout(x_shape) -> L.Layout:
    """No canonical view (each window is its own set of channels; the running-error tolerance
    does not need one); the saved statistic ``div`` has the shape of ``x``."""
    shape = tuple(int(s) for s in x_shape)
    return L.Layout(shape, {"div": shape}, None, None, ())


def _prepare(x, size, alpha, beta, k):
    xa = V.check_input("x", x, min_ndim=3, layout="(N, C, *spatial): the window runs along C, axis 1")
    size = V.check_int("size", size, minimum=1)
    alpha, beta, k = (V.check_real(name, v) for name, v in (("alpha", alpha), ("beta", beta), ("k", k)))
    for name, v in (("alpha", alpha), ("beta", beta), ("k", k)):
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {v}")
    s = xa.shape
    x3 = V.to_f64(xa).reshape(s[0], s[1], math.prod(s[2:]))
    return s, x3, size, alpha, beta, k


# ----------------------------------------------------------------------------- public functions


def local_response_norm_stats(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """``y`` and the saved statistic ``{"div": b^beta}``, the denominator, shaped like ``x``."""
    s, x3, size, alpha, beta, k = _prepare(x, size, alpha, beta, k)
    y3 = np.empty_like(x3)
    div3 = np.empty_like(x3)
    _forward(x3, size, alpha, beta, k, y3, div3)
    return y3.reshape(s), {"div": div3.reshape(s)}


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalization across channels, as ``torch.nn.functional.local_response_norm``.

    .. math:: y_c = x_c \\Big/ \\Big(k + \\frac{\\alpha}{size} \\sum_{j \\in W(c)} x_j^2\\Big)^{\\beta}

    with the window ``W(c) = [c - size // 2, c + (size - 1) // 2]`` cut to ``[0, C)``.

    Parameters
    ----------
    x : float array ``(N, C, *spatial)``, ``ndim >= 3`` (float16/bfloat16/float32/float64)
    size : int >= 1: the number of channels in a window (may exceed ``C``)
    alpha : float (default 1e-4): multiplies the window's mean square (its sum over ``size``)
    beta : float (default 0.75): the exponent of the denominator
    k : float (default 1.0): the additive constant

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return local_response_norm_stats(x, size, alpha, beta, k)[0]


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of :func:`local_response_norm`: ``{"x": dx}``, float64 shaped like ``x``.

    ``dx_i = dy_i / div_i - (2 alpha beta / size) x_i sum_{c: i in W(c)} dy_c y_c / b_c``
    (docs/ops/local_response_norm.md#lrn-backward).
    """
    s, x3, size, alpha, beta, k = _prepare(x, size, alpha, beta, k)
    dy3 = V.check_dy(dy, s).reshape(x3.shape)
    q3 = np.empty_like(x3)
    dx3 = np.empty_like(x3)
    _backward(dy3, x3, size, alpha, beta, k, q3, dx3)
    return {"x": dx3.reshape(s)}


def local_response_norm_jvp(tangents, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Forward mode of :func:`local_response_norm`: ``(y, ty)``, float64 shaped like ``x``.

    ``tangents``: ``{"x": tx}`` (missing = zero).  ``ty_c = tx_c / div_c - (2 alpha beta / size)
    (y_c / b_c) sum_{j in W(c)} x_j tx_j``; ``y`` has the bits of :func:`local_response_norm`.
    """
    s, x3, size, alpha, beta, k = _prepare(x, size, alpha, beta, k)
    t = V.check_directions("tangents", tangents, {"x": x})
    tx3 = np.zeros(x3.shape) if t["x"] is None else t["x"].reshape(x3.shape)
    y3 = np.empty_like(x3)
    div3 = np.empty_like(x3)
    _forward(x3, size, alpha, beta, k, y3, div3)
    ty3 = np.empty_like(x3)
    _jvp(x3, tx3, size, alpha, beta, k, ty3)
    return y3.reshape(s), ty3.reshape(s)


def local_response_norm_double_backward(cotangents, dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Second order of :func:`local_response_norm`: the VJP of :func:`local_response_norm_backward`.

    ``cotangents``: ``{"x": a}`` (missing = zero), the cotangent of ``dx``.  Returns
    ``{"dy": J a, "x": d<a, dx>/dx}``, float64 shaped like ``x``
    (docs/ops/local_response_norm.md#lrn-second-order).
    """
    s, x3, size, alpha, beta, k = _prepare(x, size, alpha, beta, k)
    dy3 = V.check_dy(dy, s).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x})
    a3 = np.zeros(x3.shape) if c["x"] is None else c["x"].reshape(x3.shape)
    ddy3 = np.empty_like(x3)
    _jvp(x3, a3, size, alpha, beta, k, ddy3)
    p3, q3, r3, ddx3 = (np.empty_like(x3) for _ in range(4))
    _double_backward(dy3, x3, a3, size, alpha, beta, k, p3, q3, r3, ddx3)
    return {"dy": ddy3.reshape(s), "x": ddx3.reshape(s)}


__all__ = ["local_response_norm", "local_response_norm_backward", "local_response_norm_double_backward",
           "local_response_norm_jvp", "local_response_norm_stats"]
