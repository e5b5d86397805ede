"""The kernels of :mod:`refnorm.ops._sets`, eight reduction sets at a time.

This is the second level of reading: the same operations in the same order
as the one-set loops of :mod:`refnorm.ops._sets` (same statistics array, same
notation), arranged for speed.  Not a single rounding differs.

Lanes
-----
A compensated sum is a chain of dependent additions: one set at a time, it
runs at the latency of an addition, far below the throughput of the vector
units.  The reductions therefore advance ``LANES`` (8) *independent* sets in
lockstep, one per lane of an 8-wide vector (``f64x8`` in
:mod:`refnorm.ops._simd`): the sets ``b0 .. b0 + 7`` are transposed ``CHUNK``
positions at a time into a tile ``buf[k * LANES + l]`` (element ``s0 + k`` of
lane/set ``l``) by :func:`~refnorm.ops._simd.transpose8`, an 8 x 8 register
transpose written as LLVM shuffles, and the lane loops (:func:`_lanes_sum`,
:func:`_lanes_m2`, :func:`_lanes_grad`) apply the operations of the scalar code
to all eight lanes at once -- each lane performs exactly the scalar operations
in the scalar order, so not a single rounding changes.  The elementwise passes
(``y``, ``dx``) and the per-position affine sums of LayerNorm need no
transposition: eight consecutive positions are eight independent values
(:mod:`refnorm.ops._runs`).

Cache: the passes over one block of sets run back to back (statistics, then
``y``; statistics, the sums of the backward, ``dx``), and when the block is
small enough (:data:`KEEP_POSITIONS`) its transposed tiles are kept for the
later passes.  Outputs larger than the last-level cache are written with
non-temporal stores (``stream``): the store does not first read the line.

No fastmath: vectorising independent lanes needs no reassociation, and every
FMA is an explicit one (``vtwo_prod``).  Determinism: ``prange`` distributes
whole blocks of sets (or of affine parameters), so the bits do not depend on
the number of threads.
"""

from __future__ import annotations

import numpy as np

from ._dd import dd_div_int, renormalize, two_sum
from ._jit import jit, pjit, prange
from ._runs import _dx_run, _row_forward, _xhat8
from ._sets import M2, M2_LO, MEAN, MEAN_LO, MODE_BATCH_STATS, MODE_CONST_STATS, RSTD, RSTD_LO, _rstd_of_m2
from ._simd import LANES, transpose8, vload, vsplat, vstore, vtwo_prod

#: Positions per transposed tile: the tile is CHUNK * LANES doubles (4 KiB, in L1).
CHUNK = 64
#: Largest block (A * S positions of LANES sets) kept transposed between passes: 512 KiB.
KEEP_POSITIONS = 8192


@jit
def _gather(xf, base, S, nl, s0, kn, buf, o):
    """Transpose one tile: ``buf[o + k * LANES + l] = xf[base + l * S + s0 + k]``
    for ``k < kn``, ``l < nl`` (lane l is the row starting at ``base + l * S``);
    lanes ``nl <= l < LANES`` are zero-filled."""
    l8 = nl - nl % 8
    k8 = kn - kn % 8
    for l0 in range(0, l8, 8):
        for k0 in range(0, k8, 8):
            transpose8(xf, base + l0 * S + s0 + k0, S, buf, o + k0 * LANES + l0, LANES)
        for k in range(k8, kn):
            for l in range(l0, l0 + 8):
                buf[o + k * LANES + l] = xf[base + l * S + s0 + k]
    for l in range(l8, nl):
        for k in range(kn):
            buf[o + k * LANES + l] = xf[base + l * S + s0 + k]
    for k in range(kn):
        for l in range(nl, LANES):
            buf[o + k * LANES + l] = 0.0


# ----------------------------------------------------------------------------- lane reductions
#
# Each function advances the LANES sets of one tile ``buf[k * LANES + l]``
# (k < kn) by the steps of the scalar code, one vector operation for all
# lanes.  The running sums live in registers during the tile and in small
# arrays between tiles (``acc``: one row of LANES values per quantity).


@jit
def _lanes_sum(buf, o, kn, acc):
    """``acc[0] + acc[1] += sum_k buf[o + k * LANES + :]`` (Sum2)."""
    sh = vload(acc, 0)
    sl = vload(acc, LANES)
    for k in range(kn):
        sh, e = two_sum(sh, vload(buf, o + k * LANES))
        sl = sl + e
    vstore(acc, 0, sh)
    vstore(acc, LANES, sl)


@jit
def _lanes_m2(buf, o, kn, lane, acc):
    """``acc[0] + acc[1] += sum_k xc^2`` with ``xc = (x - mean_hi) - mean_lo``
    formed exactly as ``d + d_lo`` (step (2) of
    :func:`~refnorm.ops._sets._moments_sets`); ``lane[0], lane[1]`` = mean_hi,
    mean_lo."""
    mh = vload(lane, 0)
    ml = vload(lane, LANES)
    two = vsplat(2.0)
    qh = vload(acc, 0)
    ql = vload(acc, LANES)
    for k in range(kn):
        d, de = two_sum(vload(buf, o + k * LANES), -mh)
        d_lo = de - ml
        p, pe = vtwo_prod(d, d)
        qh, e = two_sum(qh, p)
        ql = ql + (e + pe + (two * d + d_lo) * d_lo)  # (d + d_lo)^2 - d^2
    vstore(acc, 0, qh)
    vstore(acc, LANES, ql)


@jit
def _lanes_grad(xb, xo, dyb, kn, wk, lane, sums, want_c1, want_c2, aff):
    """The sums of the backward for one tile (x at ``xb[xo:]``, dy at
    ``dyb[0:]``): ``g = w * dy`` with
    ``w = wk[k]`` (one parameter per position) when ``wk`` is not empty, else
    ``lane[4]`` (one per lane); ``sums[0:2] += g`` (if ``want_c1``),
    ``sums[2:4] += g * xhat`` (if ``want_c2``); when ``aff`` is not empty, the
    affine sums ``aff[0:2] += dy * xhat`` and ``aff[2:4] += dy`` (alone, with
    neither sum wanted, for constant statistics).
    ``lane[0:4]`` = mean_hi, mean_lo, rstd_hi, rstd_lo."""
    L = LANES
    mh = vload(lane, 0)
    ml = vload(lane, L)
    rh = vload(lane, 2 * L)
    rl = vload(lane, 3 * L)
    wl = vload(lane, 4 * L)
    wpos = wk.shape[0] > 0
    affine = aff.shape[0] > 0
    s1h = vload(sums, 0)
    s1l = vload(sums, L)
    s2h = vload(sums, 2 * L)
    s2l = vload(sums, 3 * L)
    awh = vload(aff, 0) if affine else s1h
    awl = vload(aff, L) if affine else s1h
    abh = vload(aff, 2 * L) if affine else s1h
    abl = vload(aff, 3 * L) if affine else s1h
    for k in range(kn):
        dyv = vload(dyb, k * L)
        w = vsplat(wk[k]) if wpos else wl
        g = w * dyv
        xhat = _xhat8(vload(xb, xo + k * L), mh, ml, rh, rl)
        if want_c1:
            s1h, e = two_sum(s1h, g)
            s1l = s1l + e
        if want_c2:
            s2h, e = two_sum(s2h, g * xhat)
            s2l = s2l + e
        if affine:
            awh, e = two_sum(awh, dyv * xhat)
            awl = awl + e
            abh, e = two_sum(abh, dyv)
            abl = abl + e
    vstore(sums, 0, s1h)
    vstore(sums, L, s1l)
    vstore(sums, 2 * L, s2h)
    vstore(sums, 3 * L, s2l)
    if affine:
        vstore(aff, 0, awh)
        vstore(aff, L, awl)
        vstore(aff, 2 * L, abh)
        vstore(aff, 3 * L, abl)


# ----------------------------------------------------------------------------- one block of sets
#
# A block is the sets b0 .. b0 + nl - 1 (nl <= LANES; lanes >= nl compute on
# zeros and are never stored).  ``lane`` holds the per-lane constants as rows
# of LANES values: 0 mean_hi, 1 mean_lo, 2 rstd_hi, 3 rstd_lo, 4 weight.


@jit
def _tile_buffer_size(A, S):
    """Doubles in the transposed-tile buffer of a block (see :func:`_block_stats`)."""
    return max(CHUNK, A * S if A * S <= KEEP_POSITIONS else 0) * LANES


@jit
def _keeps_block(xt, A, S):
    """Whether ``xt`` holds a whole block (``A * S`` positions) rather than one tile."""
    return A * S > 0 and xt.shape[0] >= A * S * LANES


@jit
def _block_stats(x, b0, nl, center, eps, xt, lane, stats):
    """Statistics of the sets ``b0 .. b0 + nl - 1``: the steps of
    :func:`~refnorm.ops._sets._moments_sets`, lane-wise.  Writes the columns
    ``b`` of ``stats`` and the lane constants ``lane[0:4]``.

    ``xt`` receives the transposed tiles: the whole block
    (``xt[(a * S + s) * LANES + l] = x[a, b0 + l, s]``) when it is large enough
    (:func:`_keeps_block`), so that step (2) and the caller's next pass read
    it from cache without transposing again; else one tile at a time.
    """
    A, B, S = x.shape
    xf = x.reshape(x.size)
    n = A * S
    keep = _keeps_block(xt, A, S)
    lane[:] = 0.0
    # (1) mean = sum(x) / n, compensated sum, double-double quotient
    acc = np.zeros(2 * LANES)
    if center and n > 0 or keep:
        for a in range(A):
            base = (a * B + b0) * S
            for s0 in range(0, S, CHUNK):
                kn = min(CHUNK, S - s0)
                o = (a * S + s0) * LANES if keep else 0
                _gather(xf, base, S, nl, s0, kn, xt, o)
                if center:
                    _lanes_sum(xt, o, kn, acc)
        if center and n > 0:
            for l in range(nl):
                lane[0, l], lane[1, l] = dd_div_int(acc[l], acc[LANES + l], n)
    # (2) m2 = sum(xc^2), xc = (x - mean_hi) - mean_lo = d + d_lo
    acc = np.zeros(2 * LANES)
    for a in range(A):
        base = (a * B + b0) * S
        for s0 in range(0, S, CHUNK):
            kn = min(CHUNK, S - s0)
            o = (a * S + s0) * LANES if keep else 0
            if not keep:
                _gather(xf, base, S, nl, s0, kn, xt, o)
            _lanes_m2(xt, o, kn, lane, acc)
    for l in range(nl):
        b = b0 + l
        qh, ql = renormalize(acc[l], acc[LANES + l])
        stats[MEAN, b] = lane[0, l]
        stats[MEAN_LO, b] = lane[1, l]
        stats[M2, b] = qh
        stats[M2_LO, b] = ql
        # (3) rstd = 1 / sqrt(var + eps), var = m2 / n
        rh, rl = _rstd_of_m2(qh, ql, n, eps)
        stats[RSTD, b] = rh
        stats[RSTD_LO, b] = rl
        lane[2, l] = rh
        lane[3, l] = rl


@jit
def _block_grad(dy, x, b0, nl, lane, weight, P, Q, T, mode, xt, x_kept, dyb, aff, c1, c2):
    """The sums of the backward for the sets ``b0 .. b0 + nl - 1`` (lane
    constants in ``lane[0:4]``): writes ``c1 = mean(g)`` and
    ``c2 = mean(g * xhat)`` per lane and, if ``aff`` has rows, adds the
    affine sums of lane l's parameter ``(p, q)`` into ``aff[q, :, l]``.

    One pass over the block, tile by tile.  A tile never straddles two
    parameters of a lane (two values of ``s // T``), except with one
    parameter per position (``T == 1, P == 1``), which all lanes share.
    ``x_kept``: ``xt`` holds the whole block transposed (left there by
    :func:`_block_stats`); else it is a tile buffer.
    """
    A, B, S = x.shape
    xf = x.reshape(x.size)
    dyf = dy.reshape(dy.size)
    n = A * S
    sums = np.zeros(4 * LANES)
    with_sums = mode != MODE_CONST_STATS and n > 0
    affine = aff.shape[0] > 0
    wpos = T == 1 and P == 1
    none = np.empty(0)
    if with_sums or affine:
        for a in range(A):
            base = (a * B + b0) * S
            s0 = 0
            while s0 < S:
                q = s0 // T
                if wpos:
                    kn = min(CHUNK, S - s0)
                    wk = weight[s0:s0 + kn]
                else:
                    kn = min(CHUNK, S - s0, (q + 1) * T - s0)
                    wk = none
                    for l in range(nl):
                        lane[4, l] = weight[((b0 + l) % P) * Q + q]
                xo = (a * S + s0) * LANES if x_kept else 0
                if not x_kept:
                    _gather(xf, base, S, nl, s0, kn, xt, xo)
                _gather(dyf, base, S, nl, s0, kn, dyb, 0)
                affq = aff[q].reshape(4 * LANES) if affine else none
                _lanes_grad(xt, xo, dyb, kn, wk, lane, sums, with_sums and mode == MODE_BATCH_STATS, with_sums,
                            affq)
                s0 += kn
    for l in range(nl):
        c1[l] = 0.0
        c2[l] = 0.0
        if with_sums:
            if mode == MODE_BATCH_STATS:
                c1h, c1l = dd_div_int(sums[l], sums[LANES + l], n)
                c1[l] = c1h + c1l
            c2h, c2l = dd_div_int(sums[2 * LANES + l], sums[3 * LANES + l], n)
            c2[l] = c2h + c2l


@jit
def _block_dx(dy, x, dx, b0, nl, lane, weight, P, Q, T, mode, c1, c2, stream):
    """The input gradient of the sets ``b0 .. b0 + nl - 1``, row by row."""
    A, B, S = x.shape
    xf = x.reshape(x.size)
    dyf = dy.reshape(dy.size)
    dxf = dx.reshape(dx.size)
    for a in range(A):
        for l in range(nl):
            b = b0 + l
            o = (a * B + b) * S
            p = b % P
            if T == 1:
                _dx_run(dyf, xf, dxf, o, 0, S, lane[0, l], lane[1, l], lane[2, l], lane[3, l], c1[l], c2[l],
                        weight, p * Q, True, mode, stream)
            else:
                for q in range(Q):
                    _dx_run(dyf, xf, dxf, o, q * T, (q + 1) * T, lane[0, l], lane[1, l], lane[2, l], lane[3, l],
                            c1[l], c2[l], weight, p * Q + q, False, mode, stream)


# ----------------------------------------------------------------------------- the kernels


@pjit
def _moments_lanes(x, center, eps, stats):
    """:func:`~refnorm.ops._kernels.moments` for a C-contiguous ``x``, LANES sets per block."""
    A, B, S = x.shape
    for blk in prange((B + LANES - 1) // LANES):
        b0 = blk * LANES
        xt = np.empty(_tile_buffer_size(A, S))
        lane = np.empty((5, LANES))
        _block_stats(x, b0, min(LANES, B - b0), center, eps, xt, lane, stats)


@pjit
def normalize(x, center, eps, weight, bias, P, Q, T, y, stats, stream):
    """:func:`~refnorm.ops._kernels.moments` and
    :func:`~refnorm.ops._kernels.forward` fused (C-contiguous arrays, batch
    statistics, written into ``stats``): for each block of LANES sets, the
    statistics, then ``y`` while the block is still in cache."""
    A, B, S = x.shape
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for blk in prange((B + LANES - 1) // LANES):
        b0 = blk * LANES
        nl = min(LANES, B - b0)
        xt = np.empty(_tile_buffer_size(A, S))
        lane = np.empty((5, LANES))
        _block_stats(x, b0, nl, center, eps, xt, lane, stats)
        for a in range(A):
            for b in range(b0, b0 + nl):
                l = b - b0
                _row_forward(xf, yf, (a * B + b) * S, b % P, lane[0, l], lane[1, l], lane[2, l], lane[3, l],
                             weight, bias, Q, T, stream)


@pjit
def backward_sets(dy, x, fresh, center, eps, stats, weight, P, Q, T, mode, dx, dweight, dbias, stream):
    """Input gradient (and, if ``dweight`` has P * Q entries, the affine
    gradients) for C-contiguous ``dy`` and ``x``, one block of LANES sets at a
    time, with the formulas of :func:`~refnorm.ops._sets.backward_input`.

    ``fresh``: the batch statistics are computed here, as
    :func:`~refnorm.ops._kernels.moments` would (into the columns of
    ``stats``, one per set), while the block is in cache; otherwise they are
    read, column ``b % stats.shape[1]``.  ``stream``: write ``dx`` with
    non-temporal stores.

    Blocks: without affine gradients, LANES consecutive sets; with them,
    LANES consecutive parameter groups ``p`` and, for each, the sets
    ``b = j * P + p`` in ascending j, so that ``dweight[k]`` is summed by one
    thread in ascending ``(b, s)`` -- the order of the affine sums of
    :func:`~refnorm.ops._kernels.backward_affine` when ``A == 1`` or
    ``B == P`` (the caller's condition for fusing).
    """
    A, B, S = x.shape
    period = stats.shape[1]
    affine = dweight.shape[0] > 0
    nsets = P if affine else B
    reps = (B // P if P > 0 else 0) if affine else 1
    for blk in prange((nsets + LANES - 1) // LANES):
        p0 = blk * LANES
        nl = min(LANES, nsets - p0)
        xt = np.empty(_tile_buffer_size(A, S) if fresh else CHUNK * LANES)  # saved statistics: one tile
        dybuf = np.empty(CHUNK * LANES)
        lane = np.zeros((5, LANES))
        c1 = np.empty(LANES)
        c2 = np.empty(LANES)
        aff = np.zeros((Q if affine else 0, 4, LANES))
        for j in range(reps):
            b0 = j * P + p0 if affine else p0
            if fresh:
                _block_stats(x, b0, nl, center, eps, xt, lane, stats)
            else:
                for l in range(nl):
                    i = (b0 + l) % period
                    lane[0, l] = stats[MEAN, i]
                    lane[1, l] = stats[MEAN_LO, i]
                    lane[2, l] = stats[RSTD, i]
                    lane[3, l] = stats[RSTD_LO, i]
            _block_grad(dy, x, b0, nl, lane, weight, P, Q, T, mode, xt, fresh and _keeps_block(xt, A, S), dybuf,
                        aff, c1, c2)
            _block_dx(dy, x, dx, b0, nl, lane, weight, P, Q, T, mode, c1, c2, stream)
        if affine:
            for q in range(Q):
                for l in range(nl):
                    k = (p0 + l) * Q + q
                    dweight[k] = aff[q, 0, l] + aff[q, 1, l]
                    dbias[k] = aff[q, 2, l] + aff[q, 3, l]
