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
"""

from __future__ import annotations

import math
import operator

from llvmlite import ir
from numba import types
from numba.core import cgutils, errors
from numba.core.datamodel import models
from numba.core.extending import intrinsic, overload, register_model

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


# ----------------------------------------------------------------------------- SIMD lanes
#
# The kernels advance eight *independent* reduction sets in lockstep, one per
# lane of an 8-wide vector (refnorm.ops._kernels, "Speed: lanes").  f64x8 is
# that vector as a Numba type: an LLVM <8 x double> held in a register.  Its
# +, -, * and unary - are the IEEE operations applied lane by lane (no
# fast-math flags, so no reassociation or contraction), which makes the
# generic helpers above (two_sum) work on it unchanged; vtwo_prod and
# vdd_mul_round are the lane-wise twins of two_prod and dd_mul_round.  Every
# lane therefore performs exactly the operations of the scalar code: the same
# bits.

LANES = 8
_V8 = ir.VectorType(ir.DoubleType(), LANES)


class F64x8Type(types.Type):
    """Eight float64 lanes in one SIMD register (LLVM ``<8 x double>``)."""

    def __init__(self):
        super().__init__(name="f64x8")


f64x8 = F64x8Type()


@register_model(F64x8Type)
class _F64x8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _V8)


def _check_c_float64(arr, what):
    if not (isinstance(arr, types.Array) and arr.dtype == types.float64 and arr.layout == "C"):
        raise errors.TypingError(f"{what} needs a C-contiguous float64 array, got {arr}")


def vector_pointer(context, builder, arrty, arr, i):
    """LLVM pointer to ``<8 x double>`` at flat element ``i`` of a C-contiguous array."""
    a = context.make_array(arrty)(context, builder, arr)
    return builder.bitcast(builder.gep(a.data, [i]), _V8.as_pointer())


@intrinsic
def vload(typingctx, arr, i):
    """``arr.flat[i:i + 8]`` as one vector (C-contiguous float64 ``arr``; no bounds check)."""
    _check_c_float64(arr, "vload")

    def codegen(context, builder, sig, args):
        return builder.load(vector_pointer(context, builder, sig.args[0], args[0], args[1]), align=8)

    return f64x8(arr, types.intp), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """``arr.flat[i:i + 8] = v`` (no bounds check)."""
    _check_c_float64(arr, "vstore")

    def codegen(context, builder, sig, args):
        builder.store(args[2], vector_pointer(context, builder, sig.args[0], args[0], args[1]), align=8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, f64x8), codegen


@intrinsic
def vsplat(typingctx, x):
    """``x`` (a float64) in every lane."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        v = builder.insert_element(ir.Constant(_V8, ir.Undefined), args[0], ir.Constant(i32, 0))
        return builder.shuffle_vector(v, ir.Constant(_V8, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES),
                                                                                      [0] * LANES))

    return f64x8(types.float64), codegen


def _lanewise(instr):
    @intrinsic
    def op(typingctx, a, b):
        def codegen(context, builder, sig, args):
            return getattr(builder, instr)(*args)

        return f64x8(f64x8, f64x8), codegen

    return op


@intrinsic
def _vneg(typingctx, a):
    def codegen(context, builder, sig, args):
        return builder.fneg(args[0])

    return f64x8(f64x8), codegen


def _overload_binary(pyop, lanewise_op):
    @overload(pyop)
    def ov(a, b):
        if isinstance(a, F64x8Type) and isinstance(b, F64x8Type):
            return lambda a, b: lanewise_op(a, b)


for _pyop, _instr in ((operator.add, "fadd"), (operator.sub, "fsub"), (operator.mul, "fmul")):
    _overload_binary(_pyop, _lanewise(_instr))


@overload(operator.neg)
def _overload_neg(a):
    if isinstance(a, F64x8Type):
        return lambda a: _vneg(a)


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` with one rounding per lane (``llvm.fma.v8f64``)."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_V8] * 3), "llvm.fma.v8f64")
        return builder.call(fn, args)

    return f64x8(f64x8, f64x8, f64x8), codegen


@intrinsic
def vnan_or(typingctx, b, p, r):
    """Per lane: ``b`` where ``b`` is a NaN; else ``r`` where ``p`` is finite;
    else ``p`` (the branches of :func:`dd_mul_round`, as selects: no branch
    in a vector loop)."""

    def codegen(context, builder, sig, args):
        b, p, r = args
        fabs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, [_V8]), "llvm.fabs.v8f64")
        inf = ir.Constant(_V8, [math.inf] * LANES)
        finite = builder.fcmp_ordered("!=", builder.call(fabs, [p]), inf)  # false for +-inf and NaN
        b_nan = builder.fcmp_unordered("uno", b, b)
        return builder.select(b_nan, b, builder.select(finite, r, p))

    return f64x8(f64x8, f64x8, f64x8), codegen


@jit
def vtwo_prod(a, b):
    """:func:`two_prod` lane by lane."""
    p = a * b
    return p, vfma(a, b, -p)


@jit
def vdd_mul_round(a_hi, a_lo, b_hi, b_lo):
    """:func:`dd_mul_round` lane by lane."""
    p, pe = vtwo_prod(a_hi, b_hi)
    return vnan_or(b_hi, p, p + (pe + (a_hi * b_lo + a_lo * b_hi)))


@intrinsic
def vstore_stream(typingctx, arr, i, v):
    """``arr.flat[i:i + 8] = v`` with a non-temporal (streaming) store when the
    address is 64-byte aligned -- the line goes to memory without being read
    first -- and an ordinary store otherwise (no bounds check)."""
    _check_c_float64(arr, "vstore_stream")

    def codegen(context, builder, sig, args):
        ptr = vector_pointer(context, builder, sig.args[0], args[0], args[1])
        i64 = ir.IntType(64)
        aligned = builder.icmp_unsigned("==", builder.and_(builder.ptrtoint(ptr, i64), ir.Constant(i64, 63)),
                                        ir.Constant(i64, 0))
        with builder.if_else(aligned) as (then, otherwise):
            with then:
                st = builder.store(args[2], ptr, align=64)
                st.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            with otherwise:
                builder.store(args[2], ptr, align=8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, f64x8), codegen


@intrinsic
def misalignment(typingctx, arr, i):
    """How many float64 elements ``arr.flat[i]`` lies past a 64-byte boundary (0..7)."""
    _check_c_float64(arr, "misalignment")

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        addr = builder.ptrtoint(builder.gep(a.data, [args[1]]), i64)
        return builder.lshr(builder.and_(addr, ir.Constant(i64, 63)), ir.Constant(i64, 3))

    return types.intp(arr, types.intp), codegen
