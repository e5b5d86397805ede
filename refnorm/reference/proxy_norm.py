"""Proxy Normalization (PN-Act): an activation normalized by the moments of a Gaussian proxy.

.. math::

   u = \\gamma_c x + \\beta_c, \\qquad z = \\phi(u), \\qquad
   q_k = \\Phi^{-1}\\Big(\\frac{k - 1/2}{K}\\Big) = \\sqrt 2\\,\\mathrm{erfinv}\\Big(\\frac{2(k - 1/2)}{K} - 1\\Big),

   Y_{ck} = \\tilde\\beta_c + (1 + \\tilde\\gamma_c)\\, q_k, \\qquad
   P_{ck} = \\phi(\\gamma_c Y_{ck} + \\beta_c),

   m_c = \\frac1K \\sum_k P_{ck}, \\quad
   v_c = \\frac1K \\sum_k (P_{ck} - m_c)^2, \\quad
   s_c = \\frac{1}{\\sqrt{v_c + \\epsilon}}, \\qquad
   y = (z - m_c)\\, s_c

PN-Act replaces the activation step after a batch-independent LN/GN that has
no affine of its own: ``x`` is the *normalized* pre-activation, the affine
(gamma, beta) lives inside PN-Act, and the output is centred and scaled by the
mean and standard deviation that ``phi`` would have on a Gaussian "proxy"
pre-activation ``N(beta~, (1 + gamma~)^2)`` pushed through the same affine.
The proxy statistics are functions of the parameters only (no batch or
instance dependence): train = eval, nothing is cached.

Shapes
    x: ``(N, C, *spatial)`` (channel axis 1); weight (gamma), bias (beta),
    proxy_shift (beta~), proxy_scale (gamma~): ``(C,)``; quantiles q: ``(K,)``;
    proxy samples Y, P: ``(C, K)``; statistics m (mean), v (var), s (rstd):
    ``(C,)``.

Conventions
    K = ``num_points`` deterministic quantiles of N(0, 1) at the mid-points
    ``(k - 1/2)/K`` (no sampling; default 200).  Proxy variance BIASED (divisor
    K), ``eps`` (default 0.03) inside the square root.  The proxy std is
    ``1 + proxy_scale`` (gamma~ init 0).  Activations ``phi``: ``"relu"``
    ``max(u, 0)`` with derivative 0 at the kink u == 0 (written ``where(u <= 0,
    0, u)`` so that autograd uses that convention too and a NaN propagates); ``"silu"`` (alias
    ``"swish"``) ``u * sigmoid(u)`` with ``sigmoid(u) = (1 + tanh(u/2))/2``
    (no overflow for any u); ``"gelu"`` (erf form) ``u * Phi(u)``,
    ``Phi(u) = erfc(-u/sqrt 2)/2``.  Gradients flow through m and s (no
    stop-gradient), as the authors' code does.  Statistics in float64 (the
    authors' code uses float32).

References
    Labatie, Masters, Eaton-Rosen & Luschi, "Proxy-Normalizing Activations to
    Match Batch Normalization while Removing Batch Dependence", NeurIPS 2021,
    arXiv:2106.03743; code: graphcore/examples @ b30108fb
    ``applications/tensorflow/cnns/training/Models/proxy_norm.py``
    (``get_rand``, ``proxy_fw``, ``proxy_initialiser``); the choices and
    defaults: docs/ops/proxy_norm.md#pn-defaults.
"""

import math

import autograd.numpy as np
from autograd.extend import defvjp, primitive

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)

# --- the proxy quantiles q_k = Phi^{-1}((k - 1/2)/K) -------------------------
#
# Phi^{-1} ("ndtri") by Acklam's rational approximation (relative error
# < 1.2e-9 over (0, 1)), then two Halley steps on f(x) = Phi(x) - p with
# Phi(x) = erfc(-x/sqrt 2)/2 from the C library (cubic convergence: 1e-9 ->
# 1e-27, i.e. to the accuracy of erfc).  Only the lower half p <= 1/2 is
# evaluated; the upper half is its exact mirror, q_{K+1-k} = -q_k, so the
# quantiles are exactly antisymmetric and sum to 0 exactly.  Checked against
# 50-digit mpmath values in tests/ops/test_proxy_norm.py.

_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


def _ndtri_lower(k, K):
    """Phi^{-1}(p) for p = (k - 1/2)/K <= 1/2 (see the comment above).

    The Halley residual ``Phi(x) - p`` is formed without cancellation: in the
    tail as ``erfc(-x/sqrt 2)/2 - p``; in the central region, where Phi(x) is
    close to 1/2, as ``erf(x/sqrt 2)/2 - t`` with ``t = p - 1/2 = (2k - 1 - K)/(2K)``
    rounded once from exact integers, so that small quantiles keep full
    relative accuracy."""
    p = (2 * k - 1) / (2.0 * K)
    t = (2 * k - 1 - K) / (2.0 * K)
    tail = p < _P_LOW
    if tail:
        r = math.sqrt(-2.0 * math.log(p))
        x = ((((((_C[0] * r + _C[1]) * r + _C[2]) * r + _C[3]) * r + _C[4]) * r + _C[5])
             / ((((_D[0] * r + _D[1]) * r + _D[2]) * r + _D[3]) * r + 1.0))
    else:
        r = t * t
        x = ((((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]) * t
             / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0))
    for _ in range(2):  # Halley refinement on f(x) = Phi(x) - p
        if tail:
            e = 0.5 * math.erfc(-x / _SQRT2) - p
        else:
            e = 0.5 * math.erf(x / _SQRT2) - t
        h = e * _SQRT2PI * math.exp(0.5 * x * x)  # f / f'
        x = x - h / (1.0 + 0.5 * x * h)
    return x


def proxy_quantiles(num_points):
    """The K = ``num_points`` proxy points ``q_k = Phi^{-1}((k - 1/2)/K)``, k = 1..K,
    as a new float64 array (ascending, exactly antisymmetric, ``q = 0`` in the
    middle when K is odd)."""
    K = int(num_points)
    q = [0.0] * K
    for k in range(1, K // 2 + 1):
        x = _ndtri_lower(k, K)
        q[k - 1] = x
        q[K - k] = -x
    return np.array(q, dtype=np.float64)


# --- activations -------------------------------------------------------------
# [docs:activations-start]

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


@primitive
def normal_cdf(u):
    """Phi(u) = erfc(-u / sqrt 2) / 2, the standard normal CDF (accurate in both tails)."""
    return 0.5 * _erfc(-u / _SQRT2)


defvjp(normal_cdf, lambda ans, u: lambda g: g * np.exp(-0.5 * u * u) / _SQRT2PI)


def relu(u):
    return np.where(u <= 0, 0.0, u)  # derivative 0 at u == 0; NaN propagates


def silu(u):
    return u * (0.5 + 0.5 * np.tanh(0.5 * u))  # u * sigmoid(u)


def gelu(u):
    return u * normal_cdf(u)  # erf form


ACTIVATIONS = {"relu": relu, "silu": silu, "swish": silu, "gelu": gelu}
# [docs:activations-end]


# --- the layer -----------------------------------------------------------------

# [docs:forward-start]
def proxy_norm(x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03, num_points=200):
    phi = ACTIVATIONS[activation]
    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel broadcast over (N, C, *spatial)
    u = x * np.reshape(weight, shape) + np.reshape(bias, shape)  # (1) (N, C, *spatial)
    z = phi(u)  # (2) (N, C, *spatial)
    q = proxy_quantiles(num_points)  # (3) (K,), constants
    Y = np.reshape(proxy_shift, (C, 1)) + np.reshape(1.0 + proxy_scale, (C, 1)) * q  # (4) (C, K)
    P = phi(np.reshape(weight, (C, 1)) * Y + np.reshape(bias, (C, 1)))  # (5) (C, K)
    m = np.mean(P, axis=1)  # (6) (C,)
    Pc = P - np.reshape(m, (C, 1))  # (7) (C, K)
    v = np.mean(Pc * Pc, axis=1)  # (8) (C,), biased
    s = 1.0 / np.sqrt(v + eps)  # (9) (C,)
    y = (z - np.reshape(m, shape)) * np.reshape(s, shape)  # (10) (N, C, *spatial)
    return y
# [docs:forward-end]
