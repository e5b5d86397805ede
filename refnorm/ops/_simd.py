"""The 8-wide float64 vector and its LLVM intrinsics (no arithmetic of refnorm's own).

The lane kernels (:mod:`refnorm.ops._lanes`) advance eight *independent*
reduction sets in lockstep, one per lane of an 8-wide vector.  :data:`f64x8` is
that vector as a Numba type: an LLVM ``<8 x double>`` held in a register.  Its
``+``, ``-``, ``*`` and unary ``-`` are the IEEE operations applied lane by lane
(no fast-math flags, so no reassociation or contraction), which makes the
generic double-double helpers of :mod:`refnorm.ops._dd` (``two_sum``) work on it
unchanged; :func:`vtwo_prod` and :func:`vdd_mul_round` are the lane-wise twins
of ``two_prod`` and ``dd_mul_round``.  Every lane therefore performs exactly the
operations of the scalar code: the same bits.

Everything else here moves data and nothing more: loads, stores (ordinary and
non-temporal), splats, the lane-wise NaN select of ``dd_mul_round``, and
:func:`transpose8`, the 8 x 8 register transpose written as LLVM shuffles.
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


# ----------------------------------------------------------------------------- loads, stores, splats


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


@intrinsic
def vsplat(typingctx, x):
    """``x`` (a float64) in every lane."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        v = builder.insert_element(ir.Constant(_V8, ir.Undefined), args[0], ir.Constant(i32, 0))
        return builder.shuffle_vector(v, ir.Constant(_V8, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES),
                                                                                      [0] * LANES))

    return f64x8(types.float64), codegen


# ----------------------------------------------------------------------------- lane-wise IEEE arithmetic


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
    else ``p`` (the branches of :func:`~refnorm.ops._dd.dd_mul_round`, as
    selects: no branch in a vector loop)."""

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
    """:func:`~refnorm.ops._dd.two_prod` lane by lane."""
    p = a * b
    return p, vfma(a, b, -p)


@jit
def vdd_mul_round(a_hi, a_lo, b_hi, b_lo):
    """:func:`~refnorm.ops._dd.dd_mul_round` lane by lane."""
    p, pe = vtwo_prod(a_hi, b_hi)
    return vnan_or(b_hi, p, p + (pe + (a_hi * b_lo + a_lo * b_hi)))


# ----------------------------------------------------------------------------- the 8 x 8 transpose


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
def transpose8(typingctx, src, i0, lds, dst, j0, ldd):
    """``dst[j0 + k * ldd + l] = src[i0 + l * lds + k]`` for ``k, l < 8``.

    ``src`` and ``dst`` are C-contiguous float64 arrays addressed as flat
    memory.  Eight 8-wide loads, the 24 shuffles of a 3-stage transpose
    network, eight 8-wide stores: pure data movement (no arithmetic).
    """
    for arr in (src, dst):
        _check_c_float64(arr, "transpose8")
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


__all__ = ["LANES", "f64x8", "misalignment", "transpose8", "vdd_mul_round", "vfma", "vload", "vnan_or", "vsplat",
           "vstore", "vstore_stream", "vtwo_prod"]
