"""GN+: the fast path.

The definition is :mod:`refnorm.reference.gn_plus` (docs/ops/gn_plus.md).  ``x`` of shape
``(N, C, *spatial)`` is held as a contiguous ``(N, C, HW)`` array; each
normalization is an eps-on-std normalization ``(t - mean)/(std + eps)`` of the
reduction sets ``t[:, b, :]`` of one reshape (never a copy) of such an array,
in the canonical ``(A, B, S)`` form of :mod:`refnorm.ops._kernels`:

=====================  ====================  ====================
normalization          view (A, B, S)        one set per
=====================  ====================  ====================
GN                     (1, N*G, C/G*HW)      (n, g)
BN0 "position"         (N, C*HW, 1)          (c, spatial)
BN0 "channel"          (N, C, HW)            c
=====================  ====================  ====================

Statistics: ``mean`` and the centred sum of squares ``m2`` of every set come
from :func:`refnorm.ops._kernels.moments` (double-double, compensated);
``std = sqrt(m2 / (n - 1))`` (unbiased) and ``den = std + eps``.

Backward
--------
The map of one eps-on-std normalization ``a = tc/(s + eps)``, ``tc = t - mean``,
``s = sqrt(sum tc^2/(n - 1))``, applied to a cotangent ``g`` of ``a`` (derived;
docs/ops/gn_plus.md#gnplus-backward)::

    ds/dt_i  = tc_i / ((n - 1) s)
    da_i     = dt_i/(s + eps) - tc_i ds/(s + eps)^2,  dt -> dt - mean(dt)
    N^T(g)   = (g - c1)/(s + eps) - c2 * tc
    c1       = mean(g)                                   # term 1: the mean path
    c2       = sum(g * tc) / ((n - 1) s (s + eps)^2)     # term 2: the std path

(the centring projection of term 2 vanishes because sum tc = 0).  At a constant
set (s = 0, tc = 0) the map is still differentiable: ``a = dt/eps + O(|dt|^2)``,
so the limit ``c2 = 0`` is used there; autograd of the reference gives NaN at
that point (sqrt'(0) = inf).

With ``lam = sigmoid(mix)``, ``z = lam*a + (1 - lam)*b``, ``y = z*gamma + beta``
and ``h = gamma * dy`` (the cotangent of z)::

    h_a = lam * h,  h_b = (1 - lam) * h          # cotangents of a and b as outputs
    dgamma_c = sum_{n,spatial} dy * z;  dbeta_c = sum_{n,spatial} dy
    dmix     = lam (1 - lam) * sum h * (a - b)   # sigmoid' = lam (1 - lam)

and the input gradient follows the composition of each variant:

* ``parallel``  (a = GN(x), b = BN0(x)): both branches read x::

      dx = GN^T_x(h_a) + BN0^T_x(h_b)

* ``gn_first``  (a = GN(x), b = BN0(a)): a is an output and the input of BN0::

      da = h_a + BN0^T_a(h_b);   dx = GN^T_x(da)

* ``bn_first``  (b = BN0(x), a = GN(b)): b is an output and the input of GN::

      db = h_b + GN^T_b(h_a);    dx = BN0^T_x(db)

where ``N^T_t`` is the map above with the statistics of that normalization's
own input ``t``.  Sums are compensated, one reduction set (or one channel) per
thread; dmix adds the per-channel partial sums with :func:`math.fsum`.

Forward mode and second order (``gn_plus_jvp``, ``gn_plus_double_backward``):
the section at the end of this module (docs/ops/gn_plus.md#gnplus-jvp).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, sub_dd_round, two_sum
from ._jit import pjit, prange
from ._sets import M2, M2_LO, MEAN, MEAN_LO

VARIANTS = ("gn_first", "bn_first", "parallel")
BATCH_STATS = ("position", "channel")


@pjit
def _std_eps(stats, n, eps, std, den):
    """``std = sqrt(m2 / (n - 1))`` (unbiased) and ``den = std + eps`` per set
    (``m2`` from the statistics array of :func:`refnorm.ops._kernels.moments`).
    GN+ divides by ``den`` where the other kernels multiply by ``rstd``."""
    for b in prange(stats.shape[1]):
        vh, vl = dd_div_int(stats[M2, b], stats[M2_LO, b], n - 1)
        s = math.sqrt(vh + vl)
        std[b] = s
        den[b] = s + eps


@pjit
def _normalize(t, stats, den, out):
    """``out = (t - mean) / (std + eps)`` on the view ``(A, B, S)``; ``t - mean``
    is formed from the double-double mean (columns of ``stats``) and rounded once."""
    A, B, S = t.shape
    for b in prange(B):
        mh = stats[MEAN, b]
        ml = stats[MEAN_LO, b]
        d_ = den[b]
        for a in range(A):
            for s in range(S):
                out[a, b, s] = sub_dd_round(t[a, b, s], mh, ml) / d_


@pjit
def _norm_backward(g, t, stats, std, den, accumulate, out):
    """``out (+)= N^T(g)``, the backward of :func:`_normalize` (module docstring),
    on the view ``(A, B, S)``; ``g`` is the cotangent of the normalized value."""
    A, B, S = t.shape
    n = A * S
    for b in prange(B):
        mh = stats[MEAN, b]
        ml = stats[MEAN_LO, b]
        s_ = std[b]
        d_ = den[b]
        s1h = 0.0  # sum g
        s1l = 0.0
        s2h = 0.0  # sum g * tc
        s2l = 0.0
        for a in range(A):
            for s in range(S):
                tc = sub_dd_round(t[a, b, s], mh, ml)
                s1h, e = two_sum(s1h, g[a, b, s])
                s1l += e
                s2h, e = two_sum(s2h, g[a, b, s] * tc)
                s2l += e
        c1h, c1l = dd_div_int(s1h, s1l, n)
        c1 = c1h + c1l  # term 1: mean(g)
        if s_ == 0.0:
            c2 = 0.0  # constant set: the limit of term 2 is 0
        else:
            # term 2; c2 differs from mean(g * xhat): the unbiased std + eps denominator
            c2 = (s2h + s2l) / (((n - 1) * s_) * (d_ * d_))
        for a in range(A):
            for s in range(S):
                tc = sub_dd_round(t[a, b, s], mh, ml)
                v = (g[a, b, s] - c1) / d_ - c2 * tc
                if accumulate:
                    out[a, b, s] += v
                else:
                    out[a, b, s] = v


@pjit
def _mix_forward(a, b, lam, weight, bias, y):
    """``y = (lam * a + (1 - lam) * b) * gamma_c + beta_c`` on ``(N, C, HW)``."""
    N, C, S = a.shape
    for r in prange(N * C):
        n = r // C
        c = r % C
        w = weight[c]
        bb = bias[c]
        for s in range(S):
            z = lam * a[n, c, s] + (1.0 - lam) * b[n, c, s]  # (4)
            y[n, c, s] = z * w + bb  # (5)


@pjit
def _mix_backward(dy, a, b, lam, weight, h_a, h_b, dweight, dbias, dmix_c):
    """Cotangents of the two branches ``h_a = lam*gamma*dy``, ``h_b = (1-lam)*gamma*dy``
    and, per channel, ``dweight = sum dy*z``, ``dbias = sum dy`` and the partial
    ``dmix_c = sum gamma*dy*(a - b)`` (not yet times lam (1 - lam))."""
    N, C, S = a.shape
    for c in prange(C):
        w = weight[c]
        wh = 0.0
        wl = 0.0
        bh = 0.0
        bl = 0.0
        xh = 0.0  # sum g * (a - b), for dmix
        xl = 0.0
        for n in range(N):
            for s in range(S):
                dyv = dy[n, c, s]
                g = dyv * w  # weight * dy, the cotangent of z (h in the docstring)
                h_a[n, c, s] = lam * g
                h_b[n, c, s] = (1.0 - lam) * g
                z = lam * a[n, c, s] + (1.0 - lam) * b[n, c, s]
                wh, e = two_sum(wh, dyv * z)
                wl += e
                bh, e = two_sum(bh, dyv)
                bl += e
                xh, e = two_sum(xh, g * (a[n, c, s] - b[n, c, s]))
                xl += e
        dweight[c] = wh + wl
        dbias[c] = bh + bl
        dmix_c[c] = xh + xl


# --- the two normalizations, on views of (N, C, HW) arrays ----------------------

class _Norm:
    """One eps-on-std normalization: the view of its reduction sets and the
    statistics of the input it was applied to."""

    def __init__(self, view, t, eps):
        self.view = view
        tv = view(t)
        self.t = tv
        B = tv.shape[1]
        self.stats = K.empty_stats(B)
        K.moments(tv, True, 0.0, self.stats)  # its rstd rows (biased, eps 0) are not used
        self.std, self.den = np.empty(B), np.empty(B)
        _std_eps(self.stats, tv.shape[0] * tv.shape[2], float(eps), self.std, self.den)

    def forward(self):
        """The normalized input, in the view's shape."""
        out = np.empty_like(self.t)
        _normalize(self.t, self.stats, self.den, out)
        return out

    def backward(self, g3, out3, accumulate):
        """``out3 (+)= N^T(g3)`` for ``(N, C, HW)`` arrays ``g3``, ``out3``."""
        _norm_backward(self.view(g3), self.t, self.stats, self.std, self.den, accumulate, self.view(out3))


def _views(shape3, G, batch_stats):
    N, C, HW = shape3

    def gn(arr):
        return arr.reshape(1, N * G, (C // G) * HW)

    if batch_stats == "position":
        def bn(arr):
            return arr.reshape(N, C * HW, 1)
    else:
        def bn(arr):
            return arr.reshape(N, C, HW)
    return gn, bn


def _forward_branches(x3, G, eps, variant, batch_stats):
    """``a``, ``b`` (each ``(N, C, HW)``) and the two :class:`_Norm` records."""
    gn, bn = _views(x3.shape, G, batch_stats)

    def run(view, t):
        nrm = _Norm(view, t, eps)
        return nrm, nrm.forward().reshape(x3.shape)

    if variant == "gn_first":
        ngn, a = run(gn, x3)  # (1) a = GN(x)
        nbn, b = run(bn, a)  # (2) b = BN0(a)
    elif variant == "bn_first":
        nbn, b = run(bn, x3)  # (1) b = BN0(x)
        ngn, a = run(gn, b)  # (2) a = GN(b)
    else:
        ngn, a = run(gn, x3)  # (1) a = GN(x)
        nbn, b = run(bn, x3)  # (2) b = BN0(x)
    return a, b, ngn, nbn


# --- argument checks ---------------------------------------------------------

def _check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {list(choices)}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def layout(x_shape, num_groups) -> L.Layout:
    """Per-channel parameters, no saved statistics; no single canonical view
    (a GN view and a BN0 view, see :func:`_views`)."""
    return L.Layout(x_shape, {}, None, None, (1,))


def _prepare(x, num_groups, weight, bias, mix, eps, variant, batch_stats):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    N, C = xa.shape[0], xa.shape[1]
    G = V.check_int("num_groups", num_groups, minimum=1)
    if C % G != 0:
        raise ValueError(f"num_groups must divide the number of channels C = {C}, got num_groups = {G}")
    HW = V.prod(xa.shape[2:])
    if N < 2:
        raise ValueError(f"gn_plus needs a batch of N >= 2 samples (BN0 uses the unbiased std over the batch; "
                         f"there are no running statistics), got x of shape {tuple(xa.shape)}")
    if (C // G) * HW < 2:
        raise ValueError(f"gn_plus needs at least 2 elements per group (C/num_groups * prod(spatial) >= 2 for "
                         f"the unbiased std), got x of shape {tuple(xa.shape)} and num_groups = {G}")
    params = []
    for name, value in (("weight", weight), ("bias", bias)):
        V.as_float_array(name, value)  # None -> TypeError naming the argument
        params.append(V.check_param(name, value, (C,), "one value per channel C"))
    m = V.as_float_array("mix", mix)
    if m.shape not in ((), (1,)):
        raise ValueError(f"mix must have shape (1,) or () (the raw scalar lambda; sigmoid(mix) is the mixing "
                         f"weight), got shape {tuple(m.shape)}")
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    _check_choice("variant", variant, VARIANTS)
    _check_choice("batch_stats", batch_stats, BATCH_STATS)
    x3 = V.to_f64(xa).reshape(N, C, HW)
    return xa.shape, G, x3, params[0], params[1], m.shape, float(m.reshape(())), eps


def _sigmoid(mix):
    return 1.0 / (1.0 + math.exp(-mix)) if mix > -700.0 else 0.0  # (3), as the reference


# --- public API ----------------------------------------------------------------

def gn_plus(x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first", batch_stats="position"):
    """GN+ (docs/ops/gn_plus.md): ``y = (lam*a + (1 - lam)*b) * weight_c + bias_c``,
    ``lam = sigmoid(mix)``.

    ``a`` is a GroupNorm branch and ``b`` a batch branch, both normalizing with
    the UNBIASED std and ``eps`` added to the std, ``(t - mean)/(std + eps)``:

    * ``variant="gn_first"`` (default, the authors' final layer): ``a = GN(x)``, ``b = BN0(a)``;
    * ``variant="bn_first"``: ``b = BN0(x)``, ``a = GN(b)``;
    * ``variant="parallel"``: ``a = GN(x)``, ``b = BN0(x)``.

    BN0 reduces over the batch axis only at each ``(c, *spatial)`` position
    (``batch_stats="position"``, the authors' code) or per channel over
    ``(N, *spatial)`` (``"channel"``).  No running statistics.

    Parameters
    ----------
    x : array, shape ``(N, C, *spatial)``, N >= 2.
    num_groups : int dividing C (the paper's code uses 32); C/G * prod(spatial) >= 2.
    weight, bias : arrays of shape ``(C,)`` (init 1 and 0).
    mix : array of shape ``(1,)`` or ``()``: the raw lambda (init 1.0).
    eps : float >= 0, added to the std (default 1e-5).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    shape, G, x3, w, bvec, _, mixv, eps = _prepare(x, num_groups, weight, bias, mix, eps, variant, batch_stats)
    a, b, _, _ = _forward_branches(x3, G, eps, variant, batch_stats)
    y = np.empty_like(x3)
    _mix_forward(a, b, _sigmoid(mixv), w, bvec, y)
    return y.reshape(shape)


def gn_plus_backward(dy, x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first", batch_stats="position"):
    """Gradients of :func:`gn_plus`: ``{"x", "weight", "bias", "mix"}`` (``mix``
    shaped like the given ``mix``); derivation in the module docstring.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(N, C, *spatial)``); ``weight`` and
    ``bias`` gradients ``(C,)``; ``mix`` ``(1,)`` or ``()``.  All float64.
    Gradients flow through every statistic of both branches (no stop-gradient)."""
    shape, G, x3, w, bvec, mshape, mixv, eps = _prepare(x, num_groups, weight, bias, mix, eps, variant,
                                                        batch_stats)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    a, b, ngn, nbn = _forward_branches(x3, G, eps, variant, batch_stats)
    lam = _sigmoid(mixv)
    C = x3.shape[1]
    h_a, h_b = np.empty_like(x3), np.empty_like(x3)
    dw, db, dmix_c = np.empty(C), np.empty(C), np.empty(C)
    _mix_backward(dy3, a, b, lam, w, h_a, h_b, dw, db, dmix_c)
    dmix = lam * (1.0 - lam) * math.fsum(dmix_c)
    dx3 = np.empty_like(x3)
    if variant == "parallel":
        ngn.backward(h_a, dx3, False)  # GN^T_x(h_a)
        nbn.backward(h_b, dx3, True)  # + BN0^T_x(h_b)
    elif variant == "gn_first":
        da = h_a  # da = h_a + BN0^T_a(h_b)
        nbn.backward(h_b, da, True)
        ngn.backward(da, dx3, False)  # dx = GN^T_x(da)
    else:
        dbr = h_b  # db = h_b + GN^T_b(h_a)
        ngn.backward(h_a, dbr, True)
        nbn.backward(dbr, dx3, False)  # dx = BN0^T_x(db)
    return {"x": dx3.reshape(shape), "weight": dw, "bias": db, "mix": np.full(mshape, dmix)}


# ============================================================================= forward mode and second order
#
# Every piece is built from three maps of ONE eps-on-std normalization ``a = tc/(s + eps)`` of one
# reduction set (docs/ops/gn_plus.md#gnplus-jvp and #gnplus-second-order):
#
# * its backward ``N^T(g)`` (:func:`_norm_backward`, above);
# * its tangent map along ``dt`` (:func:`_normalize_tangent`)::
#
#       ds    = sum(tc * dtc) / ((n - 1) s),   dtc = dt - mean(dt)
#       N'(dt) = dtc / (s + eps) - tc * ds / (s + eps)^2
#
# * the derivative of its backward with respect to its input, ``g`` fixed
#   (:func:`_norm_backward_tangent`), from ``N^T(g) = (g - c1)/den - c2 tc``::
#
#       dc2 = sum(g * dtc) / ((n - 1) s den^2) - c2 * (ds / s + 2 ds / den)
#       d[N^T(g)] = -(g - c1) ds / den^2 - dc2 * tc - c2 * dtc
#
#   (at a constant set, s = 0: ds = 0, c2 = 0 and dc2 = 0, the limits of the first-order maps;
#   the backward itself is not differentiable there, see the docs).
#
# Forward mode composes the tangent maps in the variant's order; with ``tlam = lam (1 - lam) tmix``::
#
#     tz = tlam (a - b) + lam ta + (1 - lam) tb,    ty = tz gamma + z tgamma + tbeta
#
# Second order, for the cotangents ``c`` of ``(dx, dgamma, dbeta, dmix)``: the dy part is the JVP
# along ``t = c``; the rest is the derivative of the backward along ``t = c`` (the Hessian of
# ``<dy, y>`` is symmetric).  With ``h = gamma dy``, ``th = tgamma dy``::
#
#     th_a = tlam h + lam th,  th_b = -tlam h + (1 - lam) th
#     ddgamma_c = sum dy tz,   ddbeta = 0
#     ddmix = lam (1 - lam)(1 - 2 lam) tmix sum h (a - b) + lam (1 - lam) sum (th (a - b) + h (ta - tb))
#     gn_first:  tda = th_a + BN0^T_a(th_b) + d[BN0^T_a(h_b)](ta);   ddx = GN^T_x(tda) + d[GN^T_x(da)](tx)
#     bn_first:  tdb = th_b + GN^T_b(th_a) + d[GN^T_b(h_a)](tb);     ddx = BN0^T_x(tdb) + d[BN0^T_x(db)](tx)
#     parallel:  ddx = GN^T_x(th_a) + d[GN^T_x(h_a)](tx) + BN0^T_x(th_b) + d[BN0^T_x(h_b)](tx)


@pjit
def _normalize_tangent(t, tt, stats, std, den, out):
    """``out = N'(tt)`` (rule above) on the view ``(A, B, S)``, one set per
    thread, three passes: ``mean(tt)``, ``sum tc * ttc`` (compensated), the output."""
    A, B, S = t.shape
    n = A * S
    for b in prange(B):
        mh = stats[MEAN, b]
        ml = stats[MEAN_LO, b]
        s_ = std[b]
        d_ = den[b]
        th = 0.0
        tl = 0.0
        for a in range(A):
            for s in range(S):
                th, e = two_sum(th, tt[a, b, s])
                tl += e
        mth, mtl = dd_div_int(th, tl, n)
        qh = 0.0
        ql = 0.0
        for a in range(A):
            for s in range(S):
                qh, e = two_sum(qh, sub_dd_round(t[a, b, s], mh, ml) * sub_dd_round(tt[a, b, s], mth, mtl))
                ql += e
        ds = 0.0 if s_ == 0.0 else (qh + ql) / ((n - 1) * s_)  # d std
        for a in range(A):
            for s in range(S):
                tc = sub_dd_round(t[a, b, s], mh, ml)
                # term 1: the centred tangent over den; term 2: the std's change
                out[a, b, s] = sub_dd_round(tt[a, b, s], mth, mtl) / d_ - tc * (ds / (d_ * d_))


@pjit
def _norm_backward_tangent(g, t, tt, stats, std, den, accumulate, out):
    """``out (+)= d[N^T(g)](tt)``: the derivative of :func:`_norm_backward`
    with respect to the normalized input ``t`` along ``tt``, the cotangent
    ``g`` fixed (rule above), on the view ``(A, B, S)``, one set per thread.
    Passes: ``mean(tt)``, ``c1 = mean(g)``; ``sum tc ttc``, ``sum g tc``,
    ``sum g ttc`` (compensated); the output."""
    A, B, S = t.shape
    n = A * S
    for b in prange(B):
        mh = stats[MEAN, b]
        ml = stats[MEAN_LO, b]
        s_ = std[b]
        d_ = den[b]
        th = 0.0
        tl = 0.0
        s1h = 0.0
        s1l = 0.0
        for a in range(A):
            for s in range(S):
                th, e = two_sum(th, tt[a, b, s])
                tl += e
                s1h, e = two_sum(s1h, g[a, b, s])
                s1l += e
        mth, mtl = dd_div_int(th, tl, n)
        c1h, c1l = dd_div_int(s1h, s1l, n)
        c1 = c1h + c1l
        qh = 0.0  # sum tc * ttc
        ql = 0.0
        s2h = 0.0  # sum g * tc
        s2l = 0.0
        s3h = 0.0  # sum g * ttc
        s3l = 0.0
        for a in range(A):
            for s in range(S):
                tc = sub_dd_round(t[a, b, s], mh, ml)
                ttc = sub_dd_round(tt[a, b, s], mth, mtl)
                qh, e = two_sum(qh, tc * ttc)
                ql += e
                s2h, e = two_sum(s2h, g[a, b, s] * tc)
                s2l += e
                s3h, e = two_sum(s3h, g[a, b, s] * ttc)
                s3l += e
        if s_ == 0.0:
            ds = 0.0  # constant set: the limits of the first-order maps
            c2 = 0.0
            dc2 = 0.0
        else:
            ds = (qh + ql) / ((n - 1) * s_)
            k = ((n - 1) * s_) * (d_ * d_)
            c2 = (s2h + s2l) / k  # as _norm_backward
            dc2 = (s3h + s3l) / k - c2 * (ds / s_ + 2.0 * ds / d_)
        for a in range(A):
            for s in range(S):
                tc = sub_dd_round(t[a, b, s], mh, ml)
                ttc = sub_dd_round(tt[a, b, s], mth, mtl)
                # d of term 1, (g - c1)/den; d of term 2, -c2 tc
                v = -(g[a, b, s] - c1) * (ds / (d_ * d_)) - dc2 * tc - c2 * ttc
                if accumulate:
                    out[a, b, s] += v
                else:
                    out[a, b, s] = v


@pjit
def _mix_jvp(a, b, ta, tb, lam, tlam, weight, tweight, tbias, ty):
    """``ty = tz * gamma_c + z * tgamma_c + tbeta_c`` on ``(N, C, HW)``,
    ``z = lam a + (1 - lam) b`` (as :func:`_mix_forward`),
    ``tz = tlam (a - b) + lam ta + (1 - lam) tb``."""
    N, C, S = a.shape
    for r in prange(N * C):
        n = r // C
        c = r % C
        w = weight[c]
        tw = tweight[c]
        tbb = tbias[c]
        for s in range(S):
            z = lam * a[n, c, s] + (1.0 - lam) * b[n, c, s]
            tz = tlam * (a[n, c, s] - b[n, c, s]) + (lam * ta[n, c, s] + (1.0 - lam) * tb[n, c, s])
            ty[n, c, s] = tz * w + z * tw + tbb


@pjit
def _mix_backward_tangent(dy, a, b, ta, tb, lam, tlam, weight, tweight, th_a, th_b, ddweight, hab_c, dmix_c):
    """Per channel, the derivative of :func:`_mix_backward` along the tangents:
    ``th_a``, ``th_b`` (elementwise), ``ddweight = sum dy * tz`` and the partials
    ``hab_c = sum h (a - b)`` and ``dmix_c = sum th (a - b) + h (ta - tb)``
    (combined into ``ddmix`` by the caller, rule above)."""
    N, C, S = a.shape
    for c in prange(C):
        w = weight[c]
        tw = tweight[c]
        wh = 0.0
        wl = 0.0
        hh = 0.0
        hl = 0.0
        xh = 0.0
        xl = 0.0
        for n in range(N):
            for s in range(S):
                dyv = dy[n, c, s]
                h = dyv * w  # the cotangent of z
                th = dyv * tw  # its tangent
                th_a[n, c, s] = tlam * h + lam * th
                th_b[n, c, s] = (1.0 - lam) * th - tlam * h
                ab = a[n, c, s] - b[n, c, s]
                tz = tlam * ab + (lam * ta[n, c, s] + (1.0 - lam) * tb[n, c, s])
                wh, e = two_sum(wh, dyv * tz)
                wl += e
                hh, e = two_sum(hh, h * ab)
                hl += e
                xh, e = two_sum(xh, th * ab + h * (ta[n, c, s] - tb[n, c, s]))
                xl += e
        ddweight[c] = wh + wl
        hab_c[c] = hh + hl
        dmix_c[c] = xh + xl


def _tangent(nrm, tt3, shape3):
    """``N'(tt)`` of the normalization record ``nrm`` for an ``(N, C, HW)`` tangent."""
    out = np.empty_like(nrm.t)
    _normalize_tangent(nrm.t, nrm.view(tt3), nrm.stats, nrm.std, nrm.den, out)
    return out.reshape(shape3)


def _backward_tangent(nrm, g3, tt3, out3, accumulate):
    """``out3 (+)= d[N^T(g3)](tt3)`` for ``(N, C, HW)`` arrays."""
    _norm_backward_tangent(nrm.view(g3), nrm.t, nrm.view(tt3), nrm.stats, nrm.std, nrm.den, accumulate,
                           nrm.view(out3))


def _branch_tangents(tx3, ngn, nbn, variant):
    """``(ta, tb)``: the tangents of the two branches, composed in the variant's order."""
    if variant == "gn_first":
        ta = _tangent(ngn, tx3, tx3.shape)  # a = GN(x)
        tb = _tangent(nbn, ta, tx3.shape)  # b = BN0(a)
    elif variant == "bn_first":
        tb = _tangent(nbn, tx3, tx3.shape)  # b = BN0(x)
        ta = _tangent(ngn, tb, tx3.shape)  # a = GN(b)
    else:
        ta = _tangent(ngn, tx3, tx3.shape)
        tb = _tangent(nbn, tx3, tx3.shape)
    return ta, tb


def _directions(kind, value, x, weight, bias, mix, x3, C):
    D = V.check_directions(kind, value, {"x": x, "weight": weight, "bias": bias, "mix": mix})
    tx = np.zeros(x3.shape) if D["x"] is None else D["x"].reshape(x3.shape)
    tw = np.zeros(C) if D["weight"] is None else D["weight"]
    tb = np.zeros(C) if D["bias"] is None else D["bias"]
    tm = 0.0 if D["mix"] is None else float(D["mix"].reshape(()))
    return tx, tw, tb, tm


def gn_plus_jvp(tangents, x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first", batch_stats="position"):
    """Forward-mode derivative of :func:`gn_plus`: ``(y, ty)``.

    ``tangents``: dict over ``"x"``, ``"weight"``, ``"bias"``, ``"mix"`` (each
    shaped like its argument); a missing key is a zero tangent.  Other
    arguments as :func:`gn_plus`; ``y`` is bit-identical to its result, ``ty``
    float64 shaped like ``x``.  Tangents flow through every statistic of both
    branches; at a constant set the std's tangent is taken as 0, the limit of
    the first-order map (docs/ops/gn_plus.md#gnplus-jvp)."""
    shape, G, x3, w, bvec, mshape, mixv, eps = _prepare(x, num_groups, weight, bias, mix, eps, variant,
                                                        batch_stats)
    tx3, tw, tb, tmix = _directions("tangents", tangents, x, weight, bias, mix, x3, x3.shape[1])
    a, b, ngn, nbn = _forward_branches(x3, G, eps, variant, batch_stats)
    lam = _sigmoid(mixv)
    y = np.empty_like(x3)
    _mix_forward(a, b, lam, w, bvec, y)  # as gn_plus
    ta, tbr = _branch_tangents(tx3, ngn, nbn, variant)
    ty = np.empty_like(x3)
    _mix_jvp(a, b, ta, tbr, lam, lam * (1.0 - lam) * tmix, w, tw, tb, ty)
    return y.reshape(shape), ty.reshape(shape)


def gn_plus_double_backward(cotangents, dy, x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first",
                            batch_stats="position"):
    """Second order: the VJP of :func:`gn_plus_backward`.

    For ``L = <cx, dx> + <cweight, dweight> + <cbias, dbias> + <cmix, dmix>``
    (``cotangents`` keyed like the backward's result; missing keys are zero),
    returns ``{"dy", "x", "weight", "bias", "mix"}`` shaped like ``dy`` and the
    arguments (``"bias"`` is identically 0), float64; derivation in the module's
    comment above and docs/ops/gn_plus.md#gnplus-second-order.  At a constant
    set the terms through the std are taken as 0 (the backward is not
    differentiable there)."""
    shape, G, x3, w, bvec, mshape, mixv, eps = _prepare(x, num_groups, weight, bias, mix, eps, variant,
                                                        batch_stats)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    cx3, cw, cb, cmix = _directions("cotangents", cotangents, x, weight, bias, mix, x3, x3.shape[1])
    a, b, ngn, nbn = _forward_branches(x3, G, eps, variant, batch_stats)
    lam = _sigmoid(mixv)
    lam1 = lam * (1.0 - lam)
    tlam = lam1 * cmix
    C = x3.shape[1]
    ta, tb = _branch_tangents(cx3, ngn, nbn, variant)
    ddy = np.empty_like(x3)
    _mix_jvp(a, b, ta, tb, lam, tlam, w, cw, cb, ddy)  # dL/ddy = J c
    # first order, as gn_plus_backward: the branch cotangents h_a, h_b
    h_a, h_b = np.empty_like(x3), np.empty_like(x3)
    dw_, db_, dmix_c = np.empty(C), np.empty(C), np.empty(C)
    _mix_backward(dy3, a, b, lam, w, h_a, h_b, dw_, db_, dmix_c)
    # their tangents, ddweight and ddmix
    th_a, th_b = np.empty_like(x3), np.empty_like(x3)
    ddw, hab_c, tmix_c = np.empty(C), np.empty(C), np.empty(C)
    _mix_backward_tangent(dy3, a, b, ta, tb, lam, tlam, w, cw, th_a, th_b, ddw, hab_c, tmix_c)
    ddmix = lam1 * (1.0 - 2.0 * lam) * cmix * math.fsum(hab_c) + lam1 * math.fsum(tmix_c)
    ddx = np.empty_like(x3)
    if variant == "parallel":
        ngn.backward(th_a, ddx, False)  # GN^T_x(th_a)
        _backward_tangent(ngn, h_a, cx3, ddx, True)  # + d[GN^T_x(h_a)](tx)
        nbn.backward(th_b, ddx, True)  # + BN0^T_x(th_b)
        _backward_tangent(nbn, h_b, cx3, ddx, True)  # + d[BN0^T_x(h_b)](tx)
    elif variant == "gn_first":
        da = h_a.copy()  # da = h_a + BN0^T_a(h_b)
        nbn.backward(h_b, da, True)
        tda = th_a  # tda = th_a + BN0^T_a(th_b) + d[BN0^T_a(h_b)](ta)
        nbn.backward(th_b, tda, True)
        _backward_tangent(nbn, h_b, ta, tda, True)
        ngn.backward(tda, ddx, False)  # ddx = GN^T_x(tda) + d[GN^T_x(da)](tx)
        _backward_tangent(ngn, da, cx3, ddx, True)
    else:
        dbr = h_b.copy()  # db = h_b + GN^T_b(h_a)
        ngn.backward(h_a, dbr, True)
        tdb = th_b  # tdb = th_b + GN^T_b(th_a) + d[GN^T_b(h_a)](tb)
        ngn.backward(th_a, tdb, True)
        _backward_tangent(ngn, h_a, tb, tdb, True)
        nbn.backward(tdb, ddx, False)  # ddx = BN0^T_x(tdb) + d[BN0^T_x(db)](tx)
        _backward_tangent(nbn, dbr, cx3, ddx, True)
    return {"dy": ddy.reshape(shape), "x": ddx.reshape(shape), "weight": ddw, "bias": np.zeros(C),
            "mix": np.full(mshape, ddmix)}


__all__ = ["BATCH_STATS", "VARIANTS", "gn_plus", "gn_plus_backward", "gn_plus_double_backward", "gn_plus_jvp"]
