"""The lane kernels' passes along one row: eight consecutive positions per vector.

Second level of reading, with :mod:`refnorm.ops._lanes` (which advances eight
*sets* in lockstep and explains the arrangement).  Along a row, eight
consecutive positions are eight independent values, so the elementwise passes
-- ``y = w * xhat + c`` (:func:`_y_run`) and
``dx = rstd * ((g - c1) - xhat * c2)`` (:func:`_dx_run`) -- and LayerNorm's
per-position affine sums (:func:`_affine_rows`) load, compute and store them
as one ``f64x8`` without any transposition.  Each vector lane performs the
operations of the scalar element code of :mod:`refnorm.ops._sets` in its
order: the same bits.
"""

from __future__ import annotations

import numpy as np

from ._dd import two_sum
from ._jit import jit, pjit, prange
from ._sets import (MEAN, MEAN_LO, MODE_CONST_STATS, RSTD, RSTD_LO, _affine_accumulators, _affine_job,
                    _affine_store, _dx1, _xhat)
from ._simd import LANES, misalignment, vdd_mul_round, vload, vsplat, vstore, vstore_stream

# Affine parameters one thread reduces at once in the affine sums (minimum).
_AFFINE_BLOCK = 64
#: Rows whose terms are added to one group of accumulators at a time in :func:`_affine_lanes`.
_AFFINE_ROWS = 4


def affine_block(Q, T, threads):
    """The number of parameters per job of the affine sums: with one
    parameter per position (``T == 1``), one wide block per thread, so that a
    job streams long row segments; else ``_AFFINE_BLOCK``."""
    if T != 1:
        return _AFFINE_BLOCK
    return max(_AFFINE_BLOCK, -(-Q // (threads * LANES)) * LANES)


@jit
def _xhat8(xv, mh, ml, rh, rl):
    """:func:`~refnorm.ops._sets._xhat` lane by lane."""
    d, de = two_sum(xv, -mh)
    return vdd_mul_round(d, de - ml, rh, rl)


# ----------------------------------------------------------------------------- elementwise runs of one row


@jit
def _y_run(xf, yf, o, s0, s1, mh, ml, rh, rl, weight, bias, kw, perpos, stream):
    """``y = w * xhat + c`` at the positions ``s0 .. s1 - 1`` of the row at flat
    offset ``o``, with ``w, c = weight[kw + s], bias[kw + s]`` (``perpos``) or
    ``weight[kw], bias[kw]``.  Eight positions per vector; with ``stream`` the
    stores are non-temporal (a scalar head first reaches a 64-byte boundary)."""
    s = s0
    if stream:
        head = min(s1 - s0, (LANES - misalignment(yf, o + s0)) % LANES)
        for t in range(s0, s0 + head):
            w = weight[kw + t] if perpos else weight[kw]
            c = bias[kw + t] if perpos else bias[kw]
            yf[o + t] = w * _xhat(xf[o + t], mh, ml, rh, rl) + c  # (6), (7)
        s = s0 + head
    vmh = vsplat(mh)
    vml = vsplat(ml)
    vrh = vsplat(rh)
    vrl = vsplat(rl)
    wv = vsplat(weight[kw]) if s1 > s0 else vmh
    cv = vsplat(bias[kw]) if s1 > s0 else vmh
    while s + LANES <= s1:
        if perpos:
            wv = vload(weight, kw + s)
            cv = vload(bias, kw + s)
        yv = wv * _xhat8(vload(xf, o + s), vmh, vml, vrh, vrl) + cv  # (6), (7)
        if stream:
            vstore_stream(yf, o + s, yv)
        else:
            vstore(yf, o + s, yv)
        s += LANES
    for t in range(s, s1):
        w = weight[kw + t] if perpos else weight[kw]
        c = bias[kw + t] if perpos else bias[kw]
        yf[o + t] = w * _xhat(xf[o + t], mh, ml, rh, rl) + c  # (6), (7)


@jit
def _row_forward(xf, yf, o, p, mh, ml, rh, rl, weight, bias, Q, T, stream):
    """``y = weight[k] * xhat + bias[k]`` along the row at flat offset ``o`` of
    parameter group ``p`` (``k = p * Q + s // T``)."""
    if T == 1:  # one parameter per position (LayerNorm): S == Q
        _y_run(xf, yf, o, 0, Q, mh, ml, rh, rl, weight, bias, p * Q, True, stream)
    else:
        for q in range(Q):
            _y_run(xf, yf, o, q * T, (q + 1) * T, mh, ml, rh, rl, weight, bias, p * Q + q, False, stream)


@jit
def _dx_run(dyf, xf, dxf, o, s0, s1, mh, ml, rh, rl, c1, c2, weight, kw, perpos, mode, stream):
    """``dx = rstd * ((g - c1) - xhat * c2)`` (``rstd * g`` for constant
    statistics), ``g = w * dy``, at the positions ``s0 .. s1 - 1`` of the row
    at flat offset ``o``; weights and stores as in :func:`_y_run`."""
    s = s0
    if stream:
        head = min(s1 - s0, (LANES - misalignment(dxf, o + s0)) % LANES)
        for t in range(s0, s0 + head):
            w = weight[kw + t] if perpos else weight[kw]
            dxf[o + t] = _dx1(w * dyf[o + t], xf[o + t], mh, ml, rh, rl, c1, c2, mode)
        s = s0 + head
    vmh = vsplat(mh)
    vml = vsplat(ml)
    vrh = vsplat(rh)
    vrl = vsplat(rl)
    vc1 = vsplat(c1)
    vc2 = vsplat(c2)
    wv = vsplat(weight[kw]) if s1 > s0 else vmh
    while s + LANES <= s1:
        if perpos:
            wv = vload(weight, kw + s)
        g = wv * vload(dyf, o + s)
        if mode == MODE_CONST_STATS:
            dxv = vrh * g
        else:
            xhat = _xhat8(vload(xf, o + s), vmh, vml, vrh, vrl)
            dxv = vrh * ((g - vc1) - xhat * vc2)
        if stream:
            vstore_stream(dxf, o + s, dxv)
        else:
            vstore(dxf, o + s, dxv)
        s += LANES
    for t in range(s, s1):
        w = weight[kw + t] if perpos else weight[kw]
        dxf[o + t] = _dx1(w * dyf[o + t], xf[o + t], mh, ml, rh, rl, c1, c2, mode)


@pjit
def _forward_lanes(x, stats, weight, bias, P, Q, T, y, stream):
    """:func:`~refnorm.ops._kernels.forward` on C-contiguous arrays, eight positions per vector."""
    A, B, S = x.shape
    period = stats.shape[1]
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for b in prange(B):
        j = b % period
        for a in range(A):
            _row_forward(xf, yf, (a * B + b) * S, b % P, stats[MEAN, j], stats[MEAN_LO, j], stats[RSTD, j],
                         stats[RSTD_LO, j], weight, bias, Q, T, stream)


# ----------------------------------------------------------------------------- affine sums, one parameter per position


@jit
def _affine_rows(dyf, xf, offs, cols, stats, nr, s0, s1, wh, wl, bh, bl):
    """Add ``dy * xhat`` and ``dy`` of positions ``s0 .. s1 - 1`` of ``nr`` rows
    (flat offsets ``offs``, statistics in the columns ``cols`` of ``stats``),
    in row order, into the per-position Sum2 accumulators ``wh/wl`` (dweight)
    and ``bh/bl`` (dbias), indexed ``s - s0``.  Eight positions per vector;
    each accumulator is read and written once per group of rows."""
    L = LANES
    n = s1 - s0
    nv = n - n % L
    for i in range(0, nv, L):
        vwh = vload(wh, i)
        vwl = vload(wl, i)
        vbh = vload(bh, i)
        vbl = vload(bl, i)
        for r in range(nr):
            o = offs[r] + s0 + i
            j = cols[r]
            dyv = vload(dyf, o)
            xhat = _xhat8(vload(xf, o), vsplat(stats[MEAN, j]), vsplat(stats[MEAN_LO, j]), vsplat(stats[RSTD, j]),
                          vsplat(stats[RSTD_LO, j]))
            vwh, e = two_sum(vwh, dyv * xhat)
            vwl = vwl + e
            vbh, e = two_sum(vbh, dyv)
            vbl = vbl + e
        vstore(wh, i, vwh)
        vstore(wl, i, vwl)
        vstore(bh, i, vbh)
        vstore(bl, i, vbl)
    for i in range(nv, n):
        for r in range(nr):
            o = offs[r] + s0 + i
            j = cols[r]
            dyv = dyf[o]
            xhat = _xhat(xf[o], stats[MEAN, j], stats[MEAN_LO, j], stats[RSTD, j], stats[RSTD_LO, j])
            wh[i], e = two_sum(wh[i], dyv * xhat)
            wl[i] += e
            bh[i], e = two_sum(bh[i], dyv)
            bl[i] += e


@pjit
def _affine_lanes(dy, x, stats, P, Q, acc, block):
    """The affine sums of :func:`~refnorm.ops._sets._affine_sets` with one
    parameter per position (``T == 1``, ``S == Q``): the same jobs, the
    parameters of a job summed as vectors (:func:`_affine_rows`), a few rows
    at a time, in the same order (rows ascending)."""
    A, B, S = x.shape
    period = stats.shape[1]
    qblk = max(1, block)
    nblk = (Q + qblk - 1) // qblk
    for job in prange(P * nblk):
        p, q0, q1, k0 = _affine_job(job, nblk, qblk, Q)
        nq = q1 - q0
        wh, wl, bh, bl = _affine_accumulators(acc, k0, nq)
        xf = x.reshape(x.size)
        dyf = dy.reshape(dy.size)
        # accumulators that fit in L1 are updated row by row (the rows then stream in
        # order); larger ones once per group of rows (fewer trips to L2)
        group = 1 if 4 * nq * 8 <= 32768 else _AFFINE_ROWS
        offs = np.empty(_AFFINE_ROWS, np.intp)
        cols = np.empty(_AFFINE_ROWS, np.intp)
        nr = 0
        for a in range(A):
            for b in range(p, B, P):
                offs[nr] = (a * B + b) * S
                cols[nr] = b % period
                nr += 1
                if nr == group:
                    _affine_rows(dyf, xf, offs, cols, stats, nr, q0, q1, wh, wl, bh, bl)
                    nr = 0
        _affine_rows(dyf, xf, offs, cols, stats, nr, q0, q1, wh, wl, bh, bl)
        _affine_store(acc, k0, wh, wl, bh, bl)
