"""Filter Response Normalization + TLU: the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.filter_response_norm`.  ``x`` of shape
``(N, C, *spatial)`` is viewed as ``(1, N*C, S)`` (``S = prod(spatial)``): each
(sample, channel) is one reduction set, with a per-channel affine
(``P = C``, ``Q = 1``, ``T = S``), as InstanceNorm's view but without centring.

Statistics (:func:`_moments`, this module's own kernel): per set, the mean
square ``nu2 = sum(x^2) / S`` as a compensated double-double sum of exact
squares (``two_prod``), never ``E[x^2] - E[x]^2`` (there is no mean to
subtract), and ``rstd = 1/sqrt(nu2 + eps)`` in double-double.  A set whose
largest ``|x|`` is above ``2^480`` (its squares would overflow) or below
``2^-480`` (they would underflow) is first scaled by a power of two ``sc``
(exact): ``rstd = sc / sqrt(nu2 sc^2 + eps sc^2)``.  The statistics are written
into the statistics array of :mod:`refnorm.ops._sets` (mean rows 0), so that
``z = weight * xhat + bias``, the input gradient, the affine sums, forward mode
and second order are the shared RMS-mode kernels (:mod:`refnorm.ops._kernels`,
:mod:`refnorm.ops._derivatives`) on that view.

Backward (derivation: docs/ops/filter_response_norm.md#frn-backward), per set,
with the TLU's masks ``mz = 1, 1/2, 0`` where ``z > tau``, ``z == tau``,
``z < tau`` and ``mt = 1 - mz`` (both 1 where ``z`` or ``tau`` is NaN), as
``torch.maximum``'s backward::

    dz    = mz * dy          (exactly 0 where mz = 0, even for an infinite dy)
    g     = weight * dz,   c2 = mean(g * xhat)
    dx    = rstd * (g - xhat * c2)
    dweight = sum_{n,s} dz * xhat,   dbias = sum_{n,s} dz,   dtau = sum_{n,s} mt * dy

Without ``tau``, ``dz = dy``.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _derivatives as D
from . import _kernels as K
from . import _layout as L
from . import _normalize as nz
from ._dd import dd_div_int, renormalize, rsqrt_dd, two_prod, two_sum
from ._jit import pjit, prange
from ._sets import M2, M2_LO, MEAN, MEAN_LO, MODE_RMS, RSTD, RSTD_LO

#: a set whose largest |x| lies outside [SMALL, BIG] is scaled by a power of two first
BIG = 2.0 ** 480
SMALL = 2.0 ** -480


@pjit
def _moments(x, eps, stats):
    """The statistics of every set ``x[b, :]`` of the ``(B, S)`` view: ``MEAN``,
    ``MEAN_LO`` = 0; ``M2`` (+ ``M2_LO``) the sum of squares ``sum x^2`` (inf
    where it overflows: informational, no kernel reads it); ``RSTD`` (+
    ``RSTD_LO``) = ``1 / sqrt(nu2 + eps)``, ``nu2 = sum(x^2) / S``, double-double.
    One thread per set; NaN statistics for an empty set (``S = 0``)."""
    B, S = x.shape
    for b in prange(B):
        # (1) the largest |x| (NaN if any is NaN) and the power-of-two scale sc
        amax = 0.0
        for s in range(S):
            a = abs(x[b, s])
            if not (a <= amax):
                amax = a
        sc = 1.0
        if math.isfinite(amax) and (amax > BIG or (amax > 0.0 and amax < SMALL)):
            _, ex = math.frexp(amax)  # amax = m 2^ex, 0.5 <= m < 1
            sc = math.ldexp(1.0, min(-ex, 1000))  # exact; |x sc| < 1 (>= 2^-74 when scaled up)
        # (2) q = sum (x sc)^2, exact squares, compensated sum
        qh = 0.0
        ql = 0.0
        for s in range(S):
            v = x[b, s] * sc
            p, pe = two_prod(v, v)
            qh, e = two_sum(qh, p)
            ql += e + pe
        qh, ql = renormalize(qh, ql)
        stats[MEAN, b] = 0.0
        stats[MEAN_LO, b] = 0.0
        inv = 1.0 / (sc * sc)
        stats[M2, b] = qh * inv
        stats[M2_LO, b] = ql * inv
        # (3) rstd = sc / sqrt(q / S + eps sc^2)
        if S == 0:
            stats[RSTD, b] = math.nan
            stats[RSTD_LO, b] = 0.0
            continue
        vh, vl = dd_div_int(qh, ql, S)  # nu2 sc^2
        es = (eps * sc) * sc  # exact unless it overflows
        if math.isinf(es):  # nu2 < 4 / sc^2 is below an ulp of eps: rstd = 1/sqrt(eps)
            rh, rl = rsqrt_dd(eps, 0.0)
        else:
            th, tl = two_sum(vh, es)
            th, tl = renormalize(th, tl + vl)
            rh, rl = rsqrt_dd(th, tl)
            rh = rh * sc
            rl = rl * sc
        stats[RSTD, b] = rh
        stats[RSTD_LO, b] = rl


def layout(x_shape) -> L.Layout:
    """The view ``(1, N*C, S)`` (each (sample, channel) one set), a per-channel
    affine (``P = C``, ``T = S``) for weight, bias and tau; ``rstd`` ``(N, C)``."""
    N, C, S = x_shape[0], x_shape[1], V.prod(x_shape[2:])
    return L.channels(x_shape, (1, N * C, S), (C, 1, S), {"rstd": (N, C)})


def _required(name, value, C):
    if value is None:
        raise TypeError(f"{name} is required: an array of shape ({C},) (one value per channel C), got None")
    return V.check_param(name, value, (C,), "one value per channel C")


def _prepare(x, weight, bias, tau, eps):
    xa = V.check_input("x", x, min_ndim=3, layout="(N, C, *spatial), at least one spatial dimension")
    C = xa.shape[1]
    w = _required("weight", weight, C)
    b = _required("bias", bias, C)
    t = V.check_param("tau", tau, (C,), "one value per channel C")
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x3 = V.to_f64(xa).reshape(layout(xa.shape).view)
    return xa.shape, C, x3, w, b, t, eps


def _stats(x3, eps) -> nz.Stats:
    st = K.empty_stats(x3.shape[1])
    _moments(x3.reshape(x3.shape[1], x3.shape[2]), float(eps), st)
    return nz.Stats(st, x3.shape[2])


def _z(x3, st, w, b, C):
    """``z = weight * xhat + bias`` on the view (the shared forward kernel)."""
    return nz.forward(x3, st, w, b, P=C, Q=1)


def _tau_view(t, x3, C):
    """tau broadcast over the view ``(1, N*C, S)``."""
    return np.broadcast_to(np.tile(t, x3.shape[1] // C if C else 0)[None, :, None], x3.shape)


def _masks(z3, tau3):
    """The TLU's derivative masks ``(mz, mt)`` (module docstring): 1 / 0.5 / 0, and 1 for both where
    ``z`` or ``tau`` is NaN (torch.maximum's backward)."""
    with np.errstate(invalid="ignore"):
        mz = np.where(z3 < tau3, 0.0, np.where(z3 == tau3, 0.5, 1.0))
        mt = np.where(z3 > tau3, 0.0, np.where(z3 == tau3, 0.5, 1.0))
    return mz, mt


def _masked(m, v):
    """``m * v`` with an exact 0 where ``m == 0`` (masked_fill: an infinite ``v`` gives 0, not NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(m == 0.0, 0.0, m * v)


def filter_response_norm_stats(x, weight, bias, tau=None, eps=1e-6):
    """``y`` and the saved statistic ``rstd = 1/sqrt(mean(x^2) + eps)`` of shape ``(N, C)``."""
    shape, C, x3, w, b, t, eps = _prepare(x, weight, bias, tau, eps)
    st = _stats(x3, eps)
    y3 = _z(x3, st, w, b, C)
    if t is not None:
        y3 = np.maximum(y3, _tau_view(t, x3, C))  # (6) NaN in z or tau propagates
    return y3.reshape(shape), {"rstd": st.rstd.reshape(shape[0], C)}


def filter_response_norm(x, weight, bias, tau=None, eps=1e-6):
    """Filter Response Normalization with the optional Thresholded Linear Unit.

    .. math:: y = \\max\\Big(\\gamma \\frac{x}{\\sqrt{\\mathrm{mean}_s(x^2) + \\epsilon}} + \\beta,\\ \\tau\\Big)

    per (sample, channel) over every spatial position (Singh & Krishnan 2019;
    timm's ``FilterResponseNormTlu2d``); no mean subtraction.

    Parameters
    ----------
    x : array ``(N, C, *spatial)``, at least one spatial dimension, float16/bfloat16/float32/float64
    weight, bias : arrays ``(C,)``, required (gamma, beta)
    tau : array ``(C,)`` or None (None: no TLU, ``y = gamma xhat + beta``)
    eps : float >= 0, added to the mean square inside the square root (the paper's 1e-6;
        timm's default is 1e-5)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return filter_response_norm_stats(x, weight, bias, tau, eps)[0]


def filter_response_norm_backward(dy, x, weight, bias, tau=None, eps=1e-6):
    """Gradients of :func:`filter_response_norm`: ``{"x", "weight", "bias"}`` and
    ``"tau"`` when given, float64.

    With ``r = rstd``, ``xhat = x r``, ``z = weight xhat + bias`` and the TLU's
    masks ``mz`` (1 where ``z > tau``, 1/2 at a tie ``z == tau``, 0 below) and
    ``mt = 1 - mz``: ``dz = mz dy``, ``g = weight dz``,
    ``dx = r (g - xhat mean(g xhat))`` per (n, c); ``dweight = sum dz xhat``,
    ``dbias = sum dz``, ``dtau = sum mt dy`` over ``(N, *spatial)``.  The tie's
    half/half split and a masked gradient that is exactly 0 (also for an
    infinite ``dy``) are ``torch.maximum``'s backward; where ``z`` or ``tau`` is
    NaN both masks are 1 (as there).

    Shapes: ``dy`` and ``dx`` like ``x``; ``dweight``, ``dbias``, ``dtau`` ``(C,)``.
    """
    shape, C, x3, w, b, t, eps = _prepare(x, weight, bias, tau, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    st = _stats(x3, eps)
    dz3, dtau = dy3, None
    if t is not None:
        tau3 = _tau_view(t, x3, C)
        mz, mt = _masks(_z(x3, st, w, b, C), tau3)
        dz3 = _masked(mz, dy3)
        dtau = np.empty(C)
        D.param_sums(_masked(mt, dy3), np.ones_like(dy3), C, 1, x3.shape[2], dtau)
    dx3, dw, db = nz.backward(dz3, x3, st, w, P=C, Q=1, rms=True, affine=True)
    out = {"x": dx3.reshape(shape), "weight": dw, "bias": db}
    if t is not None:
        out["tau"] = dtau
    return out


# ============================================================================= forward mode and second order
#
# Forward mode (docs/ops/filter_response_norm.md#frn-jvp): the tangent of z is the RMS-mode JVP of the
# shared kernels, tz = weight r (tx - xhat mean(xhat tx)) + tweight xhat + tbias, and the TLU passes
# ty = mz tz + mt ttau (the transpose of the backward's masks: at a tie (tz + ttau)/2).
#
# Second order (docs/ops/filter_response_norm.md#frn-second-order): the masks are piecewise constant,
# so the backward is the RMS normalization's backward at dz = mz dy plus dtau = sum mt dy.  For the
# cotangents (a, gw, gb, gt) of (dx, dweight, dbias, dtau):
#     d2dy = mz * (weight r P(a) + gw xhat + gb) + mt * gt     (the JVP along the cotangents)
#     d2x, d2weight: the RMS normalization's second order with dz in place of dy
#     d2bias = d2tau = 0                                        (the backward reads neither)


def _directions(kind, value, x, weight, bias, tau, x3, C):
    d = V.check_directions(kind, value, {"x": x, "weight": weight, "bias": bias, "tau": tau})
    tt = None if d["tau"] is None else _tau_view(d["tau"], x3, C)
    return {k: d[k] for k in ("x", "weight", "bias")}, tt


def filter_response_norm_jvp(tangents, x, weight, bias, tau=None, eps=1e-6):
    """Forward mode of :func:`filter_response_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"tau"`` (missing =
    zero; ``"tau"`` only when ``tau`` is given).  Per (n, c), with ``P(v) = v -
    xhat mean(xhat v)``: ``tz = weight r P(tx) + tweight xhat + tbias`` and
    ``ty = mz tz + mt ttau`` (the backward's masks; at a tie ``(tz + ttau)/2``).
    ``y`` has the bits of :func:`filter_response_norm`; float64, shaped like ``x``.
    """
    shape, C, x3, w, b, t, eps = _prepare(x, weight, bias, tau, eps)
    dirs, tt = _directions("tangents", tangents, x, weight, bias, tau, x3, C)
    st = _stats(x3, eps)
    z3 = _z(x3, st, w, b, C)
    tz3 = D.jvp(x3, st, w, dirs, C, 1, MODE_RMS)
    if t is None:
        return z3.reshape(shape), tz3.reshape(shape)
    tau3 = _tau_view(t, x3, C)
    mz, mt = _masks(z3, tau3)
    ty3 = _masked(mz, tz3) + (0.0 if tt is None else _masked(mt, tt))
    return np.maximum(z3, tau3).reshape(shape), ty3.reshape(shape)


def filter_response_norm_double_backward(cotangents, dy, x, weight, bias, tau=None, eps=1e-6):
    """Second order of :func:`filter_response_norm`: the VJP of
    :func:`filter_response_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"tau"`` (missing =
    zero).  Returns ``{"dy", "x", "weight", "bias"}`` and ``"tau"`` when given: the
    gradients of ``L = sum_k <cotangents[k], backward(dy, ...)[k]>``; ``"bias"`` and
    ``"tau"`` are zeros (the backward is piecewise linear in them with a constant
    mask).  float64, shaped like the arguments.
    """
    shape, C, x3, w, b, t, eps = _prepare(x, weight, bias, tau, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    dirs, ct = _directions("cotangents", cotangents, x, weight, bias, tau, x3, C)
    st = _stats(x3, eps)
    dz3, mz, mt = dy3, None, None
    if t is not None:
        mz, mt = _masks(_z(x3, st, w, b, C), _tau_view(t, x3, C))
        dz3 = _masked(mz, dy3)
    d2dy3, d2x3, d2w = D.double_backward(dz3, x3, st, w, dirs, C, 1, MODE_RMS)
    if t is not None:
        d2dy3 = _masked(mz, d2dy3) + (0.0 if ct is None else _masked(mt, ct))
    out = {"dy": d2dy3.reshape(shape), "x": d2x3.reshape(shape), "weight": d2w, "bias": np.zeros(C)}
    if t is not None:
        out["tau"] = np.zeros(C)
    return out


__all__ = ["filter_response_norm", "filter_response_norm_backward", "filter_response_norm_double_backward",
           "filter_response_norm_jvp", "filter_response_norm_stats"]
