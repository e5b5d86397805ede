"""The kernels of every mean/variance normalizer, one reduction set at a time.

This is the first level of reading: the math, written as plain loops over one
reduction set.  The second level, :mod:`refnorm.ops._lanes` (with
:mod:`refnorm.ops._runs`), computes the very same bits eight sets (or eight
positions) at a time in SIMD lanes; that is what the ops run, and the tests
compare the two bit for bit.  The entry points the ops call are gathered in
:mod:`refnorm.ops._kernels`.

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

Notation (fixed across refnorm, the seed layers' kernels included): ``n`` the
size of a reduction set, ``mean``, ``var`` (biased, ``m2 / n``),
``rstd = 1/sqrt(var + eps)``, ``xc = x - mean``, ``xhat = xc * rstd``,
``weight``, ``bias`` (``w`` one weight value), ``g = weight * dy`` (the
cotangent of ``xhat``); the backward constants ``c1 = mean(g)`` and
``c2 = mean(g * xhat)``.  In code ``mh + ml`` is the double-double mean and
``rh + rl`` the double-double rstd (high and low parts).

The statistics array
--------------------
The statistics of the B sets travel as one float64 array ``stats`` of shape
``(NSTATS, B)``, one column per set, rows :data:`MEAN`, :data:`MEAN_LO`
(the double-double mean; ``0`` without centring), :data:`M2`, :data:`M2_LO`
(the double-double centred sum of squares) and :data:`RSTD`, :data:`RSTD_LO`.
A kernel that reads statistics takes set ``b``'s from column
``b % stats.shape[1]`` (a period below B: InstanceNorm's per-channel running
statistics).

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

NaN bits: IEEE 754 does not say which NaN ``a op b`` returns when both are
NaNs (x86 returns the first operand, and the compiler may commute ``*`` and
``+``).  :func:`~refnorm.ops._dd.dd_mul_round` picks the rstd operand's NaN
explicitly, so that a NaN/Inf input gives the same NaN bits whether a kernel
was compiled just now or loaded from the cache (before, the committed golden
corpus only verified with a warm cache).

Determinism
-----------
Every sum is accumulated by one thread in one fixed order: the elements of a
reduction set in ascending ``(a, s)``, the terms of ``dweight[k]``/``dbias[k]``
in ascending ``(a, b, s)``.  ``prange`` only distributes *whole* sums (sets,
blocks of sets, blocks of affine parameters), never parts of one, so the
results are bitwise identical for any number of threads -- and identical
between the loops here and the lane kernels of :mod:`refnorm.ops._lanes`.
No fastmath anywhere: every FMA is an explicit one (``two_prod``).
"""

from __future__ import annotations

import numpy as np

from ._dd import dd_div_int, dd_mul_round, renormalize, rsqrt_dd, two_prod, two_sum
from ._jit import jit, pjit, prange

# Rows of the statistics array ``stats`` (shape (NSTATS, B)).
MEAN = 0  # the mean, high part (0 without centring)
MEAN_LO = 1  # its low part
M2 = 2  # the centred sum of squares sum((x - mean)^2), high part
M2_LO = 3
RSTD = 4  # 1 / sqrt(m2 / n + eps), high part
RSTD_LO = 5
NSTATS = 6

# Modes of the input-gradient kernels.
MODE_BATCH_STATS = 0  # statistics are functions of x: both c1 and c2 terms
MODE_RMS = 1  # no centring: only the c2 term (RMSNorm)
MODE_CONST_STATS = 2  # statistics are constants (running statistics): dx = rstd * g


def empty_stats(B: int) -> np.ndarray:
    """An uninitialized statistics array for ``B`` reduction sets."""
    return np.empty((NSTATS, B))


# ----------------------------------------------------------------------------- one element


@jit
def _xhat(xv, mh, ml, rh, rl):
    """xhat = ((x - mean_hi) - mean_lo) * rstd, rounded once."""
    d, de = two_sum(xv, -mh)
    return dd_mul_round(d, de - ml, rh, rl)


@jit
def _dx1(g, xv, mh, ml, rh, rl, c1, c2, mode):
    """The input gradient of one element, given ``g = w * dy`` and the set's
    ``c1``, ``c2`` (see :func:`backward_input`)."""
    if mode == MODE_CONST_STATS:
        return rh * g
    xhat = _xhat(xv, mh, ml, rh, rl)
    # term 1: g; term 2: -c1 (mean path); term 3: -xhat*c2 (rstd path)
    return rh * ((g - c1) - xhat * c2)


@jit
def _rstd_of_m2(qh, ql, n, eps):
    """``rstd = 1 / sqrt(m2 / n + eps)`` in double-double from the
    double-double centred sum of squares ``m2 = qh + ql`` of ``n`` values
    (NaN for an empty set)."""
    if n > 0:
        vh, vl = dd_div_int(qh, ql, n)
    else:
        vh, vl = np.nan, 0.0
    th, tl = two_sum(vh, eps)
    th, tl = renormalize(th, tl + vl)
    return rsqrt_dd(th, tl)


# ----------------------------------------------------------------------------- the statistics


@pjit
def _moments_sets(x, center, eps, stats):
    """:func:`~refnorm.ops._kernels.moments` one set at a time (any memory
    layout): writes column ``b`` of ``stats`` for every set ``b``."""
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
        stats[MEAN, b] = mh
        stats[MEAN_LO, b] = ml
        stats[M2, b] = qh
        stats[M2_LO, b] = ql
        # (3) rstd = 1 / sqrt(var + eps), var = m2 / n
        rh, rl = _rstd_of_m2(qh, ql, n, eps)
        stats[RSTD, b] = rh
        stats[RSTD_LO, b] = rl


@pjit
def rstd_of_var(var, eps, stats):
    """``rstd = 1 / sqrt(var + eps)`` elementwise (for running statistics):
    writes the rows ``RSTD``, ``RSTD_LO`` of ``stats``."""
    for i in prange(var.shape[0]):
        th, tl = two_sum(var[i], eps)
        rh, rl = rsqrt_dd(th, tl)
        stats[RSTD, i] = rh
        stats[RSTD_LO, i] = rl


@pjit
def divide_m2(stats, divisor, out):
    """``out = (m2 + m2_lo) / divisor`` rounded once: the biased (divisor n) or
    unbiased (divisor n - 1) variance from the double-double m2."""
    for i in prange(stats.shape[1]):
        vh, vl = dd_div_int(stats[M2, i], stats[M2_LO, i], divisor)
        out[i] = vh + vl


@jit
def set_stats(stats, j):
    """The double-double mean and rstd of statistics column ``j``: ``(mh, ml, rh, rl)``."""
    return stats[MEAN, j], stats[MEAN_LO, j], stats[RSTD, j], stats[RSTD_LO, j]


# ----------------------------------------------------------------------------- the forward


@pjit
def _forward_sets(x, stats, weight, bias, P, Q, T, y):
    """``y = weight[k] * xhat + bias[k]``, ``k = (b % P) * Q + s // T``, one
    set at a time (any memory layout): the readable form of
    :func:`~refnorm.ops._kernels.forward`, which gives the same bits."""
    A, B, S = x.shape
    period = stats.shape[1]
    for b in prange(B):
        j = b % period
        mh, ml, rh, rl = set_stats(stats, j)
        p = b % P
        for a in range(A):
            for q in range(Q):
                w = weight[p * Q + q]
                c = bias[p * Q + q]
                for t in range(T):
                    s = q * T + t
                    y[a, b, s] = w * _xhat(x[a, b, s], mh, ml, rh, rl) + c  # (6), (7)


# ----------------------------------------------------------------------------- the backward


@pjit
def backward_input(dy, x, stats, weight, P, Q, T, mode, dx):
    """The input gradient of :func:`~refnorm.ops._kernels.forward`.

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

    This is the readable form, one reduction set at a time (any memory
    layout); :func:`~refnorm.ops._lanes.backward_sets` computes the same bits
    lane-wise and is what the ops call.
    """
    A, B, S = x.shape
    n = A * S
    period = stats.shape[1]
    for b in prange(B):
        j = b % period
        mh, ml, rh, rl = set_stats(stats, j)
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


@jit
def _affine_store(acc, k0, wh, wl, bh, bl):
    """Write a job's Sum2 accumulators back into ``acc`` (the sums continue from there)."""
    nq = wh.shape[0]
    acc[0, k0:k0 + nq] = wh
    acc[1, k0:k0 + nq] = wl
    acc[2, k0:k0 + nq] = bh
    acc[3, k0:k0 + nq] = bl


@jit
def _affine_job(job, nblk, qblk, Q):
    """The parameters the affine-sum job ``job`` owns: ``p`` and the ``q`` in
    ``[q0, q1)`` (blocks of ``qblk``), whose flat index starts at ``k0``."""
    p = job // nblk
    q0 = (job % nblk) * qblk
    q1 = min(q0 + qblk, Q)
    return p, q0, q1, p * Q + q0


@jit
def _affine_accumulators(acc, k0, nq):
    """Copies of the job's Sum2 accumulators (dweight hi/lo, dbias hi/lo) in ``acc``."""
    return (acc[0, k0:k0 + nq].copy(), acc[1, k0:k0 + nq].copy(), acc[2, k0:k0 + nq].copy(),
            acc[3, k0:k0 + nq].copy())


@pjit
def _affine_sets(dy, x, stats, P, Q, T, acc, block):
    """The affine sums of :func:`~refnorm.ops._kernels.backward_affine`, one
    term at a time: for every parameter ``k = p * Q + q``,
    ``dweight[k] += sum dy * xhat`` into the Sum2 accumulators ``acc[0], acc[1]``
    and ``dbias[k] += sum dy`` into ``acc[2], acc[3]``, over the elements
    ``(a, b, s)`` with ``b % P == p`` and ``s // T == q``, in ascending
    ``(a, b, s)``.  One job per ``p`` and block of ``block`` consecutive ``q``:
    each parameter is summed by one thread."""
    A, B, S = x.shape
    period = stats.shape[1]
    qblk = max(1, block)
    nblk = (Q + qblk - 1) // qblk
    for job in prange(P * nblk):
        p, q0, q1, k0 = _affine_job(job, nblk, qblk, Q)
        wh, wl, bh, bl = _affine_accumulators(acc, k0, q1 - q0)
        for a in range(A):
            for b in range(p, B, P):
                j = b % period
                mh, ml, rh, rl = set_stats(stats, j)
                for q in range(q0, q1):
                    i = q - q0
                    for t in range(T):
                        s = q * T + t
                        dyv = dy[a, b, s]
                        xhat = _xhat(x[a, b, s], mh, ml, rh, rl)
                        wh[i], e = two_sum(wh[i], dyv * xhat)
                        wl[i] += e
                        bh[i], e = two_sum(bh[i], dyv)
                        bl[i] += e
        _affine_store(acc, k0, wh, wl, bh, bl)


@pjit
def affine_result(acc, dweight, dbias):
    """``dweight = acc[0] + acc[1]``, ``dbias = acc[2] + acc[3]``, each rounded
    once (the end of the affine sums' Sum2)."""
    for k in prange(dweight.shape[0]):
        dweight[k] = acc[0, k] + acc[1, k]
        dbias[k] = acc[2, k] + acc[3, k]
