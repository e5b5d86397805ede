"""Adaptive Instance Normalization (AdaIN): the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.adaptive_instance_norm`.  The content ``x`` of shape
``(N, C, *spatial)`` is viewed as ``(1, N*C, M)`` and the style as
``(1, N*C, Ms)`` (``M``, ``Ms`` the numbers of spatial positions, which may
differ): row ``b = n*C + c`` of each is one reduction set.  Below, ``x2`` and
``s2`` are the ``(N*C, M)`` and ``(N*C, Ms)`` views.

Statistics (per set, double-double): the mean and the centred sum of squares
``m2`` of :func:`refnorm.ops._kernels.moments` (two-pass, compensated; never
``E[x^2] - E[x]^2``), then :func:`_unbiased`: ``t = m2 / (n - 1) + eps``,
``rstd = 1/sqrt(t)`` (double-double) and ``std = sqrt(t) = t * rstd`` rounded
once.  For the content: ``mean``, ``rstd``; for the style: ``s_mean``
(``style_mean``) and ``s_std`` (``style_std``).

Forward, per element: ``xhat = ((x - mean_hi) - mean_lo) * rstd`` rounded once
(:func:`_centred`), ``y = s_std * xhat + s_mean``.

Backward (derivation: docs/ops/adaptive_instance_norm.md#adain-backward), per
set, with the compensated sums (:func:`_dots`) ``A = sum(dy)`` and
``B = sum(dy * xhat)`` over the content set, ``sc = s - s_mean`` (the centred
style, rounded once)::

    k       = rstd * s_std                     (the gain s_std of InstanceNorm's backward)
    dx      = k * ((dy - A / M) - xhat * (B / (M - 1)))
    dstyle  = A / Ms + sc * (B / ((Ms - 1) * s_std))

Forward mode and second order: the section at the end of this module.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, dd_mul_round, renormalize, rsqrt_dd, sub_dd_round, two_prod, two_sum
from ._jit import pjit, prange
from ._sets import M2, M2_LO, MEAN, MEAN_LO, RSTD, RSTD_LO, _xhat


@pjit
def _unbiased(stats, n, eps, std):
    """Per set (column ``b`` of ``stats``, whose ``M2`` rows hold the centred
    sum of squares of ``n >= 2`` values): ``t = m2 / (n - 1) + eps`` in
    double-double, rows ``RSTD``, ``RSTD_LO`` = ``1/sqrt(t)`` (overwriting the
    biased one of ``moments``) and ``std[b] = sqrt(t)`` rounded once.  ``t = 0``
    (eps = 0 and a constant set): rstd = inf, std = 0; ``t`` inf or NaN: std = t."""
    for b in prange(stats.shape[1]):
        vh, vl = dd_div_int(stats[M2, b], stats[M2_LO, b], n - 1)  # (4) unbiased variance
        th, tl = two_sum(vh, eps)  # (5) + eps
        th, tl = renormalize(th, tl + vl)
        rh, rl = rsqrt_dd(th, tl)
        stats[RSTD, b] = rh
        stats[RSTD_LO, b] = rl
        if th == 0.0 or not math.isfinite(th):
            std[b] = math.sqrt(th) if th == th and th >= 0.0 else math.nan
        else:
            std[b] = dd_mul_round(th, tl, rh, rl)  # sqrt(t) = t / sqrt(t)


@pjit
def _centred(x, stats, xc, xhat):
    """Per element of the ``(B, n)`` view: ``xc = x - mean`` and
    ``xhat = (x - mean) * rstd``, each rounded once from the double-double
    statistics of its row."""
    B, n = x.shape
    for b in prange(B):
        mh, ml, rh, rl = stats[MEAN, b], stats[MEAN_LO, b], stats[RSTD, b], stats[RSTD_LO, b]
        for i in range(n):
            xc[b, i] = sub_dd_round(x[b, i], mh, ml)
            xhat[b, i] = _xhat(x[b, i], mh, ml, rh, rl)


@pjit
def _dots(a, c, out):
    """``out[b] = sum_i a[b, i] * c[b, i]``: exact products (``two_prod``),
    compensated sum in ascending ``i``, one thread per row."""
    B, n = a.shape
    for b in prange(B):
        sh = 0.0
        sl = 0.0
        for i in range(n):
            p, pe = two_prod(a[b, i], c[b, i])
            sh, e = two_sum(sh, p)
            sl += e + pe
        out[b] = sh + sl


@pjit
def _sums(a, out):
    """``out[b] = sum_i a[b, i]``, compensated, in ascending ``i``, one thread per row."""
    B, n = a.shape
    for b in prange(B):
        sh = 0.0
        sl = 0.0
        for i in range(n):
            sh, e = two_sum(sh, a[b, i])
            sl += e
        out[b] = sh + sl


def layout(x_shape) -> L.Layout:
    """The content ``x`` viewed as ``(1, N*C, M)``: each (sample, channel) one
    set; no parameters (``param_axes = ()``); the four statistics ``(N, C)``.
    The style's sets are the same ``(n, c)`` over its own ``Ms`` positions."""
    shape = tuple(int(s) for s in x_shape)
    N, C, M = shape[0], shape[1], V.prod(shape[2:])
    return L.Layout(shape, {k: (N, C) for k in ("mean", "rstd", "style_mean", "style_std")},
                    (1, N * C, M), (1, 1, max(M, 1)), ())


def _check_sets(name, shape):
    M = V.prod(shape[2:])
    if M < 2:
        raise ValueError(f"{name} must have at least 2 spatial positions per (sample, channel): the unbiased "
                         f"variance divides by (number of positions - 1); got shape {tuple(shape)} with {M}")
    return M


def _prepare(x, style, eps):
    xa = V.check_input("x", x, min_ndim=3, layout="(N, C, *spatial), at least one spatial dimension")
    sa = V.check_input("style", style, min_ndim=3, layout="(N, C, *spatial), at least one spatial dimension")
    if tuple(sa.shape[:2]) != tuple(xa.shape[:2]):
        raise ValueError(f"style must have the N and C of x {tuple(xa.shape[:2])} (its spatial sizes may differ), "
                         f"got shape {tuple(sa.shape)}")
    M = _check_sets("x", xa.shape)
    Ms = _check_sets("style", sa.shape)
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    B = xa.shape[0] * xa.shape[1]
    x2 = V.to_f64(xa).reshape(B, M)
    s2 = V.to_f64(sa).reshape(B, Ms)
    return xa.shape, sa.shape, x2, s2, float(eps)


def _set_stats(a2, eps):
    """``(stats, std)`` of the rows of ``a2`` (module docstring)."""
    B, n = a2.shape
    st = K.empty_stats(B)
    K.moments(a2.reshape(1, B, n), True, eps, st)
    std = np.empty(B)
    _unbiased(st, n, eps, std)
    return st, std


class _State:
    """Everything the forward computes, on the ``(B, M)`` / ``(B, Ms)`` views."""

    def __init__(self, x2, s2, eps):
        self.M, self.Ms = x2.shape[1], s2.shape[1]
        self.st, _ = _set_stats(x2, eps)
        self.sst, sd = _set_stats(s2, eps)
        self.sd = sd[:, None]  # s_std (B, 1)
        self.smean = self.sst[MEAN][:, None]  # s_mean, rounded to a double (renormalized: mean_hi)
        self.r = self.st[RSTD][:, None]
        self.xc = np.empty_like(x2)
        self.xhat = np.empty_like(x2)
        _centred(x2, self.st, self.xc, self.xhat)
        self.sc = np.empty_like(s2)
        shat = np.empty_like(s2)
        _centred(s2, self.sst, self.sc, shat)
        self.y = self.sd * self.xhat + self.smean  # (7)

    def stats(self, N, C):
        return {"mean": self.st[MEAN].reshape(N, C), "rstd": self.st[RSTD].reshape(N, C),
                "style_mean": self.sst[MEAN].reshape(N, C), "style_std": self.sd.reshape(N, C)}


def dots(a, c):
    """Per row of two ``(B, n)`` arrays: the compensated ``sum(a * c)``, shape ``(B, 1)``."""
    out = np.empty(a.shape[0])
    _dots(np.ascontiguousarray(a), np.ascontiguousarray(c), out)
    return out[:, None]


def sums(a):
    """Per row of a ``(B, n)`` array: the compensated ``sum(a)``, shape ``(B, 1)``."""
    out = np.empty(a.shape[0])
    _sums(np.ascontiguousarray(a), out)
    return out[:, None]


def adaptive_instance_norm_stats(x, style, eps=1e-5):
    """``y`` and the saved statistics, each ``(N, C)``: ``mean`` and ``rstd``
    (``1 / sqrt(unbiased var + eps)``) of the content, ``style_mean`` and
    ``style_std`` (``sqrt(unbiased var + eps)``) of the style."""
    shape, _, x2, s2, eps = _prepare(x, style, eps)
    S = _State(x2, s2, eps)
    return S.y.reshape(shape), S.stats(shape[0], shape[1])


def adaptive_instance_norm(x, style, eps=1e-5):
    """Adaptive Instance Normalization (Huang & Belongie 2017).

    .. math:: y = \\sigma_s \\frac{x - \\mu_x}{\\sigma_x} + \\mu_s

    per (sample, channel): ``mu`` the mean over the spatial positions and
    ``sigma = sqrt(unbiased var + eps)``, of the content ``x`` and of the
    style; as the authors' PyTorch code (``pytorch-AdaIN``, ``function.py``)
    computes it.

    Parameters
    ----------
    x : array ``(N, C, *spatial)`` (the content features), at least one spatial
        dimension and 2 positions, float16/bfloat16/float32/float64
    style : array ``(N, C, *spatial_s)`` (the style features), the same N and C;
        its spatial shape may differ from x's (at least 2 positions)
    eps : float >= 0, added to each unbiased variance inside the square root
        (default 1e-5, the authors')

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return adaptive_instance_norm_stats(x, style, eps)[0]


def adaptive_instance_norm_backward(dy, x, style, eps=1e-5):
    """Gradients of :func:`adaptive_instance_norm`: ``{"x", "style"}``, float64,
    shaped like ``x`` and ``style``.

    Per (n, c), with ``A = sum(dy)``, ``B = sum(dy xhat)``, ``M``/``Ms`` the
    content/style set sizes, ``r = rstd`` and ``sc = style - s_mean``:
    ``dx = r s_std ((dy - A/M) - xhat B/(M - 1))`` (InstanceNorm's backward with
    the gain ``s_std`` and the unbiased factor ``1/(M - 1)``) and
    ``dstyle = A/Ms + sc B / ((Ms - 1) s_std)`` (through ``s_mean`` and the
    unbiased ``s_std``).
    """
    shape, sshape, x2, s2, eps = _prepare(x, style, eps)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    S = _State(x2, s2, eps)
    A = sums(dy2)
    Bq = dots(dy2, S.xhat)
    dx = (S.r * S.sd) * ((dy2 - A / S.M) - S.xhat * (Bq / (S.M - 1)))
    ds = A / S.Ms + S.sc * (Bq / ((S.Ms - 1) * S.sd))
    return {"x": dx.reshape(shape), "style": ds.reshape(sshape)}


# ============================================================================= forward mode and second order
#
# docs/ops/adaptive_instance_norm.md#adain-jvp and #adain-second-order.  Per set, with the projection
#     P(v)  = (v - sum(v)/M) - xhat <xhat, v>/(M - 1)        (content; symmetric)
#     Ps(v) = (v - sum(v)/Ms) - shat <shat, v>/(Ms - 1)      (style, shat = sc / s_std)
# forward mode:   ty = r s_std P(tx) + (<shat, ts>/(Ms - 1)) xhat + sum(ts)/Ms
# second order, for the cotangents a (of dx) and b (of dstyle), q = <xhat, dy>, p = <xhat, a>,
# W = r <P(a), dy>, gam = <b, shat>/(Ms - 1):
#     d2dy    = r s_std P(a) + gam xhat + sum(b)/Ms                        (= the JVP along (a, b))
#     d2x     = s_std r^2/(M - 1) (-<P(a), dy> xhat - q P(a) - p P(dy)) + gam r P(dy)
#     d2style = W shat/(Ms - 1) + q Ps(b) / ((Ms - 1) s_std)


def _directions(kind, value, x, style, x2, s2):
    d = V.check_directions(kind, value, {"x": x, "style": style})
    tx = np.zeros_like(x2) if d["x"] is None else d["x"].reshape(x2.shape)
    ts = np.zeros_like(s2) if d["style"] is None else d["style"].reshape(s2.shape)
    return tx, ts


def _proj(v, hat, n):
    """``(v - sum(v)/n) - hat <hat, v>/(n - 1)`` per row."""
    return (v - sums(v) / n) - hat * (dots(hat, v) / (n - 1))


def adaptive_instance_norm_jvp(tangents, x, style, eps=1e-5):
    """Forward mode of :func:`adaptive_instance_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"`` and ``"style"`` (missing = zero).  Per
    (n, c): ``ty = r s_std P(tx) + (<shat, ts>/(Ms - 1)) xhat + sum(ts)/Ms`` with
    ``P(v) = (v - mean v) - xhat <xhat, v>/(M - 1)`` and ``shat = (style -
    s_mean)/s_std``.  ``y`` has the bits of :func:`adaptive_instance_norm`;
    float64, shaped like ``x``.
    """
    shape, _, x2, s2, eps = _prepare(x, style, eps)
    tx, ts = _directions("tangents", tangents, x, style, x2, s2)
    S = _State(x2, s2, eps)
    shat = S.sc / S.sd
    ty = (S.r * S.sd) * _proj(tx, S.xhat, S.M) + (dots(shat, ts) / (S.Ms - 1)) * S.xhat + sums(ts) / S.Ms
    return S.y.reshape(shape), ty.reshape(shape)


def adaptive_instance_norm_double_backward(cotangents, dy, x, style, eps=1e-5):
    """Second order of :func:`adaptive_instance_norm`: the VJP of
    :func:`adaptive_instance_norm_backward`.

    ``cotangents``: a dict over ``"x"`` and ``"style"`` (the cotangents ``a``
    of ``dx`` and ``b`` of ``dstyle``; missing = zero).  Returns ``{"dy", "x",
    "style"}``, the gradients of ``L = <a, dx> + <b, dstyle>`` (formulas in the
    comment above and docs/ops/adaptive_instance_norm.md#adain-second-order);
    float64, shaped like ``dy``, ``x`` and ``style``.
    """
    shape, sshape, x2, s2, eps = _prepare(x, style, eps)
    dy2 = V.check_dy(dy, shape).reshape(x2.shape)
    a, b = _directions("cotangents", cotangents, x, style, x2, s2)
    S = _State(x2, s2, eps)
    M, Ms, r, sd, xhat = S.M, S.Ms, S.r, S.sd, S.xhat
    shat = S.sc / sd
    Pa = _proj(a, xhat, M)
    Pdy = _proj(dy2, xhat, M)
    q = dots(xhat, dy2)
    p = dots(xhat, a)
    Pa_dy = dots(Pa, dy2)
    gam = dots(b, shat) / (Ms - 1)
    d2dy = (r * sd) * Pa + gam * xhat + sums(b) / Ms
    d2x = (sd * (r * r) / (M - 1)) * ((-Pa_dy * xhat - q * Pa) - p * Pdy) + (gam * r) * Pdy
    d2s = (r * Pa_dy) * shat / (Ms - 1) + q * _proj(b, shat, Ms) / ((Ms - 1) * sd)
    return {"dy": d2dy.reshape(shape), "x": d2x.reshape(shape), "style": d2s.reshape(sshape)}


__all__ = ["adaptive_instance_norm", "adaptive_instance_norm_backward", "adaptive_instance_norm_double_backward",
           "adaptive_instance_norm_jvp", "adaptive_instance_norm_stats"]
