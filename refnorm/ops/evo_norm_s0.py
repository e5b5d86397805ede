"""EvoNorm-S0: the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.evo_norm_s0`.  ``x`` of shape ``(N, C, *spatial)`` is
viewed as GroupNorm's ``(1, N*G, Q*T)`` (``Q = C/G`` channels of ``T =
prod(spatial)`` positions per set), so element ``(b, s)`` of the ``(B, M)``
view belongs to channel ``k = (b % G) * Q + s // T``.

Statistics: the group mean and ``rstd = 1/sqrt(var + eps)`` are GroupNorm's,
the shared two-pass double-double kernel (:func:`refnorm.ops._normalize.batch_stats`),
never ``E[x^2] - E[x]^2``.  The elementwise part is this module's own kernels,
in the names of docs/ops/evo_norm_s0.md::

    a  = v x,   e = exp(-|a|),   sg = 1/(1 + e) (a >= 0) or e/(1 + e)   the gate, overflow-free
    q  = e / (1 + e)^2           = sg (1 - sg), without cancellation
    sp = sg + a q                = d(x sg)/dx
    z  = (x sg) r,    y = weight z + bias

Backward (derivation: docs/ops/evo_norm_s0.md#evo-norm-s0-backward), per set, with
``g = weight dy`` and ``xhat = (x - mean) r``::

    c2 = mean(g z)
    dx = r (g sp - xhat c2)
    dweight = sum dy z,   dbias = sum dy,   dv = sum dy (weight r x x q)

Forward mode (#evo-norm-s0-jvp): ``ty = weight r (sp tx + x x q tv - z mean(xhat tx))
+ tweight z + tbias``.  Every sum is compensated and accumulated by one thread in
ascending order (``prange`` distributes whole sets or whole parameters): the
bits do not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from . import _derivatives as D
from . import _layout as L
from . import _normalize as nz
from ._dd import dd_div_int, two_sum
from ._jit import jit, pjit, prange
from ._sets import MEAN, MEAN_LO, RSTD, RSTD_LO, _xhat


@jit
def _gate(a):
    """``(sg, q, sp)``: ``sigmoid(a)``, ``sg (1 - sg)`` and ``sg + a q`` (module docstring)."""
    e = math.exp(-abs(a))
    d = 1.0 + e
    if a >= 0.0:
        sg = 1.0 / d
    else:
        sg = e / d
    q = e / (d * d)
    sp = sg if q == 0.0 else sg + a * q  # |a| = inf: q = 0 and a q is no NaN
    return sg, q, sp


@jit
def _mean_of(sh, sl, n):
    """The compensated sum ``sh + sl`` divided by ``n``, rounded once."""
    if n == 0:
        return 0.0
    mh, ml = dd_div_int(sh, sl, n)
    return mh + ml


@pjit
def _forward(x, stats, w, bias, v, G, Q, T, y):
    """``y = w z + bias``, ``z = (x sg) r`` on the ``(B, M)`` view."""
    B, M = x.shape
    for b in prange(B):
        r = stats[RSTD, b]
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            sg, q, sp = _gate(v[k] * xv)
            y[b, s] = w[k] * ((xv * sg) * r) + bias[k]


@pjit
def _backward(dy, x, stats, w, v, G, Q, T, dx, z, h):
    """``dx``, and the per-element factors ``z`` and ``h = w r x x q`` of
    ``dweight = sum dy z`` and ``dv = sum dy h`` (summed by ``param_sums``)."""
    B, M = x.shape
    for b in prange(B):
        mh, ml, rh, rl = stats[MEAN, b], stats[MEAN_LO, b], stats[RSTD, b], stats[RSTD_LO, b]
        # (1) z and c2 = mean(g z), g = w dy
        sh = 0.0
        sl = 0.0
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            sg, q, sp = _gate(v[k] * xv)
            zv = (xv * sg) * rh
            z[b, s] = zv
            h[b, s] = w[k] * ((rh * (xv * xv)) * q)
            sh, e = two_sum(sh, (w[k] * dy[b, s]) * zv)
            sl += e
        c2 = _mean_of(sh, sl, M)
        # (2) dx = r (g sp - xhat c2)
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            sg, q, sp = _gate(v[k] * xv)
            g = w[k] * dy[b, s]
            dx[b, s] = rh * (g * sp - _xhat(xv, mh, ml, rh, rl) * c2)


@pjit
def _jvp(x, stats, w, bias, v, tx, tw, tb, tv, G, Q, T, y, ty):
    """``y`` and ``ty = w r (sp tx + x x q tv - z mean(xhat tx)) + tw z + tb``."""
    B, M = x.shape
    for b in prange(B):
        mh, ml, rh, rl = stats[MEAN, b], stats[MEAN_LO, b], stats[RSTD, b], stats[RSTD_LO, b]
        sh = 0.0
        sl = 0.0
        for s in range(M):
            sh, e = two_sum(sh, _xhat(x[b, s], mh, ml, rh, rl) * tx[b, s])
            sl += e
        m = _mean_of(sh, sl, M)
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            sg, q, sp = _gate(v[k] * xv)
            zv = (xv * sg) * rh
            y[b, s] = w[k] * zv + bias[k]
            tz = rh * ((sp * tx[b, s] + ((xv * xv) * q) * tv[k]) - zv * m)
            ty[b, s] = w[k] * tz + (tw[k] * zv + tb[k])


@pjit
def _double_backward(dy, x, stats, w, v, tx, tw, tb, tv, G, Q, T, d2dy, d2x, tz, hv):
    """The VJP of the backward along the cotangents ``(tx, tw, tb, tv)`` of ``(dx, dweight,
    dbias, dv)`` (docs/ops/evo_norm_s0.md#evo-norm-s0-second-order): ``d2dy`` (the JVP along
    them), ``d2x``, and the per-element terms ``tz`` of ``d2weight = sum dy tz`` and ``hv`` of
    ``d2v = sum hv``."""
    B, M = x.shape
    for b in prange(B):
        mh, ml, rh, rl = stats[MEAN, b], stats[MEAN_LO, b], stats[RSTD, b], stats[RSTD_LO, b]
        # (1) m = mean(xhat tx), tbar = mean(tx), phi1 = mean(g P), phi2 = mean(g f), phi3 = mean(h f)
        s0h, s0l, s1h, s1l, s2h, s2l, s3h, s3l, s4h, s4l = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            sg, q, sp = _gate(v[k] * xv)
            f = xv * sg
            g = w[k] * dy[b, s]
            P = sp * tx[b, s] + ((xv * xv) * q) * tv[k]
            s0h, e = two_sum(s0h, _xhat(xv, mh, ml, rh, rl) * tx[b, s])
            s0l += e
            s1h, e = two_sum(s1h, tx[b, s])
            s1l += e
            s2h, e = two_sum(s2h, g * P)
            s2l += e
            s3h, e = two_sum(s3h, g * f)
            s3l += e
            s4h, e = two_sum(s4h, (dy[b, s] * tw[k]) * f)
            s4l += e
        m = _mean_of(s0h, s0l, M)
        tbar = _mean_of(s1h, s1l, M)
        phi1 = _mean_of(s2h, s2l, M)
        phi2 = _mean_of(s3h, s3l, M)
        phi3 = _mean_of(s4h, s4l, M)
        rm = rh * m
        cr = rh * rh * ((phi1 + phi3) - 3.0 * rm * phi2)  # the rstd path
        cm = rh * rh * rh * phi2  # the path of m through mean(xc tx)
        # (2) elementwise
        for s in range(M):
            k = (b % G) * Q + s // T
            xv = x[b, s]
            av = v[k] * xv
            sg, q, sp = _gate(av)
            kk = 0.0 if q == 0.0 else q * (2.0 + av * (1.0 - 2.0 * sg))  # f_xx = v kk, f_xv = x kk
            zv = (xv * sg) * rh
            txv = tx[b, s]
            tzv = rh * ((sp * txv + ((xv * xv) * q) * tv[k]) - zv * m)
            tz[b, s] = tzv
            d2dy[b, s] = w[k] * tzv + (tw[k] * zv + tb[k])
            g = w[k] * dy[b, s]
            hq = dy[b, s] * tw[k] - rm * g  # h - r m g
            xhat = _xhat(xv, mh, ml, rh, rl)
            d2x[b, s] = (rh * (g * (kk * (v[k] * txv + xv * tv[k])) + sp * hq)
                         - xhat * cr - cm * (txv - tbar))
            fvv = 0.0 if q == 0.0 else ((xv * xv) * xv) * (q * (1.0 - 2.0 * sg))
            hv[b, s] = rh * (g * ((xv * kk) * txv + fvv * tv[k]) + ((xv * xv) * q) * hq)


# ----------------------------------------------------------------------------- Python glue


def layout(x_shape, num_groups) -> L.Layout:
    """GroupNorm's view ``(1, N*G, C/G * HW)``, a per-channel affine (``P = G``,
    ``Q = C/G``, ``T = HW``) for weight, bias and v; ``mean``/``rstd`` ``(N, G)``."""
    N, C, HW, G = x_shape[0], x_shape[1], V.prod(x_shape[2:]), int(num_groups)
    return L.channels(x_shape, (1, N * G, (C // G) * HW), (G, C // G, HW), {"mean": (N, G), "rstd": (N, G)})


def _required(name, value, C):
    if value is None:
        raise TypeError(f"{name} is required: an array of shape ({C},) (one value per channel C), got None")
    return V.check_param(name, value, (C,), "one value per channel C")


def _prepare(x, num_groups, weight, bias, v, eps):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    G = V.check_int("num_groups", num_groups, minimum=1)
    C = xa.shape[1]
    if C % G != 0:
        raise ValueError(f"num_groups must divide the number of channels C = {C}, got num_groups = {G}")
    w = np.ascontiguousarray(_required("weight", weight, C), dtype=np.float64)
    b = np.ascontiguousarray(_required("bias", bias, C), dtype=np.float64)
    vv = np.ascontiguousarray(_required("v", v, C), dtype=np.float64)
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x3 = V.to_f64(xa).reshape(layout(xa.shape, G).view)
    HW = V.prod(xa.shape[2:])
    return xa.shape, G, C // G, HW, x3, w, b, vv, eps


def _stats_of(shape, G, st):
    return {"mean": st.mean.reshape(shape[0], G).copy(), "rstd": st.rstd.reshape(shape[0], G).copy()}


def evo_norm_s0_stats(x, num_groups, weight, bias, v, eps=1e-5):
    """``y`` and the saved group ``mean`` and ``rstd = 1/sqrt(var + eps)``, each ``(N, num_groups)``."""
    shape, G, Q, T, x3, w, b, vv, eps = _prepare(x, num_groups, weight, bias, v, eps)
    st = nz.batch_stats(x3, eps)
    y2 = np.empty(x3.shape[1:])
    _forward(x3[0], st.data, w, b, vv, G, Q, T, y2)
    return y2.reshape(shape), _stats_of(shape, G, st)


def evo_norm_s0(x, num_groups, weight, bias, v, eps=1e-5):
    """EvoNorm-S0 (Liu et al. 2020), as timm's ``EvoNorm2dS0``.

    .. math:: y = \\gamma\\, \\frac{x\\, \\mathrm{sigmoid}(v x)}{\\sqrt{\\mathrm{var}_{group}(x) + \\epsilon}} + \\beta

    The channels are split into ``num_groups`` contiguous groups (as GroupNorm);
    the variance is the biased one over each (sample, group)'s channels and
    positions; gate, weight, bias and v are per channel.

    Parameters
    ----------
    x : array ``(N, C, *spatial)``, float16/bfloat16/float32/float64 (any number of
        spatial dimensions, none included, as ``F.group_norm``; timm: ``(N, C, H, W)``)
    num_groups : int dividing C (timm's ``groups``, default 32 there)
    weight, bias, v : arrays ``(C,)``, required (gamma, beta and the gate's slope)
    eps : float >= 0, added to the variance inside the square root (timm's 1e-5)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return evo_norm_s0_stats(x, num_groups, weight, bias, v, eps)[0]


def evo_norm_s0_backward(dy, x, num_groups, weight, bias, v, eps=1e-5):
    """Gradients of :func:`evo_norm_s0`: ``{"x", "weight", "bias", "v"}``, float64.

    Per (sample, group) set, with ``r = rstd``, ``xhat = (x - mean) r``, the gate
    ``sg = sigmoid(v x)``, ``q = sg (1 - sg)``, ``sp = sg + v x q``, ``z = x sg r`` and
    ``g = weight dy``: ``dx = r (g sp - xhat mean(g z))`` (the second term is the
    group variance's: every element of the group gets it);
    ``dweight = sum dy z``, ``dbias = sum dy``, ``dv = sum dy weight r x^2 q`` over
    ``(N, *spatial)``.

    Shapes: ``dy`` and ``dx`` like ``x``; ``dweight``, ``dbias``, ``dv`` ``(C,)``.
    """
    shape, G, Q, T, x3, w, b, vv, eps = _prepare(x, num_groups, weight, bias, v, eps)
    dy3 = np.ascontiguousarray(V.check_dy(dy, shape).reshape(x3.shape))
    st = nz.batch_stats(x3, eps)
    dx3, z3, h3 = np.empty_like(x3), np.empty_like(x3), np.empty_like(x3)
    _backward(dy3[0], x3[0], st.data, w, vv, G, Q, T, dx3[0], z3[0], h3[0])
    C = shape[1]
    dw, db, dv = np.empty(C), np.empty(C), np.empty(C)
    D.param_sums(dy3, z3, G, Q, T, dw)
    D.param_sums(dy3, np.ones_like(dy3), G, Q, T, db)
    D.param_sums(dy3, h3, G, Q, T, dv)
    return {"x": dx3.reshape(shape), "weight": dw, "bias": db, "v": dv}


def evo_norm_s0_jvp(tangents, x, num_groups, weight, bias, v, eps=1e-5):
    """Forward mode of :func:`evo_norm_s0`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"v"`` (missing =
    zero).  Per set, ``ty = weight r (sp tx + x^2 q tv - z mean(xhat tx)) + tweight z
    + tbias`` (names as in :func:`evo_norm_s0_backward`); ``y`` has the bits of
    :func:`evo_norm_s0`; float64, shaped like ``x``.
    """
    shape, G, Q, T, x3, w, b, vv, eps = _prepare(x, num_groups, weight, bias, v, eps)
    d = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias, "v": v})
    C = shape[1]

    def flat(a):
        return np.zeros(C) if a is None else np.ascontiguousarray(a, dtype=np.float64)

    tx = np.zeros(x3.shape[1:]) if d["x"] is None else np.ascontiguousarray(d["x"], dtype=np.float64)
    st = nz.batch_stats(x3, eps)
    y2, ty2 = np.empty(x3.shape[1:]), np.empty(x3.shape[1:])
    _jvp(x3[0], st.data, w, b, vv, tx.reshape(x3.shape[1:]), flat(d["weight"]), flat(d["bias"]), flat(d["v"]),
         G, Q, T, y2, ty2)
    return y2.reshape(shape), ty2.reshape(shape)


def evo_norm_s0_double_backward(cotangents, dy, x, num_groups, weight, bias, v, eps=1e-5):
    """Second order of :func:`evo_norm_s0`: the VJP of :func:`evo_norm_s0_backward`.

    ``cotangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"v"`` (missing = zero),
    the cotangents of ``dx``, ``dweight``, ``dbias``, ``dv``.  Returns ``{"dy", "x", "weight",
    "bias", "v"}``: the gradients of ``L = sum_k <cotangents[k], backward(dy, ...)[k]>``.
    ``L`` is ``<dy, ty>`` with the cotangents as the tangents, so ``"dy"`` is that JVP,
    ``"weight"`` is ``sum dy tz``, ``"bias"`` zeros (the backward does not read the bias), and
    ``"x"``, ``"v"`` differentiate ``<dy, ty>`` (docs/ops/evo_norm_s0.md#evo-norm-s0-second-order).
    float64, shaped like the arguments.
    """
    shape, G, Q, T, x3, w, b, vv, eps = _prepare(x, num_groups, weight, bias, v, eps)
    dy3 = np.ascontiguousarray(V.check_dy(dy, shape).reshape(x3.shape))
    d = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias, "v": v})
    C = shape[1]

    def flat(a):
        return np.zeros(C) if a is None else np.ascontiguousarray(a, dtype=np.float64)

    tx = np.zeros(x3.shape[1:]) if d["x"] is None else np.ascontiguousarray(d["x"], dtype=np.float64)
    st = nz.batch_stats(x3, eps)
    d2dy, d2x, tz, hv = (np.empty_like(x3) for _ in range(4))
    _double_backward(dy3[0], x3[0], st.data, w, vv, tx.reshape(x3.shape[1:]), flat(d["weight"]), flat(d["bias"]),
                     flat(d["v"]), G, Q, T, d2dy[0], d2x[0], tz[0], hv[0])
    d2w, d2v = np.empty(C), np.empty(C)
    D.param_sums(dy3, tz, G, Q, T, d2w)
    D.param_sums(hv, np.ones_like(hv), G, Q, T, d2v)
    return {"dy": d2dy.reshape(shape), "x": d2x.reshape(shape), "weight": d2w, "bias": np.zeros(C), "v": d2v}


__all__ = ["evo_norm_s0", "evo_norm_s0_backward", "evo_norm_s0_double_backward", "evo_norm_s0_jvp",
           "evo_norm_s0_stats"]
