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
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, two_sum
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
                d, de = two_sum(t[a, b, s], -mh)
                out[a, b, s] = (d + (de - ml)) / d_


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
                d, de = two_sum(t[a, b, s], -mh)
                tc = d + (de - ml)
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
                d, de = two_sum(t[a, b, s], -mh)
                tc = d + (de - ml)
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


__all__ = ["BATCH_STATS", "VARIANTS", "gn_plus", "gn_plus_backward"]
