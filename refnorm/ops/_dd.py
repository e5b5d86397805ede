"""Error-free transformations and double-double helpers used by every kernel.

refnorm's kernels compute in float64, but the *statistics* of a reduction set
(mean, variance, rstd) and every reduction of the backward are carried in
double-double form ``hi + lo`` (an unevaluated sum of two doubles), so that the
only roundings that reach an output are the few elementwise ones.  The building
blocks are the classic error-free transformations:

``two_sum(a, b)``       s + e == a + b exactly           (Knuth, 6 flops)
``fast_two_sum(a, b)``  the same when |a| >= |b|          (Dekker, 3 flops)
``two_prod(a, b)``      p + e == a * b exactly            (FMA, 2 flops)

and the compensated sum of Ogita, Rump & Oishi ("Accurate sum and dot product",
SIAM J. Sci. Comput. 26(6), 2005, Algorithm 4.4 ``Sum2``, a.k.a. Kahan-Babuska /
Neumaier summation): the running sum ``hi`` is updated with ``two_sum`` and the
rounding errors are added into ``lo``.  Its result satisfies

    |(hi + lo) - S| <= u |S| + gamma_{n-1}^2 * sum |x_i|,  gamma_k = k u / (1 - k u),

with u = 2^-53: "as accurate as if computed in twice the working precision, then
rounded".  For the reduction lengths of normalization layers (n < 2^30) the
second term is below 2^-46 * u * sum |x_i|, so each reduction is within about
half an ulp of the exact sum of its (rounded) terms.  The order of accumulation
is fixed by the caller's loop, so the result is deterministic.

``two_prod`` uses a true fused multiply-add, exposed through the LLVM intrinsic
``llvm.fma.f64`` (always fused; on a CPU without FMA, LLVM emits a correctly
rounded software routine), so it is exact on every machine.  This is not
"fastmath": an FMA is written explicitly where an exact product error is wanted,
and nowhere else.

This module is the scalar arithmetic; the 8-wide vector type the lane kernels
use, and the lane-wise twins of ``two_prod`` and ``dd_mul_round``, are in
:mod:`refnorm.ops._simd`.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

from ._jit import jit


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with a single rounding (LLVM ``llvm.fma.f64``)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)

    return sig, codegen


@jit
def two_sum(a, b):
    """Knuth's TwoSum: ``s = fl(a + b)`` and ``e`` with ``s + e == a + b`` exactly."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@jit
def fast_two_sum(a, b):
    """Dekker's FastTwoSum; exact when ``|a| >= |b|`` (or a == 0)."""
    s = a + b
    e = b - (s - a)
    return s, e


@jit
def two_prod(a, b):
    """``p = fl(a * b)`` and ``e`` with ``p + e == a * b`` exactly (barring underflow)."""
    p = a * b
    e = fma(a, b, -p)
    return p, e


@jit
def renormalize(hi, lo):
    """Return ``(s, e)`` with ``s = fl(hi + lo)`` and ``s + e == hi + lo``.

    Non-finite ``hi`` (an Inf or NaN that entered the reduction) is passed
    through with ``e = 0`` so that it is not turned into NaN by ``inf - inf``.
    """
    if not math.isfinite(hi):
        return hi, 0.0
    s = hi + lo
    if not math.isfinite(s):
        return s, 0.0
    return two_sum(hi, lo)


@jit
def dd_div_int(hi, lo, n):
    """The double-double quotient ``(hi + lo) / n`` for a positive integer ``n``.

    q = fl(S / n) is the first approximation; the remainder ``S - q n`` is
    exact (``two_prod`` gives ``q n`` exactly and ``hi - p`` cancels exactly by
    Sterbenz' lemma), so ``q + r`` is the quotient to about u^2 relative.
    """
    s, e = renormalize(hi, lo)
    d = float(n)
    q = s / d
    if not math.isfinite(q):
        return q, 0.0
    p, pe = two_prod(q, d)
    r = ((s - p) - pe + e) / d
    return fast_two_sum(q, r)


@jit
def sub_dd_round(a, b_hi, b_lo):
    """``a - (b_hi + b_lo)`` rounded once: ``a`` centred on a double-double
    ``b`` (a mean), accurate to ~u^2 |b| even where ``a ~ b``."""
    d, de = two_sum(a, -b_hi)
    return d + (de - b_lo)


@jit
def rsqrt_dd(v_hi, v_lo):
    """``1 / sqrt(v)`` of a double-double ``v``, to about u^2 relative.

    r0 = 1/sqrt(v_hi) is within about 1 ulp.  One Newton step for
    f(r) = r^-2 - v, written as r = r0 + r0 * (1 - v r0^2) / 2, removes that
    error; the residual ``1 - v r0^2`` (of size ~u) is computed without
    cancellation error from exact products.  Zero, negative, infinite and NaN
    arguments return ``1/sqrt(v_hi)`` as IEEE arithmetic gives it (inf, NaN, 0,
    NaN) with a zero low part.
    """
    if not (v_hi > 0.0) or not math.isfinite(v_hi):
        if v_hi == 0.0:
            return math.inf, 0.0
        if v_hi > 0.0:  # +inf
            return 0.0, 0.0
        return math.nan, 0.0
    r0 = 1.0 / math.sqrt(v_hi)
    a, ae = two_prod(r0, r0)  # r0^2 = a + ae exactly
    b, be = two_prod(v_hi, a)  # v_hi * a = b + be exactly
    # residual 1 - (v_hi + v_lo)(a + ae); 1 - b is exact (b is within ulps of 1)
    res = (1.0 - b) - be - v_hi * ae - v_lo * a
    return fast_two_sum(r0, 0.5 * r0 * res)


@jit
def dd_mul_round(a_hi, a_lo, b_hi, b_lo):
    """``fl((a_hi + a_lo) * (b_hi + b_lo))``: the product of two double-doubles,
    rounded once to a double (error <= 0.5 ulp + O(u^2) relative)."""
    p, pe = two_prod(a_hi, b_hi)
    if not math.isfinite(p):
        # A NaN b_hi is the NaN returned, explicitly: when a_hi is a NaN too,
        # IEEE 754 leaves the choice of a_hi's or b_hi's NaN (sign, payload) to
        # the hardware, and the compiler may swap the operands of a_hi * b_hi,
        # so the bits would depend on the compilation.
        return b_hi if b_hi != b_hi else p
    return p + (pe + (a_hi * b_lo + a_lo * b_hi))


__all__ = ["dd_div_int", "dd_mul_round", "fast_two_sum", "fma", "renormalize", "rsqrt_dd", "two_prod",
           "two_sum"]
