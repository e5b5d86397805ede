"""Proxy Normalization (PN-Act): the fast path.

The definition is :mod:`refnorm.reference.proxy_norm` (docs/ops/proxy_norm.md).  ``x`` of shape
``(N, C, *spatial)`` is viewed as ``(N, C, S)``.  Three kernels:

1. :func:`_proxy_points` writes the proxy activations ``P[0, c, k] =
   phi(gamma_c * Y_ck + beta_c)``, ``Y_ck = beta~_c + (1 + gamma~_c) * q_k``,
   as a ``(1, C, K)`` array; its statistics ``m`` (mean), ``v`` (biased var)
   and ``s = 1/sqrt(v + eps)`` are then those of an ordinary normalizer with
   reduction sets ``P[:, c, :]``, so they come from
   :func:`refnorm.ops._kernels.moments` (double-double, compensated).
2. :func:`_forward`: ``y = (phi(gamma * x + beta) - m) * s`` elementwise, with
   the double-double ``m`` and ``s`` (the ``xhat`` rounding of ``_kernels``).
3. :func:`_backward`, one channel per thread (derived in
   docs/ops/proxy_norm.md#pn-backward; verified
   against autograd and finite differences in tests/ops/test_proxy_norm.py).
   With ``G = dy``, ``u = gamma*x + beta``, ``u_k = gamma*Y_k + beta``,
   ``P_k = phi(u_k)``, sums over the channel's (n, spatial) positions::

       dx        = G * s * phi'(u) * gamma                        # term x
       dL/dm     = -s * sum G                                     # mean path
       dL/ds     = sum G * (phi(u) - m)                           # scale path
       dL/dv     = dL/ds * (-1/2) (v + eps)^(-3/2) = -dL/ds * s^3 / 2
       chain(t)  = dL/dm * (1/K) sum_k phi'(u_k) t_k
                 + dL/dv * (2/K) sum_k (P_k - m) phi'(u_k) t_k    # t_k = du_k/dtheta
       dgamma    = s * sum G phi'(u) x  + chain(Y_k)
       dbeta     = s * sum G phi'(u)    + chain(1)
       dbeta~    = chain(gamma)   = gamma * chain(1)
       dgamma~   = chain(gamma q_k) = gamma * chain(q_k)

   (v's own dependence on m drops out: dv/dm = -2 mean(P - m) = 0.)

Activation derivatives: ReLU ``phi'(u) = 1 if u > 0 else 0`` (0 at the kink
u == 0, the convention of the reference; NaN for a NaN u, so that a NaN input
gives a NaN dx, where autograd's ``where`` would pass a finite gradient); SiLU ``sigma + u * sigma (1 -
sigma)`` with ``sigma (1 - sigma) = (1 + th)(1 - th)/4``, ``th = tanh(u/2)``;
GELU ``Phi(u) + u * exp(-u^2/2)/sqrt(2 pi)``.

Forward mode and second order (``proxy_norm_jvp``, ``proxy_norm_double_backward``):
the section at the end of this module (docs/ops/proxy_norm.md#pn-jvp).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..reference.proxy_norm import proxy_quantiles as _quantiles
from . import _kernels as K
from . import _layout as L
from ._dd import sub_dd_round, two_sum
from ._jit import jit, pjit, prange
from ._sets import MEAN, MEAN_LO, RSTD, RSTD_LO, _xhat

#: Activation names accepted by ``activation`` and their kernel codes ("swish" is SiLU).
ACTIVATION_CODES = {"relu": 0, "silu": 1, "swish": 1, "gelu": 2}
_RELU, _SILU, _GELU = 0, 1, 2

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)


@jit
def _act(u, code):
    """``(phi(u), phi'(u))`` for the activation ``code``, written as in the reference."""
    if code == _RELU:
        if u > 0.0:
            return u, 1.0
        if u <= 0.0:  # phi'(0) = 0 at the kink
            return 0.0, 0.0
        return u, u  # NaN: propagates to phi and phi'
    if code == _SILU:
        th = math.tanh(0.5 * u)
        sig = 0.5 + 0.5 * th  # sigmoid(u)
        return u * sig, sig + 0.25 * u * ((1.0 + th) * (1.0 - th))
    cdf = 0.5 * math.erfc(-u / _SQRT2)  # GELU, erf form: Phi(u)
    pdf = math.exp(-0.5 * u * u) / _SQRT2PI
    return u * cdf, cdf + u * pdf


@pjit
def _proxy_points(weight, bias, proxy_shift, proxy_scale, q, code, P):
    """``P[0, c, k] = phi(gamma_c * Y_ck + beta_c)``, ``Y_ck = beta~_c + (1 + gamma~_c) q_k``."""
    C = weight.shape[0]
    nk = q.shape[0]
    for c in prange(C):
        w = weight[c]
        b = bias[c]
        a = 1.0 + proxy_scale[c]  # proxy std
        for k in range(nk):
            Y = proxy_shift[c] + a * q[k]  # (4)
            P[0, c, k] = _act(w * Y + b, code)[0]  # (5)


@pjit
def _forward(x, weight, bias, code, stats, y):
    """``y = (phi(gamma * x + beta) - m) * s`` on the view ``(N, C, S)``, one (n, c) row per step:
    the ``xhat`` of ``z = phi(u)`` with the proxy statistics ``m``, ``s`` (columns of ``stats``:
    rows ``MEAN``, ``MEAN_LO``, ``RSTD``, ``RSTD_LO``)."""
    N, C, S = x.shape
    for r in prange(N * C):
        n = r // C
        c = r % C
        w = weight[c]
        b = bias[c]
        for t in range(S):
            z = _act(w * x[n, c, t] + b, code)[0]  # (1)-(2)
            y[n, c, t] = _xhat(z, stats[MEAN, c], stats[MEAN_LO, c], stats[RSTD, c], stats[RSTD_LO, c])  # (10)


@pjit
def _backward(dy, x, weight, bias, proxy_shift, proxy_scale, q, code, stats, dx, dweight, dbias, dshift, dscale):
    """The hand-derived backward (module docstring); one channel per thread,
    every sum compensated and accumulated in a fixed order.  ``stats``: the
    proxy statistics, ``mean`` (``m``) and ``rstd`` (``s``) in its columns.
    ``g = dy`` is the cotangent of ``xhat`` (``G`` in the docstring: nothing
    scales y after the normalization; the weight acts before phi)."""
    N, C, S = x.shape
    nk = q.shape[0]
    for c in prange(C):
        w = weight[c]
        b = bias[c]
        mh = stats[MEAN, c]
        ml = stats[MEAN_LO, c]
        rh = stats[RSTD, c]  # s
        # pass over the data: dx, and the four sums of g
        sg_h = 0.0  # sum g
        sg_l = 0.0
        sgz_h = 0.0  # sum g (phi(u) - m)
        sgz_l = 0.0
        sgd_h = 0.0  # sum g phi'(u)
        sgd_l = 0.0
        sgdx_h = 0.0  # sum g phi'(u) x
        sgdx_l = 0.0
        for n in range(N):
            for t in range(S):
                xv = x[n, c, t]
                g = dy[n, c, t]
                z, d = _act(w * xv + b, code)
                dx[n, c, t] = ((g * rh) * d) * w  # term x
                zc = sub_dd_round(z, mh, ml)  # phi(u) - m
                sg_h, e = two_sum(sg_h, g)
                sg_l += e
                sgz_h, e = two_sum(sgz_h, g * zc)
                sgz_l += e
                sgd_h, e = two_sum(sgd_h, g * d)
                sgd_l += e
                sgdx_h, e = two_sum(sgdx_h, (g * d) * xv)
                sgdx_l += e
        dLdm = -rh * (sg_h + sg_l)  # mean path
        dLds = sgz_h + sgz_l  # scale path
        dLdv = -0.5 * dLds * (rh * rh * rh)
        # pass over the K proxy points: sums of phi'(u_k) t_k and (P_k - m) phi'(u_k) t_k
        a = 1.0 + proxy_scale[c]
        t1_h = 0.0  # sum phi'(u_k)
        t1_l = 0.0
        t1y_h = 0.0  # sum phi'(u_k) Y_k
        t1y_l = 0.0
        t1q_h = 0.0  # sum phi'(u_k) q_k
        t1q_l = 0.0
        t2_h = 0.0  # sum (P_k - m) phi'(u_k)
        t2_l = 0.0
        t2y_h = 0.0  # sum (P_k - m) phi'(u_k) Y_k
        t2y_l = 0.0
        t2q_h = 0.0  # sum (P_k - m) phi'(u_k) q_k
        t2q_l = 0.0
        for k in range(nk):
            Y = proxy_shift[c] + a * q[k]
            Pk, dk = _act(w * Y + b, code)
            pc = sub_dd_round(Pk, mh, ml)  # P_k - m
            t1_h, e = two_sum(t1_h, dk)
            t1_l += e
            t1y_h, e = two_sum(t1y_h, dk * Y)
            t1y_l += e
            t1q_h, e = two_sum(t1q_h, dk * q[k])
            t1q_l += e
            t2_h, e = two_sum(t2_h, pc * dk)
            t2_l += e
            t2y_h, e = two_sum(t2y_h, (pc * dk) * Y)
            t2y_l += e
            t2q_h, e = two_sum(t2q_h, (pc * dk) * q[k])
            t2q_l += e
        # c1, c2 here: the chain weights of the proxy statistics, not the set means of g of the other kernels
        c1 = dLdm / nk  # weight of (1/K) sum phi'(u_k) t_k
        c2 = 2.0 * dLdv / nk  # weight of (1/K) sum (P_k - m) phi'(u_k) t_k
        chain_1 = c1 * (t1_h + t1_l) + c2 * (t2_h + t2_l)  # chain(1)
        chain_y = c1 * (t1y_h + t1y_l) + c2 * (t2y_h + t2y_l)  # chain(Y_k)
        chain_q = c1 * (t1q_h + t1q_l) + c2 * (t2q_h + t2q_l)  # chain(q_k)
        dweight[c] = rh * (sgdx_h + sgdx_l) + chain_y
        dbias[c] = rh * (sgd_h + sgd_l) + chain_1
        dshift[c] = w * chain_1
        dscale[c] = w * chain_q


# --- argument checks ---------------------------------------------------------

def _check_activation(activation) -> int:
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, one of {sorted(ACTIVATION_CODES)}, "
                        f"got {type(activation).__name__} {activation!r}")
    if activation not in ACTIVATION_CODES:
        raise ValueError(f"activation must be one of {sorted(ACTIVATION_CODES)}, got {activation!r}")
    return ACTIVATION_CODES[activation]


def _check_num_points(num_points) -> int:
    return V.check_int("num_points", num_points, minimum=1)


def layout(x_shape) -> L.Layout:
    """``x`` viewed as ``(N, C, HW)`` with per-channel parameters; the saved
    proxy statistics ``mean``/``rstd`` are ``(C,)``."""
    N, C, HW = x_shape[0], x_shape[1], V.prod(x_shape[2:])
    return L.channels(x_shape, (N, C, HW), (C, 1, HW), {"mean": (C,), "rstd": (C,)})


def _prepare(x, weight, bias, proxy_shift, proxy_scale, activation, eps, num_points):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    C = xa.shape[1]
    params = []
    for name, value in (("weight", weight), ("bias", bias), ("proxy_shift", proxy_shift),
                        ("proxy_scale", proxy_scale)):
        V.as_float_array(name, value)  # None -> TypeError naming the argument
        params.append(V.check_param(name, value, (C,), "one value per channel C"))
    code = _check_activation(activation)
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    K_ = _check_num_points(num_points)
    x3 = V.to_f64(xa).reshape(layout(xa.shape).view)
    return xa.shape, x3, params, code, eps, K_


def _proxy_stats(params, code, eps, num_points):
    w, b, ps, pscale = params
    C = w.shape[0]
    q = _quantiles(num_points)
    P = np.empty((1, C, num_points))
    _proxy_points(w, b, ps, pscale, q, code, P)
    st = K.empty_stats(C)
    K.moments(P, True, eps, st)
    return q, st


# --- public API ----------------------------------------------------------------

def proxy_quantiles(num_points=200):
    """The proxy points ``q_k = Phi^{-1}((k - 1/2)/K) = sqrt(2) erfinv(2(k - 1/2)/K - 1)``,
    k = 1..K, K = ``num_points`` (deterministic mid-point quantiles of N(0, 1),
    the authors' ``get_rand``), as a new float64 array of shape ``(K,)``,
    accurate to a few ulp."""
    return _quantiles(_check_num_points(num_points))


def proxy_norm_stats(x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03, num_points=200):
    """``y`` and the proxy statistics ``{"mean": m, "var": v, "rstd": s}``, each ``(C,)``
    (``v`` biased, ``s = 1/sqrt(v + eps)``): the authors' cached slots 2-3
    recomputed from the parameters."""
    shape, x3, params, code, eps, nk = _prepare(x, weight, bias, proxy_shift, proxy_scale, activation, eps,
                                                num_points)
    w, b = params[0], params[1]
    q, st = _proxy_stats(params, code, eps, nk)
    var = np.empty(st.shape[1])
    K.divide_m2(st, nk, var)
    y3 = np.empty_like(x3)
    _forward(x3, w, b, code, st, y3)
    return y3.reshape(shape), {"mean": st[MEAN] + st[MEAN_LO], "var": var, "rstd": st[RSTD] + st[RSTD_LO]}


def proxy_norm(x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03, num_points=200):
    """Proxy-normalized activation (PN-Act), as the Graphcore code
    (docs/ops/proxy_norm.md#pn-defaults).

    ``u = weight*x + bias``, ``z = act(u)``; the same affine and activation are
    applied to the K proxy points ``Y_k = proxy_shift + (1 + proxy_scale) * q_k``
    (``q_k`` = :func:`proxy_quantiles`), and ``z`` is centred and scaled by
    their mean ``m`` and biased variance ``v``: ``y = (z - m) / sqrt(v + eps)``.

    Parameters
    ----------
    x : array, shape ``(N, C, *spatial)``: the normalized pre-activation
        (output of an LN/GN without affine).
    weight, bias, proxy_shift, proxy_scale : arrays of shape ``(C,)`` (init 1, 0, 0, 0).
    activation : ``"relu"`` (derivative 0 at u == 0), ``"silu"`` / ``"swish"``, ``"gelu"`` (erf form).
    eps : float >= 0, inside the square root (default 0.03).
    num_points : int >= 1, the number K of proxy quantiles (default 200).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return proxy_norm_stats(x, weight, bias, proxy_shift, proxy_scale, activation, eps, num_points)[0]


def proxy_norm_backward(dy, x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03,
                        num_points=200):
    """Gradients of :func:`proxy_norm` through the proxy statistics
    (docs/ops/proxy_norm.md#pn-backward):
    ``{"x", "weight", "bias", "proxy_shift", "proxy_scale"}``.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(N, C, *spatial)``); the four parameter
    gradients ``(C,)``.  All float64.  Gradients flow through the proxy mean ``m``
    and scale ``s`` (no stop-gradient); derivation in the module docstring."""
    shape, x3, params, code, eps, nk = _prepare(x, weight, bias, proxy_shift, proxy_scale, activation, eps,
                                                num_points)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    w, b, ps, pscale = params
    q, st = _proxy_stats(params, code, eps, nk)
    C = w.shape[0]
    dx3 = np.empty_like(x3)
    dw, db, dps, dpscale = (np.empty(C) for _ in range(4))
    _backward(dy3, x3, w, b, ps, pscale, q, code, st, dx3, dw, db, dps, dpscale)
    return {"x": dx3.reshape(shape), "weight": dw, "bias": db, "proxy_shift": dps, "proxy_scale": dpscale}


# ============================================================================= forward mode and second order
#
# Forward mode (docs/ops/proxy_norm.md#pn-jvp), per channel, for the tangents
# ``(tx, tgamma, tbeta, tbeta~, tgamma~)``::
#
#     tu    = tgamma x + gamma tx + tbeta                        (data path)
#     tY_k  = tbeta~ + tgamma~ q_k,   tu_k = tgamma Y_k + gamma tY_k + tbeta   (proxy points)
#     tm    = (1/K) sum_k phi'(u_k) tu_k
#     tv    = (2/K) sum_k (P_k - m) phi'(u_k) tu_k               (sum_k (P_k - m) = 0)
#     ts    = -s^3 tv / 2
#     ty    = (phi'(u) tu - tm) s + (phi(u) - m) ts
#
# Second order (docs/ops/proxy_norm.md#pn-second-order): the VJP of the backward for the
# cotangents ``c`` of its five outputs.  Its dy part is the JVP along ``t = c``; the rest is the
# derivative of the backward along ``t = c`` (the Hessian of ``<dy, y>`` is symmetric; dy fixed).
# With ``A = sum G``, ``dLds = sum G (phi(u) - m)``, ``c1 = -s A / K``, ``c2 = -s^3 dLds / K``
# (the backward's chain weights) and, for a proxy weight ``T_k`` in {1, Y_k, q_k}::
#
#     ddx       = G (ts phi'(u) gamma + s phi''(u) tu gamma + s phi'(u) tgamma)
#     tc1       = -ts A / K
#     tc2       = -(3 s^2 ts dLds + s^3 (sum G phi'(u) tu - A tm)) / K
#     chain(T)  = c1 a_T + c2 e_T,   a_T = sum phi'_k T_k,  e_T = sum (P_k - m) phi'_k T_k
#     tchain(T) = tc1 a_T + c1 b_T + tc2 e_T + c2 f_T   (+ c1 a_tY + c2 e_tY for T = Y)
#         b_T = sum phi''_k tu_k T_k,   f_T = sum ((phi'_k tu_k - tm) phi'_k + (P_k - m) phi''_k tu_k) T_k
#     ddweight  = ts sum G phi' x + s sum G (phi'' tu x + phi' tx) + tchain(Y)
#     ddbias    = ts sum G phi' + s sum G phi'' tu + tchain(1)
#     ddshift   = tgamma chain(1) + gamma tchain(1)
#     ddscale   = tgamma chain(q) + gamma tchain(q)


@jit
def _act2(u, code):
    """``phi''(u)`` for the activation ``code`` (the derivative of :func:`_act`'s ``phi'``):
    ReLU 0 (NaN for a NaN u); SiLU ``sigma (1 - sigma)(2 + u (1 - 2 sigma)) =
    (1 + th)(1 - th)(2 - u th)/4``, ``th = tanh(u/2)``; GELU ``pdf(u) (2 - u^2)``.
    The tails, where the first factor underflows to 0, give 0 (not ``0 * inf``)."""
    if code == _RELU:
        if u > 0.0 or u <= 0.0:
            return 0.0
        return u
    if code == _SILU:
        th = math.tanh(0.5 * u)
        q = (1.0 + th) * (1.0 - th)
        if q == 0.0:
            return 0.0
        return 0.25 * q * (2.0 - u * th)
    pdf = math.exp(-0.5 * u * u) / _SQRT2PI
    if pdf == 0.0:
        return 0.0
    return pdf * (2.0 - u * u)


@pjit
def _proxy_tangent(weight, bias, proxy_shift, proxy_scale, tweight, tbias, tshift, tscale, q, code, stats,
                   tm, ts):
    """Per channel: ``tm`` and ``ts`` (rule above), one compensated pass over
    the K proxy points (``m`` is the forward's, so ``P_k - m`` needs no second
    statistics pass)."""
    C = weight.shape[0]
    nk = q.shape[0]
    for c in prange(C):
        w = weight[c]
        b = bias[c]
        a = 1.0 + proxy_scale[c]
        tw = tweight[c]
        mh = stats[MEAN, c]
        ml = stats[MEAN_LO, c]
        rh = stats[RSTD, c]  # s
        s1h = 0.0  # sum phi'(u_k) tu_k
        s1l = 0.0
        s2h = 0.0  # sum (P_k - m) phi'(u_k) tu_k
        s2l = 0.0
        for k in range(nk):
            Y = proxy_shift[c] + a * q[k]  # (4)
            Pk, dk = _act(w * Y + b, code)  # (5)
            tu = tw * Y + w * (tshift[c] + tscale[c] * q[k]) + tbias[c]  # tu_k
            pc = sub_dd_round(Pk, mh, ml)  # P_k - m
            s1h, e = two_sum(s1h, dk * tu)
            s1l += e
            s2h, e = two_sum(s2h, (pc * dk) * tu)
            s2l += e
        tm[c] = (s1h + s1l) / nk
        tv = 2.0 * (s2h + s2l) / nk
        ts[c] = -0.5 * tv * (rh * rh * rh)


@pjit
def _jvp(x, tx, weight, bias, tweight, tbias, code, stats, tm, ts, ty):
    """``ty = (phi'(u) tu - tm) s + (phi(u) - m) ts`` on the view ``(N, C, S)``,
    one (n, c) row per step; ``tm``, ``ts`` from :func:`_proxy_tangent`."""
    N, C, S = x.shape
    for r in prange(N * C):
        n = r // C
        c = r % C
        w = weight[c]
        b = bias[c]
        tw = tweight[c]
        tb = tbias[c]
        mh = stats[MEAN, c]
        ml = stats[MEAN_LO, c]
        rh = stats[RSTD, c]
        for t in range(S):
            xv = x[n, c, t]
            z, d = _act(w * xv + b, code)
            tu = tw * xv + w * tx[n, c, t] + tb
            zc = sub_dd_round(z, mh, ml)  # phi(u) - m
            # term 1: the data path (phi' tu - tm) s; term 2: the scale's change
            ty[n, c, t] = (d * tu - tm[c]) * rh + zc * ts[c]


@pjit
def _double_backward(dy, x, tx, weight, bias, proxy_shift, proxy_scale, tweight, tbias, tshift, tscale, q,
                     code, stats, tm, ts, ddx, ddweight, ddbias, ddshift, ddscale):
    """The parameter part of the second order (rule above), one channel per
    thread: ``dy`` is ``G``, ``tx`` ... ``tscale`` are the cotangents of the
    backward's outputs acting as the direction ``t``; ``tm``, ``ts`` from
    :func:`_proxy_tangent` for that direction.  A pass over the data (``ddx``
    and eight sums of ``G``), a pass over the K proxy points (fourteen sums),
    every sum compensated."""
    N, C, S = x.shape
    nk = q.shape[0]
    for c in prange(C):
        w = weight[c]
        b = bias[c]
        tw = tweight[c]
        tb = tbias[c]
        mh = stats[MEAN, c]
        ml = stats[MEAN_LO, c]
        rh = stats[RSTD, c]  # s
        tsc = ts[c]
        tmc = tm[c]
        # pass over the data
        sA_h = 0.0  # A = sum G
        sA_l = 0.0
        sz_h = 0.0  # dLds = sum G (phi(u) - m)
        sz_l = 0.0
        sB_h = 0.0  # sum G phi' tu
        sB_l = 0.0
        sd_h = 0.0  # sum G phi'
        sd_l = 0.0
        sdx_h = 0.0  # sum G phi' x
        sdx_l = 0.0
        s2_h = 0.0  # sum G phi'' tu
        s2_l = 0.0
        s2x_h = 0.0  # sum G (phi'' tu x + phi' tx)
        s2x_l = 0.0
        for n in range(N):
            for t in range(S):
                xv = x[n, c, t]
                g = dy[n, c, t]
                u = w * xv + b
                z, d = _act(u, code)
                dd = _act2(u, code)
                tu = tw * xv + w * tx[n, c, t] + tb
                # t of dx = G s phi'(u) gamma: the scale, the slope and the weight
                ddx[n, c, t] = g * ((tsc * d) * w + (rh * dd * tu) * w + (rh * d) * tw)
                zc = sub_dd_round(z, mh, ml)
                sA_h, e = two_sum(sA_h, g)
                sA_l += e
                sz_h, e = two_sum(sz_h, g * zc)
                sz_l += e
                sB_h, e = two_sum(sB_h, (g * d) * tu)
                sB_l += e
                sd_h, e = two_sum(sd_h, g * d)
                sd_l += e
                sdx_h, e = two_sum(sdx_h, (g * d) * xv)
                sdx_l += e
                s2_h, e = two_sum(s2_h, (g * dd) * tu)
                s2_l += e
                s2x_h, e = two_sum(s2x_h, g * ((dd * tu) * xv + d * tx[n, c, t]))
                s2x_l += e
        A = sA_h + sA_l
        dLds = sz_h + sz_l
        c1 = -rh * A / nk
        c2 = -(rh * rh * rh) * dLds / nk
        tc1 = -tsc * A / nk
        tdLds = (sB_h + sB_l) - A * tmc
        tc2 = -(3.0 * (rh * rh) * tsc * dLds + (rh * rh * rh) * tdLds) / nk
        # pass over the proxy points: a_T, b_T, e_T, f_T for T = 1, Y, q; a_tY, e_tY
        a = 1.0 + proxy_scale[c]
        acc = np.zeros(28)  # (hi, lo) of the 14 sums, in the order of ``terms`` below
        for k in range(nk):
            Y = proxy_shift[c] + a * q[k]
            uk = w * Y + b
            Pk, dk = _act(uk, code)
            ddk = _act2(uk, code)
            tY = tshift[c] + tscale[c] * q[k]
            tuk = tw * Y + w * tY + tb
            pc = sub_dd_round(Pk, mh, ml)  # P_k - m
            av = dk
            bv = ddk * tuk
            ev = pc * dk
            fv = (dk * tuk - tmc) * dk + pc * bv
            terms = (av, bv, ev, fv, av * Y, bv * Y, ev * Y, fv * Y, av * q[k], bv * q[k], ev * q[k], fv * q[k],
                     dk * tY, ev * tY)
            for i in range(14):
                acc[2 * i], e = two_sum(acc[2 * i], terms[i])
                acc[2 * i + 1] += e
        a1 = acc[0] + acc[1]
        b1 = acc[2] + acc[3]
        e1 = acc[4] + acc[5]
        f1 = acc[6] + acc[7]
        aY = acc[8] + acc[9]
        bY = acc[10] + acc[11]
        eY = acc[12] + acc[13]
        fY = acc[14] + acc[15]
        aq = acc[16] + acc[17]
        bq = acc[18] + acc[19]
        eq = acc[20] + acc[21]
        fq = acc[22] + acc[23]
        atY = acc[24] + acc[25]
        etY = acc[26] + acc[27]
        chain_1 = c1 * a1 + c2 * e1
        chain_q = c1 * aq + c2 * eq
        tchain_1 = tc1 * a1 + c1 * b1 + tc2 * e1 + c2 * f1
        tchain_y = tc1 * aY + c1 * bY + tc2 * eY + c2 * fY + (c1 * atY + c2 * etY)
        tchain_q = tc1 * aq + c1 * bq + tc2 * eq + c2 * fq
        ddweight[c] = tsc * (sdx_h + sdx_l) + rh * (s2x_h + s2x_l) + tchain_y
        ddbias[c] = tsc * (sd_h + sd_l) + rh * (s2_h + s2_l) + tchain_1
        ddshift[c] = tw * chain_1 + w * tchain_1
        ddscale[c] = tw * chain_q + w * tchain_q


_DIFF = ("x", "weight", "bias", "proxy_shift", "proxy_scale")


def _directions(kind, value, args, x3, C):
    """The checked directions: x's as ``(N, C, S)``, the parameters' ``(C,)`` (zeros when absent)."""
    D = V.check_directions(kind, value, dict(zip(_DIFF, args)))
    tx = np.zeros(x3.shape) if D["x"] is None else D["x"].reshape(x3.shape)
    return [tx] + [np.zeros(C) if D[k] is None else D[k] for k in _DIFF[1:]]


def _tangent_stats(params, tparams, q, code, st):
    C = params[0].shape[0]
    tm, ts = np.empty(C), np.empty(C)
    _proxy_tangent(*params, *tparams, q, code, st, tm, ts)
    return tm, ts


def proxy_norm_jvp(tangents, x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03,
                   num_points=200):
    """Forward-mode derivative of :func:`proxy_norm`: ``(y, ty)``.

    ``tangents``: dict over ``"x"``, ``"weight"``, ``"bias"``, ``"proxy_shift"``,
    ``"proxy_scale"`` (each shaped like its argument); a missing key is a zero
    tangent.  Other arguments as :func:`proxy_norm`; ``y`` is bit-identical to
    its result, ``ty`` float64 shaped like ``x``.  Tangents flow through the
    proxy mean and scale (docs/ops/proxy_norm.md#pn-jvp); ReLU's slope is 0 at
    the kink, as in the backward."""
    shape, x3, params, code, eps, nk = _prepare(x, weight, bias, proxy_shift, proxy_scale, activation, eps,
                                                num_points)
    tx, *tparams = _directions("tangents", tangents, (x, weight, bias, proxy_shift, proxy_scale), x3,
                               x3.shape[1])
    w, b = params[0], params[1]
    q, st = _proxy_stats(params, code, eps, nk)
    y3 = np.empty_like(x3)
    _forward(x3, w, b, code, st, y3)  # as proxy_norm_stats
    tm, ts = _tangent_stats(params, tparams, q, code, st)
    ty = np.empty_like(x3)
    _jvp(x3, tx, w, b, tparams[0], tparams[1], code, st, tm, ts, ty)
    return y3.reshape(shape), ty.reshape(shape)


def proxy_norm_double_backward(cotangents, dy, x, weight, bias, proxy_shift, proxy_scale, activation="relu",
                               eps=0.03, num_points=200):
    """Second order: the VJP of :func:`proxy_norm_backward`.

    For ``L = sum_k <cotangents[k], backward(dy)[k]>`` over the backward's keys
    (missing keys are zero), returns ``{"dy", "x", "weight", "bias",
    "proxy_shift", "proxy_scale"}`` shaped like ``dy`` and the arguments, float64
    (docs/ops/proxy_norm.md#pn-second-order).  ReLU's second derivative is 0
    (the kink is a set of measure zero, where the first derivative's
    convention already holds)."""
    shape, x3, params, code, eps, nk = _prepare(x, weight, bias, proxy_shift, proxy_scale, activation, eps,
                                                num_points)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    cx, *cparams = _directions("cotangents", cotangents, (x, weight, bias, proxy_shift, proxy_scale), x3,
                               x3.shape[1])
    w, b = params[0], params[1]
    q, st = _proxy_stats(params, code, eps, nk)
    tm, ts = _tangent_stats(params, cparams, q, code, st)
    ddy = np.empty_like(x3)
    _jvp(x3, cx, w, b, cparams[0], cparams[1], code, st, tm, ts, ddy)  # dL/ddy = J c
    C = w.shape[0]
    ddx = np.empty_like(x3)
    ddw, ddb, ddshift, ddscale = (np.empty(C) for _ in range(4))
    _double_backward(dy3, x3, cx, *params, *cparams, q, code, st, tm, ts, ddx, ddw, ddb, ddshift, ddscale)
    return {"dy": ddy.reshape(shape), "x": ddx.reshape(shape), "weight": ddw, "bias": ddb, "proxy_shift": ddshift,
            "proxy_scale": ddscale}


__all__ = ["ACTIVATION_CODES", "proxy_norm", "proxy_norm_backward", "proxy_norm_double_backward", "proxy_norm_jvp",
           "proxy_norm_stats", "proxy_quantiles"]
