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
Every sum is accumulated by one thread in one fixed order: the elements of a
reduction set in ascending ``(a, s)``, the terms of ``dweight[k]``/``dbias[k]``
in ascending ``(a, b, s)``.  ``prange`` only distributes *whole* sums (blocks
of reduction sets, blocks of affine parameters), never parts of one, so the
results are bitwise identical for any number of threads -- and identical to
the straightforward one-set-at-a-time loops that the lane kernels below
replaced (still used, as :func:`_moments_sets`, for arrays that are not
C-contiguous).

Speed: lanes
------------
A compensated sum is a chain of dependent additions: one set at a time, it
runs at the latency of an addition, far below the throughput of the vector
units.  The reductions therefore advance ``LANES`` (8) *independent* sets in
lockstep, one per lane of an 8-wide vector (``f64x8`` in
:mod:`refnorm.ops._dd`): the sets ``b0 .. b0 + 7`` are transposed ``CHUNK``
positions at a time into a tile ``buf[k * LANES + l]`` (element ``s0 + k`` of
lane/set ``l``) by :func:`_transpose8`, an 8 x 8 register transpose written as
LLVM shuffles, and the lane loops (:func:`_lanes_sum`, :func:`_lanes_m2`,
:func:`_lanes_grad`) apply the operations of the scalar code to all eight
lanes at once -- each lane performs exactly the scalar operations in the
scalar order, so not a single rounding changes.  The elementwise passes
(``y``, ``dx``: :func:`_y_run`, :func:`_dx_run`) and the per-position affine
sums of LayerNorm (:func:`_affine_rows`) need no transposition: eight
consecutive positions are eight independent values.

Cache: the passes over one block of sets run back to back (statistics, then
``y``; statistics, the sums of the backward, ``dx``), and when the block is
small enough (:data:`KEEP_POSITIONS`) its transposed tiles are kept for the
later passes.  Outputs larger than the last-level cache are written with
non-temporal stores (``stream``): the store does not first read the line.

No fastmath anywhere: vectorising independent lanes needs no reassociation,
and every FMA is an explicit one (``two_prod``).

NaN bits: IEEE 754 does not say which NaN ``a op b`` returns when both are
NaNs (x86 returns the first operand, and the compiler may commute ``*`` and
``+``).  :func:`~refnorm.ops._dd.dd_mul_round` picks the rstd operand's NaN
explicitly, so that a NaN/Inf input gives the same NaN bits whether a kernel
was compiled just now or loaded from the cache (before, the committed golden
corpus only verified with a warm cache).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import errors
from numba.core.extending import intrinsic

from ._dd import (LANES, dd_div_int, dd_mul_round, fast_two_sum, misalignment, renormalize, rsqrt_dd, two_prod,
                  two_sum, vdd_mul_round, vload, vsplat, vstore, vstore_stream, vtwo_prod)
from ._jit import jit, pjit, prange

# Modes of the input-gradient kernel.
MODE_BATCH_STATS = 0  # statistics are functions of x: both c1 and c2 terms
MODE_RMS = 1  # no centring: only the c2 term (RMSNorm)
MODE_CONST_STATS = 2  # statistics are constants (running statistics): dx = rstd * g

#: Positions per transposed tile: the tile is CHUNK * LANES doubles (4 KiB, in L1).
CHUNK = 64
# Affine parameters one thread reduces at once in backward_affine (minimum).
_AFFINE_BLOCK = 64

# ----------------------------------------------------------------------------- the 8 x 8 transpose

_V8 = ir.VectorType(ir.DoubleType(), 8)


def _mask(idx):
    i32 = ir.IntType(32)
    return ir.Constant(ir.VectorType(i32, len(idx)), [ir.Constant(i32, i) for i in idx])


_UNPACK_LO = _mask([0, 8, 2, 10, 4, 12, 6, 14])
_UNPACK_HI = _mask([1, 9, 3, 11, 5, 13, 7, 15])
_PAIRS_LO = _mask([0, 1, 8, 9, 4, 5, 12, 13])
_PAIRS_HI = _mask([2, 3, 10, 11, 6, 7, 14, 15])
_QUADS_LO = _mask([0, 1, 2, 3, 8, 9, 10, 11])
_QUADS_HI = _mask([4, 5, 6, 7, 12, 13, 14, 15])


@intrinsic
def _transpose8(typingctx, src, i0, lds, dst, j0, ldd):
    """``dst[j0 + k * ldd + l] = src[i0 + l * lds + k]`` for ``k, l < 8``.

    ``src`` and ``dst`` are C-contiguous float64 arrays addressed as flat
    memory.  Eight 8-wide loads, the 24 shuffles of a 3-stage transpose
    network, eight 8-wide stores: pure data movement (no arithmetic).
    """
    for arr in (src, dst):
        if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
            raise errors.TypingError(f"_transpose8 needs C-contiguous float64 arrays, got {arr}")
    sig = types.void(src, types.intp, types.intp, dst, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        sa = context.make_array(signature.args[0])(context, builder, args[0])
        da = context.make_array(signature.args[3])(context, builder, args[3])
        _, i0, lds, _, j0, ldd = args
        intp = i0.type

        def vec_ptr(data, base, stride, i):
            off = builder.add(base, builder.mul(stride, ir.Constant(intp, i)))
            return builder.bitcast(builder.gep(data, [off]), _V8.as_pointer())

        rows = [builder.load(vec_ptr(sa.data, i0, lds, r), align=8) for r in range(8)]
        shuf = builder.shuffle_vector
        # stage 1: interleave rows pairwise -> a[2m] holds even columns, a[2m+1] odd ones
        a = []
        for r in range(0, 8, 2):
            a += [shuf(rows[r], rows[r + 1], _UNPACK_LO), shuf(rows[r], rows[r + 1], _UNPACK_HI)]
        # stage 2: pairs of 2 -> b[c] (c < 4: rows 0-3, c >= 4: rows 4-7) holds columns c, c + 4
        b = [None] * 8
        for h in (0, 4):
            b[h + 0] = shuf(a[h + 0], a[h + 2], _PAIRS_LO)
            b[h + 2] = shuf(a[h + 0], a[h + 2], _PAIRS_HI)
            b[h + 1] = shuf(a[h + 1], a[h + 3], _PAIRS_LO)
            b[h + 3] = shuf(a[h + 1], a[h + 3], _PAIRS_HI)
        # stage 3: halves of 4 -> column k of all 8 rows
        cols = [None] * 8
        for k in range(4):
            cols[k] = shuf(b[k], b[k + 4], _QUADS_LO)
            cols[k + 4] = shuf(b[k], b[k + 4], _QUADS_HI)
        for k in range(8):
            builder.store(cols[k], vec_ptr(da.data, j0, ldd, k), align=8)
        return context.get_dummy_value()

    return sig, codegen



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

@jit
def _gather(xf, base, S, nl, s0, kn, buf, o):
    """Transpose one tile: ``buf[o + k * LANES + l] = xf[base + l * S + s0 + k]``
    for ``k < kn``, ``l < nl`` (lane l is the row starting at ``base + l * S``);
    lanes ``nl <= l < LANES`` are zero-filled."""
    l8 = nl - nl % 8
    k8 = kn - kn % 8
    for l0 in range(0, l8, 8):
        for k0 in range(0, k8, 8):
            _transpose8(xf, base + l0 * S + s0 + k0, S, buf, o + k0 * LANES + l0, LANES)
        for k in range(k8, kn):
            for l in range(l0, l0 + 8):
                buf[o + k * LANES + l] = xf[base + l * S + s0 + k]
    for l in range(l8, nl):
        for k in range(kn):
            buf[o + k * LANES + l] = xf[base + l * S + s0 + k]
    for k in range(kn):
        for l in range(nl, LANES):
            buf[o + k * LANES + l] = 0.0


# ----------------------------------------------------------------------------- elementwise pieces


@jit
def _xhat(xv, mh, ml, rh, rl):
    """xhat = ((x - mean_hi) - mean_lo) * rstd, rounded once."""
    d, de = two_sum(xv, -mh)
    return dd_mul_round(d, de - ml, rh, rl)


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
def _dx1(g, xv, mh, ml, rh, rl, c1, c2, mode):
    if mode == MODE_CONST_STATS:
        return rh * g
    xhat = _xhat(xv, mh, ml, rh, rl)
    # term 1: g; term 2: -c1 (mean path); term 3: -xhat*c2 (rstd path)
    return rh * ((g - c1) - xhat * c2)


@jit
def _dx_run(gf, xf, dxf, o, s0, s1, mh, ml, rh, rl, c1, c2, weight, kw, perpos, mode, stream):
    """``dx = rstd * ((g - c1) - xhat * c2)`` (``rstd * g`` for constant
    statistics), ``g = w * dy``, at the positions ``s0 .. s1 - 1`` of the row
    at flat offset ``o``; weights and stores as in :func:`_y_run`."""
    s = s0
    if stream:
        head = min(s1 - s0, (LANES - misalignment(dxf, o + s0)) % LANES)
        for t in range(s0, s0 + head):
            w = weight[kw + t] if perpos else weight[kw]
            dxf[o + t] = _dx1(w * gf[o + t], xf[o + t], mh, ml, rh, rl, c1, c2, mode)
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
        g = wv * vload(gf, o + s)
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
        dxf[o + t] = _dx1(w * gf[o + t], xf[o + t], mh, ml, rh, rl, c1, c2, mode)


# ----------------------------------------------------------------------------- lane reductions
#
# Each function advances the LANES sets of one tile ``buf[k * LANES + l]``
# (k < kn) by the steps of the scalar code, one vector operation for all
# lanes.  The running sums live in registers during the tile and in small
# arrays between tiles (``acc``: one row of LANES values per quantity).


@jit
def _xhat8(xv, mh, ml, rh, rl):
    """:func:`_xhat` lane by lane."""
    d, de = two_sum(xv, -mh)
    return vdd_mul_round(d, de - ml, rh, rl)


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
    formed exactly as ``d + d_lo`` (step (2) of :func:`_moments_sets`);
    ``lane[0], lane[1]`` = mean_hi, mean_lo."""
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
def _lanes_grad(xb, xo, gb, kn, wk, lane, sums, want_c1, want_c2, aff):
    """The sums of the backward for one tile (x at ``xb[xo:]``, dy at
    ``gb[0:]``): ``g = w * dy`` with
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
        dyv = vload(gb, k * L)
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

#: Largest block (A * S positions of LANES sets) kept transposed between passes: 512 KiB.
KEEP_POSITIONS = 8192


@jit
def _tile_buffer_size(A, S):
    """Doubles in the transposed-tile buffer of a block (see :func:`_block_stats`)."""
    return max(CHUNK, A * S if A * S <= KEEP_POSITIONS else 0) * LANES


@jit
def _keeps_block(xt, A, S):
    """Whether ``xt`` holds a whole block (``A * S`` positions) rather than one tile."""
    return A * S > 0 and xt.shape[0] >= A * S * LANES


@jit
def _block_stats(x, b0, nl, center, eps, xt, lane, mean, mean_lo, m2, m2_lo, rstd, rstd_lo):
    """Statistics of the sets ``b0 .. b0 + nl - 1``: the steps of
    :func:`_moments_sets`, lane-wise.  Writes the output arrays at ``b`` and
    the lane constants ``lane[0:4]``.

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
        mean[b] = lane[0, l]
        mean_lo[b] = lane[1, l]
        m2[b] = qh
        m2_lo[b] = ql
        # (3) rstd = 1 / sqrt(var + eps), var = m2 / n
        rh, rl = _rstd_of_m2(qh, ql, n, eps)
        rstd[b] = rh
        rstd_lo[b] = rl
        lane[2, l] = rh
        lane[3, l] = rl


@jit
def _block_grad(dy, x, b0, nl, lane, weight, P, Q, T, mode, xt, x_kept, gb, aff, c1, c2):
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
    gf = dy.reshape(dy.size)
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
                _gather(gf, base, S, nl, s0, kn, gb, 0)
                affq = aff[q].reshape(4 * LANES) if affine else none
                _lanes_grad(xt, xo, gb, kn, wk, lane, sums, with_sums and mode == MODE_BATCH_STATS, with_sums, affq)
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
    gf = dy.reshape(dy.size)
    dxf = dx.reshape(dx.size)
    for a in range(A):
        for l in range(nl):
            b = b0 + l
            o = (a * B + b) * S
            p = b % P
            if T == 1:
                _dx_run(gf, xf, dxf, o, 0, S, lane[0, l], lane[1, l], lane[2, l], lane[3, l], c1[l], c2[l],
                        weight, p * Q, True, mode, stream)
            else:
                for q in range(Q):
                    _dx_run(gf, xf, dxf, o, q * T, (q + 1) * T, lane[0, l], lane[1, l], lane[2, l], lane[3, l],
                            c1[l], c2[l], weight, p * Q + q, False, mode, stream)


# ----------------------------------------------------------------------------- the kernels


@pjit
def _moments_sets(x, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo):
    """:func:`moments` one set at a time (any memory layout)."""
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
        rh, rl = _rstd_of_m2(qh, ql, n, eps)
        rstd[b] = rh
        rstd_lo[b] = rl


@pjit
def _moments_lanes(x, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo):
    """:func:`moments` for a C-contiguous ``x``, LANES sets per block."""
    A, B, S = x.shape
    for blk in prange((B + LANES - 1) // LANES):
        b0 = blk * LANES
        xt = np.empty(_tile_buffer_size(A, S))
        lane = np.empty((5, LANES))
        _block_stats(x, b0, min(LANES, B - b0), center, eps, xt, lane, mean, mean_lo, m2, m2_lo, rstd, rstd_lo)


def moments(x, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo):
    """Statistics of every reduction set of ``x`` (A, B, S), in double-double.

    Writes, for each b: ``mean`` (+ ``mean_lo``; zero when ``center`` is
    False), the centred sum of squares ``m2`` (+ ``m2_lo``) and
    ``rstd = 1 / sqrt(m2 / n + eps)`` (+ ``rstd_lo``).  The same bits for any
    memory layout of ``x`` (lane-wise when it is C-contiguous).
    """
    kernel = _moments_lanes if x.flags.c_contiguous else _moments_sets
    kernel(x, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo)


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


@pjit
def _forward(x, mean, mean_lo, rstd, rstd_lo, stats_period, weight, bias, P, Q, T, y, stream):
    A, B, S = x.shape
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for b in prange(B):
        j = b % stats_period
        for a in range(A):
            _row_forward(xf, yf, (a * B + b) * S, b % P, mean[j], mean_lo[j], rstd[j], rstd_lo[j], weight, bias,
                         Q, T, stream)


def forward(x, mean, mean_lo, rstd, rstd_lo, stats_period, weight, bias, P, Q, T, y, stream=False):
    """``y = weight[k] * xhat + bias[k]`` with ``k = (b % P) * Q + s // T``.

    The statistics of set ``b`` are ``mean[b % stats_period]`` etc.
    (``stats_period == B`` for batch statistics; ``C`` when InstanceNorm uses
    per-channel running statistics).  ``stream``: write ``y`` with
    non-temporal stores (for outputs larger than the caches).  Any memory
    layout; the kernel itself works on C-contiguous arrays.
    """
    x, weight, bias = (np.ascontiguousarray(v) for v in (x, weight, bias))
    target = y if y.flags.c_contiguous else np.empty(y.shape)
    _forward(x, mean, mean_lo, rstd, rstd_lo, stats_period, weight, bias, P, Q, T, target, stream)
    if target is not y:
        y[...] = target


@pjit
def normalize(x, center, eps, weight, bias, P, Q, T, y, mean, mean_lo, m2, m2_lo, rstd, rstd_lo, stream):
    """:func:`moments` and :func:`forward` fused (C-contiguous arrays, batch
    statistics): for each block of LANES sets, the statistics, then ``y``
    while the block is still in cache."""
    A, B, S = x.shape
    xf = x.reshape(x.size)
    yf = y.reshape(y.size)
    for blk in prange((B + LANES - 1) // LANES):
        b0 = blk * LANES
        nl = min(LANES, B - b0)
        xt = np.empty(_tile_buffer_size(A, S))
        lane = np.empty((5, LANES))
        _block_stats(x, b0, nl, center, eps, xt, lane, mean, mean_lo, m2, m2_lo, rstd, rstd_lo)
        for a in range(A):
            for b in range(b0, b0 + nl):
                l = b - b0
                _row_forward(xf, yf, (a * B + b) * S, b % P, lane[0, l], lane[1, l], lane[2, l], lane[3, l],
                             weight, bias, Q, T, stream)


@pjit
def backward_sets(dy, x, fresh, center, eps, mean, mean_lo, m2, m2_lo, rstd, rstd_lo, weight, P, Q, T, mode,
                  dx, dweight, dbias, stream):
    """Input gradient (and, if ``dweight`` has P * Q entries, the affine
    gradients) for C-contiguous ``dy`` and ``x``, one block of LANES sets at a
    time, with the formulas of :func:`backward_input`.

    ``fresh``: the batch statistics are computed here, as :func:`moments`
    would (into ``mean`` ... ``rstd_lo``, one entry per set), while the block
    is in cache; otherwise they are read, ``mean[b % period]`` etc.
    ``stream``: write ``dx`` with non-temporal stores.

    Blocks: without affine gradients, LANES consecutive sets; with them,
    LANES consecutive parameter groups ``p`` and, for each, the sets
    ``b = j * P + p`` in ascending j, so that ``dweight[k]`` is summed by one
    thread in ascending ``(b, s)`` -- the order of :func:`backward_affine`
    when ``A == 1`` or ``B == P`` (the caller's condition for fusing).
    """
    A, B, S = x.shape
    period = mean.shape[0]
    affine = dweight.shape[0] > 0
    nsets = P if affine else B
    reps = (B // P if P > 0 else 0) if affine else 1
    for blk in prange((nsets + LANES - 1) // LANES):
        p0 = blk * LANES
        nl = min(LANES, nsets - p0)
        xt = np.empty(_tile_buffer_size(A, S))
        gbuf = np.empty(CHUNK * LANES)
        lane = np.zeros((5, LANES))
        c1 = np.empty(LANES)
        c2 = np.empty(LANES)
        aff = np.zeros((Q if affine else 0, 4, LANES))
        for j in range(reps):
            b0 = j * P + p0 if affine else p0
            if fresh:
                _block_stats(x, b0, nl, center, eps, xt, lane, mean, mean_lo, m2, m2_lo, rstd, rstd_lo)
            else:
                for l in range(nl):
                    i = (b0 + l) % period
                    lane[0, l] = mean[i]
                    lane[1, l] = mean_lo[i]
                    lane[2, l] = rstd[i]
                    lane[3, l] = rstd_lo[i]
            _block_grad(dy, x, b0, nl, lane, weight, P, Q, T, mode, xt, fresh and _keeps_block(xt, A, S), gbuf, aff,
                        c1, c2)
            _block_dx(dy, x, dx, b0, nl, lane, weight, P, Q, T, mode, c1, c2, stream)
        if affine:
            for q in range(Q):
                for l in range(nl):
                    k = (p0 + l) * Q + q
                    dweight[k] = aff[q, 0, l] + aff[q, 1, l]
                    dbias[k] = aff[q, 2, l] + aff[q, 3, l]


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

    This is the readable form, one reduction set at a time (any memory
    layout); :func:`backward_sets` computes the same bits lane-wise and is what
    the ops call.
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


@jit
def _affine_rows(dyf, xf, offs, stats, nr, s0, s1, wh, wl, bh, bl):
    """Add ``dy * xhat`` and ``dy`` of positions ``s0 .. s1 - 1`` of ``nr`` rows
    (flat offsets ``offs``, statistics ``stats[r] = mean_hi, mean_lo,
    rstd_hi, rstd_lo``), in row order, into the per-position Sum2 accumulators
    ``wh/wl`` (dweight) and ``bh/bl`` (dbias), indexed ``s - s0``.  Eight
    positions per vector; each accumulator is read and written once per
    group of rows."""
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
            g = vload(dyf, o)
            xhat = _xhat8(vload(xf, o), vsplat(stats[r, 0]), vsplat(stats[r, 1]), vsplat(stats[r, 2]),
                          vsplat(stats[r, 3]))
            vwh, e = two_sum(vwh, g * xhat)
            vwl = vwl + e
            vbh, e = two_sum(vbh, g)
            vbl = vbl + e
        vstore(wh, i, vwh)
        vstore(wl, i, vwl)
        vstore(bh, i, vbh)
        vstore(bl, i, vbl)
    for i in range(nv, n):
        for r in range(nr):
            o = offs[r] + s0 + i
            g = dyf[o]
            xhat = _xhat(xf[o], stats[r, 0], stats[r, 1], stats[r, 2], stats[r, 3])
            wh[i], e = two_sum(wh[i], g * xhat)
            wl[i] += e
            bh[i], e = two_sum(bh[i], g)
            bl[i] += e


def affine_block(Q, T, threads):
    """The number of parameters per job of :func:`backward_affine`: with one
    parameter per position (``T == 1``), one wide block per thread, so that a
    job streams long row segments; else ``_AFFINE_BLOCK``."""
    if T != 1:
        return _AFFINE_BLOCK
    return max(_AFFINE_BLOCK, -(-Q // (threads * LANES)) * LANES)


#: Rows whose terms are added to one group of accumulators at a time in backward_affine.
_AFFINE_ROWS = 4


@pjit
def backward_affine(dy, x, mean, mean_lo, rstd, rstd_lo, stats_period, P, Q, T, acc, block):
    """``dweight[k] = sum dy * xhat`` and ``dbias[k] = sum dy`` over all elements
    with affine index k, compensated, summed in the order (a, b, s) ascending.

    The Sum2 accumulators are ``acc[0] + acc[1]`` (dweight) and
    ``acc[2] + acc[3]`` (dbias), shape (4, P * Q): the sums continue from what
    they hold, so consecutive bands of sets (``x[:, b0:b1]``, b ascending, when
    ``A == 1``) give the bits of one call over all of them;
    :func:`affine_result` rounds them to ``dweight``, ``dbias``.

    Parallel over (p, block of ``block`` consecutive q): each affine parameter
    is reduced by exactly one thread, so the result depends neither on the
    thread count nor on ``block`` (which only shapes the work: see
    :func:`affine_block`).  With one parameter per
    position (``T == 1``) the parameters of a block are summed as vectors
    (:func:`_affine_rows`), a few rows at a time.
    """
    A, B, S = x.shape
    qblk = max(1, block)
    nblk = (Q + qblk - 1) // qblk
    for job in prange(P * nblk):
        p = job // nblk
        q0 = (job % nblk) * qblk
        q1 = min(q0 + qblk, Q)
        nq = q1 - q0
        k0 = p * Q + q0
        wh = acc[0, k0:k0 + nq].copy()
        wl = acc[1, k0:k0 + nq].copy()
        bh = acc[2, k0:k0 + nq].copy()
        bl = acc[3, k0:k0 + nq].copy()
        if T == 1:
            xf = x.reshape(x.size)
            dyf = dy.reshape(dy.size)
            # accumulators that fit in L1 are updated row by row (the rows then stream in
            # order); larger ones once per group of rows (fewer trips to L2)
            group = 1 if 4 * nq * 8 <= 32768 else _AFFINE_ROWS
            offs = np.empty(_AFFINE_ROWS, np.intp)
            stats = np.empty((_AFFINE_ROWS, 4))
            nr = 0
            for a in range(A):
                for b in range(p, B, P):
                    j = b % stats_period
                    offs[nr] = (a * B + b) * S
                    stats[nr, 0] = mean[j]
                    stats[nr, 1] = mean_lo[j]
                    stats[nr, 2] = rstd[j]
                    stats[nr, 3] = rstd_lo[j]
                    nr += 1
                    if nr == group:
                        _affine_rows(dyf, xf, offs, stats, nr, q0, q1, wh, wl, bh, bl)
                        nr = 0
            _affine_rows(dyf, xf, offs, stats, nr, q0, q1, wh, wl, bh, bl)
        else:
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
        acc[0, k0:k0 + nq] = wh
        acc[1, k0:k0 + nq] = wl
        acc[2, k0:k0 + nq] = bh
        acc[3, k0:k0 + nq] = bl


@pjit
def affine_result(acc, dweight, dbias):
    """``dweight = acc[0] + acc[1]``, ``dbias = acc[2] + acc[3]``, each rounded
    once (the end of :func:`backward_affine`'s Sum2)."""
    for k in prange(dweight.shape[0]):
        dweight[k] = acc[0, k] + acc[1, k]
        dbias[k] = acc[2, k] + acc[3, k]


__all__ = [
    "CHUNK",
    "LANES",
    "MODE_BATCH_STATS",
    "MODE_CONST_STATS",
    "MODE_RMS",
    "affine_result",
    "backward_affine",
    "backward_input",
    "backward_sets",
    "divide_m2",
    "fast_two_sum",
    "forward",
    "moments",
    "normalize",
    "rstd_of_var",
]
