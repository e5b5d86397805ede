"""Numba kernels shared by every mean/variance normalizer.

The canonical view
------------------
Every standard normalizer is, after a reshape (never a copy of the data), a
normalization of a C-contiguous 3-D array ``x[a, b, s]`` of shape ``(A, B, S)``
in which each *reduction set* is ``{x[a, b, s] : a < A, s < S}`` for a fixed
``b``; its size is ``n = A * S``:

==============  ===========================  ==============================
op              view (A, B, S)               affine index k(b, s)
==============  ===========================  ==============================
batch_norm      (N, C, H*W...)               b                (P=C, T=S)
layer_norm      (1, rows, prod(norm_shape))  s                (P=1, T=1)
group_norm      (1, N*G, C/G*H*W...)         (b % G)*C/G + s // HW  (P=G, T=HW)
instance_norm   (1, N*C, H*W...)             b % C            (P=C, T=S)
rms_norm        as layer_norm, no centring
==============  ===========================  ==============================

The affine parameters are a vector ``w`` of length ``P * Q`` (``S = Q * T``)
and element ``(a, b, s)`` uses ``w[(b % P) * Q + s // T]``; kernels receive
P, Q and T explicitly (T may be 0 for an empty spatial extent).  This one rule
covers per-channel (BN, GN, IN) and per-element (LN, RMS) affines.

Notation (fixed across refnorm): ``n`` the size of a reduction set, ``mean``,
``var`` (biased, ``m2 / n``), ``rstd = 1/sqrt(var + eps)``,
``xc = x - mean``, ``xhat = xc * rstd``, ``g = weight * dy``; the backward
constants ``c1 = mean(g)`` and ``c2 = mean(g * xhat)``.

Accuracy
--------
mean, m2 (the centred sum of squares) and rstd are double-double (``hi``,
``lo``) quantities; the centred value ``xc = (x - mean_hi) - mean_lo`` is formed
with ``two_sum`` so that it is accurate to ~u^2 |mean| even when the mean is
large and the spread is small (``1e4 + 1e-2 z``).  Every reduction is a
compensated (Sum2) sum.  The elementwise outputs are then rounded only a few
times; the bounds (u = 2^-53, first order in u) are

* mean, var, rstd: within 0.5 ulp + O(u^2) of the exact statistics of x;
* ``y = fl(fl(w * xhat) + b)``: ``|y - y*| <= 3 u (|w xhat| + |b|)``;
* ``dx = rstd * ((g - c1) - xhat * c2)``:
  ``|dx - dx*| <= 9 u * rstd * (|g| + mean|g| + |xhat| * mean|g xhat|)``;
* ``dweight = sum dy * xhat``: ``<= 3 u * sum |dy xhat|``;
  ``dbias = sum dy``: ``<= u |sum dy| + O(u^2) sum |dy|``.

The derivation of each bound is in ``docs/numerics``; ``tests/ops`` checks them
against an exact rational oracle.

Determinism
-----------
``prange`` runs over whole reduction sets (``b``) or over blocks of affine
parameters; each sum is accumulated by one thread in a fixed loop order, so
results are bitwise identical for any number of threads.
"""

from __future__ import annotations

import numpy as np

from ._dd import dd_div_int, dd_mul_round, fast_two_sum, renormalize, rsqrt_dd, two_prod, two_sum
from ._jit import jit, pjit, prange

# Modes of the input-gradient kernel.
MODE_BATCH_STATS = 0  # statistics are functions of x: both c1 and c2 terms
MODE_RMS = 1  # no centring: only the c2 term (RMSNorm)
MODE_CONST_STATS = 2  # statistics are constants (running statistics): dx = rstd * g

# Number of affine parameters one thread reduces at once in affine_grads.
_AFFINE_BLOCK = 64


@pjit
def moments(x, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo):
    """Statistics of every reduction set of ``x`` (A, B, S), in double-double.

    Writes, for each b: ``mean`` (+ ``mean_lo``; zero when ``center`` is
    False), the centred sum of squares ``m2`` (+ ``m2_lo``) and
    ``rstd = 1 / sqrt(m2 / n + eps)`` (+ ``rstd_lo``).
    """
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        # (1) mean = sum(x) / n, compensated sum, double-double quotient
        mh = 0.0
        ml = 0.0
        if center and n > 0:
            sh = 0.0
            sl = 0.0
            for a in range(A):
                for s in range(S):
                    sh, e = two_sum(sh, x[a, b, s])
                    sl += e
            mh, ml = dd_div_int(sh, sl, n)
        # (2) m2 = sum(xc^2), xc = (x - mean_hi) - mean_lo = d + d_lo
        qh = 0.0
        ql = 0.0
        for a in range(A):
            for s in range(S):
                d, de = two_sum(x[a, b, s], -mh)
                d_lo = de - ml
                p, pe = two_prod(d, d)
                qh, e = two_sum(qh, p)
                ql += e + pe + (2.0 * d + d_lo) * d_lo  # (d + d_lo)^2 - d^2
        qh, ql = renormalize(qh, ql)
        mean[b] = mh
        mean_lo[b] = ml
        m2[b] = qh
        m2_lo[b] = ql
        # (3) rstd = 1 / sqrt(var + eps), var = m2 / n
        if n > 0:
            vh, vl = dd_div_int(qh, ql, n)
        else:
            vh, vl = np.nan, 0.0
        th, tl = two_sum(vh, eps)
        th, tl = renormalize(th, tl + vl)
        rh, rl = rsqrt_dd(th, tl)
        rstd[b] = rh
        rstd_lo[b] = rl


@pjit
def rstd_of_var(var, eps, rstd, rstd_lo):
    """``rstd = 1 / sqrt(var + eps)`` elementwise (for running statistics)."""
    for i in prange(var.shape[0]):
        th, tl = two_sum(var[i], eps)
        rh, rl = rsqrt_dd(th, tl)
        rstd[i] = rh
        rstd_lo[i] = rl


@pjit
def divide_m2(m2, m2_lo, divisor, out):
    """``out = (m2 + m2_lo) / divisor`` rounded once: the biased (divisor n) or
    unbiased (divisor n - 1) variance from the double-double m2."""
    for i in prange(m2.shape[0]):
        vh, vl = dd_div_int(m2[i], m2_lo[i], divisor)
        out[i] = vh + vl


@jit
def _xhat(xv, mh, ml, rh, rl):
    """xhat = ((x - mean_hi) - mean_lo) * rstd, rounded once."""
    d, de = two_sum(xv, -mh)
    return dd_mul_round(d, de - ml, rh, rl)


@pjit
def forward(x, mean, mean_lo, rstd, rstd_lo, stats_period, weight, bias, P, Q, T, y):
    """``y = weight[k] * xhat + bias[k]`` with ``k = (b % P) * Q + s // T``.

    The statistics of set ``b`` are ``mean[b % stats_period]`` etc.
    (``stats_period == B`` for batch statistics; ``C`` when InstanceNorm uses
    per-channel running statistics).
    """
    A, B, S = x.shape
    for b in prange(B):
        j = b % stats_period
        mh = mean[j]
        ml = mean_lo[j]
        rh = rstd[j]
        rl = rstd_lo[j]
        p = b % P
        for a in range(A):
            for q in range(Q):
                k = p * Q + q
                w = weight[k]
                c = bias[k]
                for t in range(T):
                    s = q * T + t
                    xhat = _xhat(x[a, b, s], mh, ml, rh, rl)  # (6)
                    y[a, b, s] = w * xhat + c  # (7)


@pjit
def backward_input(dy, x, mean, mean_lo, rstd, rstd_lo, stats_period, weight, P, Q, T, mode, dx):
    """The input gradient of :func:`forward`.

    With g = weight * dy, for a reduction set of n elements (derivation:
    docs, "the backward of a normalizer"):

    * batch statistics (``MODE_BATCH_STATS``)::

        c1 = mean(g)                       # term from d mean / dx
        c2 = mean(g * xhat)                # term from d rstd / dx
        dx = rstd * ((g - c1) - xhat * c2)

    * RMSNorm (``MODE_RMS``: no mean, so no c1 term)::

        dx = rstd * (g - xhat * c2)

    * constant statistics (``MODE_CONST_STATS``: running statistics)::

        dx = rstd * g
    """
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        j = b % stats_period
        mh = mean[j]
        ml = mean_lo[j]
        rh = rstd[j]
        rl = rstd_lo[j]
        p = b % P
        c1 = 0.0
        c2 = 0.0
        if mode != MODE_CONST_STATS and n > 0:
            # pass 1: the two row reductions, compensated
            s1h = 0.0
            s1l = 0.0
            s2h = 0.0
            s2l = 0.0
            for a in range(A):
                for q in range(Q):
                    w = weight[p * Q + q]
                    for t in range(T):
                        s = q * T + t
                        g = w * dy[a, b, s]
                        xhat = _xhat(x[a, b, s], mh, ml, rh, rl)
                        s1h, e = two_sum(s1h, g)
                        s1l += e
                        s2h, e = two_sum(s2h, g * xhat)
                        s2l += e
            if mode == MODE_BATCH_STATS:
                c1h, c1l = dd_div_int(s1h, s1l, n)
                c1 = c1h + c1l
            c2h, c2l = dd_div_int(s2h, s2l, n)
            c2 = c2h + c2l
        # pass 2: dx
        for a in range(A):
            for q in range(Q):
                w = weight[p * Q + q]
                for t in range(T):
                    s = q * T + t
                    g = w * dy[a, b, s]
                    if mode == MODE_CONST_STATS:
                        dx[a, b, s] = rh * g
                    else:
                        xhat = _xhat(x[a, b, s], mh, ml, rh, rl)
                        # term 1: g; term 2: -c1 (mean path); term 3: -xhat*c2 (rstd path)
                        dx[a, b, s] = rh * ((g - c1) - xhat * c2)


@pjit
def backward_affine(dy, x, mean, mean_lo, rstd, rstd_lo, stats_period, P, Q, T, dweight, dbias):
    """``dweight[k] = sum dy * xhat`` and ``dbias[k] = sum dy`` over all elements
    with affine index k, compensated, summed in the order (a, b, s) ascending.

    Parallel over (p, block of q): each affine parameter is reduced by exactly
    one thread, so the result does not depend on the thread count.
    """
    A, B, S = x.shape
    nblk = (Q + _AFFINE_BLOCK - 1) // _AFFINE_BLOCK
    for job in prange(P * nblk):
        p = job // nblk
        q0 = (job % nblk) * _AFFINE_BLOCK
        q1 = min(q0 + _AFFINE_BLOCK, Q)
        wh = np.zeros(q1 - q0)
        wl = np.zeros(q1 - q0)
        bh = np.zeros(q1 - q0)
        bl = np.zeros(q1 - q0)
        for a in range(A):
            for b in range(p, B, P):
                j = b % stats_period
                mh = mean[j]
                ml = mean_lo[j]
                rh = rstd[j]
                rl = rstd_lo[j]
                for q in range(q0, q1):
                    i = q - q0
                    for t in range(T):
                        s = q * T + t
                        g = dy[a, b, s]
                        xhat = _xhat(x[a, b, s], mh, ml, rh, rl)
                        wh[i], e = two_sum(wh[i], g * xhat)
                        wl[i] += e
                        bh[i], e = two_sum(bh[i], g)
                        bl[i] += e
        for q in range(q0, q1):
            i = q - q0
            dweight[p * Q + q] = wh[i] + wl[i]
            dbias[p * Q + q] = bh[i] + bl[i]


__all__ = [
    "MODE_BATCH_STATS",
    "MODE_CONST_STATS",
    "MODE_RMS",
    "backward_affine",
    "backward_input",
    "fast_two_sum",
    "forward",
    "moments",
    "rstd_of_var",
    "divide_m2",
]
