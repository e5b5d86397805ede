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
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..reference.proxy_norm import proxy_quantiles as _quantiles
from . import _kernels as K
from . import _layout as L
from ._dd import two_sum
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
                zc, ze = two_sum(z, -mh)
                zc = zc + (ze - ml)  # phi(u) - m
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
            pc, pe = two_sum(Pk, -mh)
            pc = pc + (pe - ml)  # P_k - m
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


__all__ = ["ACTIVATION_CODES", "proxy_norm", "proxy_norm_backward", "proxy_norm_stats", "proxy_quantiles"]
