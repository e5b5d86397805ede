"""The per-row kernels shared by the L2 row normalizers, ScaleNorm and Weight Normalization.

Both normalize each row of a ``(rows, d)`` view by its L2 norm, ``y = g xhat`` with ``xhat = x r``,
and differ only in how each row's ``r`` is formed (and saved): ScaleNorm clamps the norm below by
``eps`` (``r = 1/max(n, eps)``; the clamp's derivative ``ind`` is 0 where it is active), Weight
Normalization has no clamp (``r = 1/n``, ``ind = 1`` on every row).  Each op's ``_row_stats`` (built
on :func:`row_absmax` and :func:`scaled_sumsq`, the overflow-free sum of squares) fills
the state ``st[:, RH], st[:, RL], st[:, K], st[:, IND]`` with ``r = (rh + rl) * 2^k``; the kernels
here take it from there, with the gain ``g`` (and its tangent ``tg`` or cotangent ``cg``) one value
per row, and write ``dg`` and ``d2g`` per row (an op sums them over the rows that share a gain).

Per row, with ``xhat_j = fl(x_j 2^k (rh + rl))`` (one rounding of the exact product) and
``P(v) = v - ind * xhat * <xhat, v>`` (derivations: docs/ops/scale_norm.md, docs/ops/weight_norm.md)::

    y_j   = g * xhat_j
    dx_j  = g * r * P(dy)_j,          dg = <dy, xhat>  (double-double, per row)
    ty_j  = tg * xhat_j + g * r * P(tx)_j
    d2x   = cg r P(dy) - ind g r^2 ((<cx, dy> - a b) xhat + a P(cx) + b P(dy)),
            a = <xhat, dy>,  b = <xhat, cx>
    d2g   = r (<cx, dy> - ind a b)  (per row)

``r * v`` is evaluated as ``ldexp(v * rs, k)``, so that neither ``r`` nor ``r^2`` overflows on its
own; the inner products are compensated (two_prod + two_sum), each row on one thread (the same bits
for any thread count).  With ``ind = 1`` a product ``ind * t`` is exact, so Weight Normalization gets
the bits of its own formula.
"""

from __future__ import annotations

import math

from ._dd import dd_mul_round, renormalize, two_prod, two_sum
from ._jit import jit, pjit, prange

#: the state columns every op's _row_stats fills: r = (RH + RL) * 2^K, IND = the clamp's derivative
RH, RL, K, IND = 0, 1, 2, 3


@jit
def row_absmax(x, i):
    """``(max_j |x[i, j]|, whether row i holds a NaN)``: the first step of each op's ``_row_stats``."""
    m = 0.0
    nan = False
    for j in range(x.shape[1]):
        a = abs(x[i, j])
        if a != a:
            nan = True
        elif a > m:
            m = a
    return m, nan


@jit
def scaled_sumsq(x, i, e):
    """``ss = sum_j (x[i, j] 2^-e)^2`` as a renormalized double-double ``(sh, sl)``: each term scaled
    exactly (``ldexp``), squared exactly (``two_prod``) and summed compensated (``two_sum``); with
    ``2^e`` above the row's largest magnitude, ``ss`` lies in ``[1/4, d]`` and cannot overflow or
    underflow."""
    sh = 0.0
    sl = 0.0
    for j in range(x.shape[1]):
        a = math.ldexp(x[i, j], -e)  # exact scaling by 2^-e, |a| < 1
        p, pe = two_prod(a, a)
        sh, t = two_sum(sh, p)
        sl += t + pe
    return renormalize(sh, sl)


@pjit
def forward(x, st, g, y):
    """``y = g * xhat``, ``xhat_j = fl(x_j 2^k (rh + rl))`` (one rounding)."""
    R, D = x.shape
    for i in prange(R):
        k = int(st[i, K])
        rh = st[i, RH]
        rl = st[i, RL]
        for j in range(D):
            y[i, j] = g[i] * dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)  # (5)-(6)


@pjit
def backward(dy, x, st, g, dx, dg_rows):
    """``dx = g r P(dy)`` and the per-row ``<dy, xhat>`` (double-double, in
    ``dg_rows[i, 0:2]``) for ``dg``; two passes over each row."""
    R, D = x.shape
    for i in prange(R):
        k = int(st[i, K])
        rh = st[i, RH]
        rl = st[i, RL]
        ind = st[i, IND]
        ch = 0.0
        cl = 0.0
        for j in range(D):  # pass 1: c = <dy, xhat>, compensated
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            p, pe = two_prod(dy[i, j], xh)
            ch, t = two_sum(ch, p)
            cl += t + pe
        c = ch + cl
        for j in range(D):  # pass 2: dx = g r (dy - ind xhat c)
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            t = dy[i, j] - ind * (xh * c) if ind != 0.0 else dy[i, j]
            dx[i, j] = math.ldexp(g[i] * dd_mul_round(t, 0.0, rh, rl), k)
        dg_rows[i, 0] = ch
        dg_rows[i, 1] = cl


@pjit
def jvp(x, tx, st, g, tg, ty):
    """``ty = tg xhat + g r P(tx)`` (``b = <xhat, tx>`` compensated)."""
    R, D = x.shape
    for i in prange(R):
        k = int(st[i, K])
        rh = st[i, RH]
        rl = st[i, RL]
        ind = st[i, IND]
        bh = 0.0
        bl = 0.0
        for j in range(D):
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            p, pe = two_prod(tx[i, j], xh)
            bh, t = two_sum(bh, p)
            bl += t + pe
        b = bh + bl
        for j in range(D):
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            t = tx[i, j] - ind * (xh * b) if ind != 0.0 else tx[i, j]
            ty[i, j] = tg[i] * xh + math.ldexp(g[i] * dd_mul_round(t, 0.0, rh, rl), k)


@pjit
def double_backward(dy, x, cx, st, g, cg, d2x, d2g_rows):
    """``d2x`` and the per-row terms of ``d2g`` (module docstring), for the
    cotangents ``cx``, ``cg`` of ``(dx, dg)``; ``a``, ``b``, ``<cx, dy>``
    compensated."""
    R, D = x.shape
    for i in prange(R):
        k = int(st[i, K])
        rh = st[i, RH]
        rl = st[i, RL]
        ind = st[i, IND]
        ah = 0.0
        al = 0.0
        bh = 0.0
        bl = 0.0
        dh = 0.0
        dl = 0.0
        for j in range(D):
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            p, pe = two_prod(xh, dy[i, j])
            ah, t = two_sum(ah, p)
            al += t + pe
            p, pe = two_prod(xh, cx[i, j])
            bh, t = two_sum(bh, p)
            bl += t + pe
            p, pe = two_prod(cx[i, j], dy[i, j])
            dh, t = two_sum(dh, p)
            dl += t + pe
        a = ah + al
        b = bh + bl
        cd = dh + dl
        w = cd - a * b  # <cx, dy> - a b
        for j in range(D):
            xh = dd_mul_round(math.ldexp(x[i, j], k), 0.0, rh, rl)
            pdy = dy[i, j] - ind * (xh * a) if ind != 0.0 else dy[i, j]
            t1 = math.ldexp(cg[i] * dd_mul_round(pdy, 0.0, rh, rl), k)  # cg r P(dy)
            if ind != 0.0:
                pcx = cx[i, j] - xh * b
                inner = w * xh + a * pcx + b * pdy
                t2 = math.ldexp(g[i] * (rh * (rh * inner)), 2 * k)  # g r^2 (...)
                d2x[i, j] = t1 - t2
            else:
                d2x[i, j] = t1
        d2g_rows[i] = math.ldexp(dd_mul_round(cd - ind * (a * b), 0.0, rh, rl), k)  # r <cx, P(dy)>
