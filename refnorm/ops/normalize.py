"""Lp normalization (``torch.nn.functional.normalize``): the fast path.

The definition and every convention are in :mod:`refnorm.reference.normalize`.
Here ``x`` is viewed (never copied) as ``x3`` of shape ``(pre, n, post)``
with ``n = x.shape[dim]``: each pair ``(a, b)`` is one slice
``x3[a, :, b]``, one reduction set, handled by one thread in a fixed order.

Forward, per slice (:func:`_slice_norm`)::

    m  = max_j |x_j|                       exact
    k  = exponent of m (m = f 2^k, f in [0.5, 1))
    v_j = |x_j| 2^-k                       exact (ldexp): no overflow, no underflow of the terms
    S  = sum_j v_j^p                       compensated (TwoSum; TwoProd for p = 2)
    N  = S^(1/p) 2^k                       p = 2: sqrt(S); p = 1: S; p = inf: N = m
    d  = N if N >= eps else eps            clamp_min (NaN passes through)
    y_j = x_j / d

Backward (derivation: docs/ops/normalize.md#normalize-backward).  With
``ind = [N >= eps]`` (clamp_min's derivative: 1 at the tie ``N == eps``) and
the derivative of the norm ``g_j = dN/dx_j``::

    g_j = sign(x_j) |y_j|^(p-1)            (d = N wherever ind = 1; 0 at x_j = 0)
          p = 2: y_j;  p = 1: sign(x_j);  p = inf: sign(x_j) [|x_j| = N] / #{maximal}
    c   = sum_j dy_j y_j                   compensated
    dx_j = (dy_j - ind c g_j) / d

Forward mode: ``ty_j = (tx_j - ind y_j tN) / d`` with ``tN = sum_j g_j tx_j``.
Second order (the VJP of the backward for the cotangent ``a`` of ``dx``)::

    d2dy_j = (a_j - ind y_j alpha) / d,          alpha = sum_j g_j a_j
    d2x_k  = ind [ -(a.dy) g_k - alpha dy_k + (q + 1) c alpha g_k - (q - 1) c h_k a_k ] / N^2

with ``h_k = |y_k|^(p-2)`` (0 at ``x_k = 0``), ``q = p`` for finite p; for
``p = 1`` and ``p = inf`` the term in ``h`` is 0 (``g`` is piecewise
constant) and ``q + 1`` is 2 for ``p = inf``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _layout as L
from ._dd import two_prod, two_sum
from ._jit import jit, pjit, prange

KIND_2 = 0
KIND_1 = 1
KIND_INF = 2
KIND_P = 3


@jit
def _slice_norm(x3, a, b, kind, p):
    """``N = ||x3[a, :, b]||_p`` (see the module docstring): exact power-of-two
    scaling, compensated sum of the powers, one root.  NaN if the slice holds a
    NaN; inf if it holds an inf (and no NaN)."""
    n = x3.shape[1]
    m = 0.0
    for j in range(n):
        v = abs(x3[a, j, b])
        if v != v:
            return v  # NaN
        if v > m:
            m = v
    if m == 0.0 or kind == KIND_INF or not math.isfinite(m):
        return m
    e = math.frexp(m)[1]  # m = f 2^e, f in [0.5, 1)
    sh = 0.0
    sl = 0.0
    for j in range(n):
        v = math.ldexp(abs(x3[a, j, b]), -e)  # exact
        if kind == KIND_2:
            t, te = two_prod(v, v)
            sh, se = two_sum(sh, t)
            sl += se + te
        elif kind == KIND_1:
            sh, se = two_sum(sh, v)
            sl += se
        else:
            sh, se = two_sum(sh, math.pow(v, p))
            sl += se
    s = sh + sl
    if kind == KIND_2:
        r = math.sqrt(s)
    elif kind == KIND_1:
        r = s
    else:
        r = math.pow(s, 1.0 / p)
    return math.ldexp(r, e)


@jit
def _clamp(N, eps):
    """``(d, ind)``: ``d = clamp_min(N, eps)`` (NaN stays NaN) and ``ind = dd/dN``."""
    if N >= eps:
        return N, 1.0
    if N != N:
        return N, 1.0
    return eps, 0.0


@jit
def _grad_norm(xj, yj, N, kind, p, count):
    """``g_j = dN/dx_j`` (valid where ``d = N``; see the module docstring)."""
    if kind == KIND_2:
        return yj
    if xj == 0.0:
        return 0.0
    s = 1.0 if xj > 0.0 else -1.0
    if kind == KIND_1:
        return s
    if kind == KIND_INF:
        return s / count if abs(xj) == N else 0.0
    return s * math.pow(abs(yj), p - 1.0)


@jit
def _count_max(x3, a, b, N):
    c = 0.0
    for j in range(x3.shape[1]):
        if abs(x3[a, j, b]) == N:
            c += 1.0
    return c


@pjit
def _forward(x3, kind, p, eps, y3, norm):
    """``y3 = x3 / d`` and ``norm[a, b] = d`` for every slice."""
    pre, n, post = x3.shape
    for i in prange(pre * post):
        a = i // post
        b = i % post
        d, _ = _clamp(_slice_norm(x3, a, b, kind, p), eps)
        norm[a, b] = d
        for j in range(n):
            y3[a, j, b] = x3[a, j, b] / d


@pjit
def _backward(dy3, x3, kind, p, eps, dx3):
    """``dx_j = (dy_j - ind c g_j) / d``, ``c = sum dy_j y_j`` (module docstring)."""
    pre, n, post = x3.shape
    for i in prange(pre * post):
        a = i // post
        b = i % post
        N = _slice_norm(x3, a, b, kind, p)
        d, ind = _clamp(N, eps)
        ch = 0.0
        cl = 0.0
        for j in range(n):
            ch, e = two_sum(ch, dy3[a, j, b] * (x3[a, j, b] / d))
            cl += e
        c = ch + cl
        count = _count_max(x3, a, b, N) if kind == KIND_INF else 1.0
        for j in range(n):
            xj = x3[a, j, b]
            if ind != 0.0:
                g = _grad_norm(xj, xj / d, N, kind, p, count)
                dx3[a, j, b] = (dy3[a, j, b] - c * g) / d
            else:
                dx3[a, j, b] = dy3[a, j, b] / d


@pjit
def _jvp(x3, tx3, kind, p, eps, ty3):
    """``ty_j = (tx_j - ind y_j tN) / d``, ``tN = sum g_j tx_j``; used by the
    double backward for ``d2dy`` too (the JVP along the cotangent)."""
    pre, n, post = x3.shape
    for i in prange(pre * post):
        a = i // post
        b = i % post
        N = _slice_norm(x3, a, b, kind, p)
        d, ind = _clamp(N, eps)
        th = 0.0
        tl = 0.0
        if ind != 0.0:
            count = _count_max(x3, a, b, N) if kind == KIND_INF else 1.0
            for j in range(n):
                xj = x3[a, j, b]
                th, e = two_sum(th, _grad_norm(xj, xj / d, N, kind, p, count) * tx3[a, j, b])
                tl += e
        tN = th + tl
        for j in range(n):
            yj = x3[a, j, b] / d
            ty3[a, j, b] = (tx3[a, j, b] - ind * yj * tN) / d


@pjit
def _double_backward(dy3, x3, a3, kind, p, eps, ddx3):
    """``d2x`` for the cotangent ``a3`` of ``dx`` (module docstring)."""
    pre, n, post = x3.shape
    for i in prange(pre * post):
        a = i // post
        b = i % post
        N = _slice_norm(x3, a, b, kind, p)
        d, ind = _clamp(N, eps)
        if ind == 0.0:
            for j in range(n):
                ddx3[a, j, b] = 0.0
            continue
        count = _count_max(x3, a, b, N) if kind == KIND_INF else 1.0
        c_h = 0.0
        c_l = 0.0
        al_h = 0.0
        al_l = 0.0
        ad_h = 0.0
        ad_l = 0.0
        for j in range(n):
            xj = x3[a, j, b]
            yj = xj / d
            g = _grad_norm(xj, yj, N, kind, p, count)
            c_h, e = two_sum(c_h, dy3[a, j, b] * yj)
            c_l += e
            al_h, e = two_sum(al_h, g * a3[a, j, b])
            al_l += e
            ad_h, e = two_sum(ad_h, a3[a, j, b] * dy3[a, j, b])
            ad_l += e
        c = c_h + c_l  # sum dy y
        alpha = al_h + al_l  # sum g a
        ad = ad_h + ad_l  # sum a dy
        if kind == KIND_INF:
            q1 = 2.0
            qm1 = 0.0
        elif kind == KIND_1:
            q1 = 2.0
            qm1 = 0.0
        else:
            q1 = p + 1.0
            qm1 = p - 1.0
        for j in range(n):
            xj = x3[a, j, b]
            yj = xj / d
            g = _grad_norm(xj, yj, N, kind, p, count)
            h = 0.0
            if qm1 != 0.0 and xj != 0.0:
                h = 1.0 if kind == KIND_2 else math.pow(abs(yj), p - 2.0)
            t = -ad * g - alpha * dy3[a, j, b] + q1 * c * alpha * g - qm1 * c * h * a3[a, j, b]
            ddx3[a, j, b] = (t / d) / d


# ----------------------------------------------------------------------------- validation and layout


def _check_dim(dim, ndim):
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    dim = int(dim)
    if not -ndim <= dim < ndim:
        hint = " (the default dim=1 needs x.ndim >= 2: pass dim=0 or dim=-1 for 1-D x)" if ndim == 1 else ""
        raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for x with {ndim} dimensions, got {dim}{hint}")
    return dim % ndim


def _check_p(p):
    p = V.check_real("p", p)
    if not p > 0.0:
        raise ValueError(f"p must be > 0 (a finite p or inf); p = 0 and negative p are not norms, got {p}")
    return p


def layout(x_shape, dim=1) -> L.Layout:
    """Each slice along ``dim`` is one set; the statistic ``norm`` has
    ``x.shape`` without ``dim``.  The canonical view ``(A, B, S)`` exists when
    the slices are rows (``dim`` last: ``(1, rows, n)``) or columns (``dim``
    first: ``(n, cols, 1)``); otherwise it is None (the running-error
    tolerance does not need it)."""
    shape = tuple(int(s) for s in x_shape)
    k = _check_dim(dim, len(shape))
    pre, n, post = math.prod(shape[:k]), shape[k], math.prod(shape[k + 1:])
    view = (1, pre, n) if post == 1 else ((n, post, 1) if pre == 1 else None)
    affine = None if view is None else (1, view[2], 1)
    return L.Layout(shape, {"norm": shape[:k] + shape[k + 1:]}, view, affine, ())


def _prepare(x, p, dim, eps):
    xa = V.check_input("x", x, min_ndim=1, layout="any shape, slices along dim")
    k = _check_dim(dim, xa.ndim)
    p = _check_p(p)
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    s = xa.shape
    x3 = V.to_f64(xa).reshape(math.prod(s[:k]), s[k], math.prod(s[k + 1:]))
    if p == math.inf:
        kind = KIND_INF
    elif p == 2.0:
        kind = KIND_2
    elif p == 1.0:
        kind = KIND_1
    else:
        kind = KIND_P
    return s, k, x3, kind, p, eps


# ----------------------------------------------------------------------------- public functions


def normalize_stats(x, p=2.0, dim=1, eps=1e-12):
    """``y`` and the saved statistic ``{"norm": d}``: the clamped denominator
    ``d = max(||x||_p, eps)`` per slice, shape ``x.shape`` without ``dim``."""
    s, k, x3, kind, p, eps = _prepare(x, p, dim, eps)
    y3 = np.empty_like(x3)
    norm = np.empty((x3.shape[0], x3.shape[2]))
    _forward(x3, kind, p, eps, y3, norm)
    return y3.reshape(s), {"norm": norm.reshape(s[:k] + s[k + 1:])}


def normalize(x, p=2.0, dim=1, eps=1e-12):
    """Lp normalization along ``dim``, as ``torch.nn.functional.normalize``.

    .. math:: y = \\frac{x}{\\max(\\|x\\|_p, \\epsilon)}

    Parameters
    ----------
    x : float array of any shape with ``ndim >= 1`` (float16/bfloat16/float32/float64)
    p : float > 0 or ``math.inf`` (default 2): the exponent of the norm;
        ``0 < p < 1`` is computed as PyTorch does although it is not a norm
    dim : int in ``[-x.ndim, x.ndim)`` (default 1; a 1-D ``x`` needs 0 or -1)
    eps : float >= 0 (default 1e-12): the floor of the denominator

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return normalize_stats(x, p, dim, eps)[0]


def normalize_backward(dy, x, p=2.0, dim=1, eps=1e-12):
    """Gradient of :func:`normalize`: ``{"x": dx}``, float64 shaped like ``x``.

    Per slice, ``dx = (dy - ind * c * g) / d`` with ``c = sum(dy * y)``,
    ``g = dN/dx`` and ``ind = [||x||_p >= eps]`` (clamp_min: no gradient through
    the norm while the clamp is active; full gradient at the tie).  ``p = inf``
    shares ``dN/dx`` evenly among the maximal ``|x_j|``.
    """
    s, k, x3, kind, p, eps = _prepare(x, p, dim, eps)
    dy3 = V.check_dy(dy, s).reshape(x3.shape)
    dx3 = np.empty_like(x3)
    _backward(dy3, x3, kind, p, eps, dx3)
    return {"x": dx3.reshape(s)}


def normalize_jvp(tangents, x, p=2.0, dim=1, eps=1e-12):
    """Forward mode of :func:`normalize`: ``(y, ty)``, float64 shaped like ``x``.

    ``tangents``: ``{"x": tx}`` (missing = zero).  Per slice
    ``ty = (tx - ind * y * tN) / d`` with ``tN = sum(g * tx)``; ``y`` has the
    bits of :func:`normalize`.
    """
    s, k, x3, kind, p, eps = _prepare(x, p, dim, eps)
    t = V.check_directions("tangents", tangents, {"x": x})
    tx3 = np.zeros(x3.shape) if t["x"] is None else t["x"].reshape(x3.shape)
    y3 = np.empty_like(x3)
    norm = np.empty((x3.shape[0], x3.shape[2]))
    _forward(x3, kind, p, eps, y3, norm)
    ty3 = np.empty_like(x3)
    _jvp(x3, tx3, kind, p, eps, ty3)
    return y3.reshape(s), ty3.reshape(s)


def normalize_double_backward(cotangents, dy, x, p=2.0, dim=1, eps=1e-12):
    """Second order of :func:`normalize`: the VJP of :func:`normalize_backward`.

    ``cotangents``: ``{"x": a}`` (missing = zero), the cotangent of ``dx``.
    Returns ``{"dy": J a, "x": d<a, dx>/dx}``, float64 shaped like ``x``
    (docs/ops/normalize.md#normalize-second-order).  Where the clamp is active
    the backward is linear in ``dy`` alone and ``"x"`` is 0.  For ``1 < p < 2``
    (and ``p < 1``) the second derivative of ``|x_k|^p`` at ``x_k = 0`` is
    infinite; it is taken as 0 there.
    """
    s, k, x3, kind, p, eps = _prepare(x, p, dim, eps)
    dy3 = V.check_dy(dy, s).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x})
    a3 = np.zeros(x3.shape) if c["x"] is None else c["x"].reshape(x3.shape)
    ddy3 = np.empty_like(x3)
    _jvp(x3, a3, kind, p, eps, ddy3)
    ddx3 = np.empty_like(x3)
    _double_backward(dy3, x3, a3, kind, p, eps, ddx3)
    return {"dy": ddy3.reshape(s), "x": ddx3.reshape(s)}


__all__ = ["normalize", "normalize_backward", "normalize_double_backward", "normalize_jvp", "normalize_stats"]
