"""A Triton LayerNorm (forward and backward), exposed as a refnorm backend.

This is a kernel author's own code, written the way production fused LayerNorm
kernels are (the Triton tutorial, Liger, flash-attn's ``layer_norm.py``); it
does not call refnorm.  Check it against the golden corpus with::

    TRITON_INTERPRET=1 refnorm check --backend examples/triton/triton_layer_norm.py --ops layer_norm

Without a GPU it runs under Triton's CPU interpreter (``TRITON_INTERPRET=1``,
set below if the environment does not set it); on a GPU machine, run it with
``TRITON_INTERPRET=0`` and the same file compiles the kernels for the device.

Kernels
    ``_ln_fwd_kernel``      one program per row: max|x| (for the overflow
                            scaling), mean and rstd (saved), then
                            ``y = (x - mean) * rstd * w + b``.
    ``_ln_bwd_kernel``      a fixed grid of ``G`` programs, each owning a
                            contiguous block of rows: ``dx`` per row, and the
                            program's partial ``dweight``/``dbias`` (sums over its
                            rows, in row order) written to row ``pid`` of a
                            ``[G, N]`` buffer.
    ``_ln_bwd_reduce_kernel``  sums the ``[G, N]`` partials over ``G`` in a fixed
                            order.  No atomics: the result is bit-reproducible.

Numerics
    * float16/bfloat16/float32 inputs are loaded as float32 and computed in
      float32; float64 inputs are computed in float64 (a kernel that accepted a
      float64 tensor and returned float32-accurate values in it would be lying
      about its precision; Triton supports fp64, so the compute dtype follows).
    * y, dx are stored in x's dtype, dweight/dbias in the parameter's dtype; the
      saved mean/rstd are kept in the compute dtype (float32 for half inputs),
      as kernels save them.
    * Statistics: shifted two-pass.  ``mean = x0 + sum(x - x0) / N`` with ``x0`` the
      row's first element, then ``var = sum((x - mean)^2) / N`` (biased),
      ``rstd = 1 / sqrt(var + eps)``.  The shift makes the mean of a constant row
      exactly that constant (so ``var`` is exactly 0: ``eps = 0`` gives the
      declared NaN, ``eps > 0`` gives ``y == bias`` exactly) and keeps the sum
      small when |mean| >> std.  Division and square root are the correctly
      rounded ``div_rn``/``sqrt_rn`` in float32 (Triton's default ``/`` and
      ``sqrt`` are approximate on NVIDIA GPUs); float64 ``/`` and ``sqrt`` are IEEE.
    * Overflow (E7): a row whose max|x| exceeds ``2^40`` (``2^400`` in float64)
      is computed on the exactly scaled ``xs = x * 2^-k``, ``2^k <= max|x| <
      2^(k+1)``, so the sums and squares of rows of ~1e30, or of values near the
      float32 maximum, cannot overflow; ``mean = mean_s * 2^k`` and
      ``rstd = rstd_s * 2^-k`` are exact rescalings.  ``2^-k`` is applied as two
      factors of at most ``2^64`` each (``_pow2_factors``): ``2^-127`` is subnormal,
      and compiled code may flush float32 subnormals to zero.  The max|x| is one
      extra pass over the row in the same program; other rows run exactly as
      without scaling.  (The saved rstd of a row near the float32 maximum, ~1/max|x|,
      is itself subnormal -- that is its value; the interpreter keeps it with ~22
      significant bits, enough for the backward's xhat.)
    * Backward recomputes ``xhat = (x - mean) * rstd`` from x and the saved
      statistics (never from y, which is not invertible where weight == 0), on
      the row scaled the same way (``x - mean`` itself can overflow near the
      float32 maximum): ``dx = rstd * (w*dy - mean(w*dy) - xhat * mean(w*dy*xhat))``.
    * Rows are processed in chunks of ``BLOCK_N`` columns (at most
      ``MAX_BLOCK_N``), so any row length works.
    * Outputs are rounded to nearest even.  For bfloat16 this is written out
      (``_round_to_bf16``): Triton 3.9's CPU interpreter truncates on
      float32 -> bfloat16 casts, where the GPU rounds to nearest even.

Interpreter vs GPU: the interpreter evaluates every operation in NumPy with one
rounding each and ``tl.sum`` as NumPy's pairwise sum; compiled for a GPU, Triton
contracts ``a * b + c`` into FMAs (``TRITON_DEFAULT_FP_FUSION``) and reduces in
its own tree order, so GPU results can differ in the last bits and the corpus
check should be repeated there.

Argument errors (a wrong ``normalized_shape``, a weight/bias of the wrong shape,
a non-float dtype, ...) raise ValueError/TypeError naming the argument before
any kernel runs.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the import of triton

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
if _INTERPRET and type(tl.zeros).__name__ != "InterpretedFunction":
    # triton.language's own @jit helpers (tl.zeros, tl.sum, ...) are fixed at its first import
    raise ImportError("triton was imported before TRITON_INTERPRET=1 was set, so its library functions cannot "
                      "run in the CPU interpreter; set TRITON_INTERPRET=1 in the environment (or before anything "
                      "imports triton) to use this backend without a GPU")

BACKEND_INFO = {
    "name": "examples/triton",
    "description": (f"Triton {triton.__version__} LayerNorm kernels (fused forward, backward with a deterministic "
                    f"two-stage dweight/dbias reduction), float32 compute (float64 for float64), "
                    f"{'CPU interpreter' if _INTERPRET else 'compiled'}"),
}

#: The largest column chunk a program holds at once (elements).
MAX_BLOCK_N = 4096
#: The number of row-block programs of the backward (the height of the partial buffer), CPU interpreter.
NUM_PARTIALS_CPU = 32

# ----------------------------------------------------------------------------- kernels


@triton.jit
def _recip_sqrt(v, IS_FP64: tl.constexpr):
    """Correctly rounded ``1 / sqrt(v)`` in the compute dtype."""
    if IS_FP64:
        r = 1.0 / tl.sqrt(v)
    else:
        r = tl.div_rn(1.0, tl.sqrt_rn(v))
    return r


@triton.jit
def _div(a, b, IS_FP64: tl.constexpr):
    """Correctly rounded ``a / b`` in the compute dtype."""
    if IS_FP64:
        q = a / b
    else:
        q = tl.div_rn(a, b)
    return q


@triton.jit
def _pow2_factors(amax, IS_FP64: tl.constexpr):
    """Exact power-of-two scale factors of a row whose largest magnitude is ``amax``.

    Returns ``(f1, f2, g1, g2)`` with ``f1 * f2 = 2^-k`` and ``g1 * g2 = 2^k``, where
    ``2^k <= amax < 2^(k+1)`` for a large finite ``amax`` (beyond ``2^40`` in float32,
    ``2^400`` in float64), so the scaled row ``(x * f1) * f2`` has magnitudes below 2 and its
    sums and squares cannot overflow; ``k = 0`` (all four factors 1) for any other row, which
    is then computed exactly as without scaling.  Each factor is a power of two between
    ``2^-64`` and ``2^64`` (``2^-512`` and ``2^512`` in float64), built from its bits:
    ``2^-k`` itself (``2^-127`` near the float32 maximum) is never formed, since it is
    subnormal and compiled code may flush float32 subnormals to zero."""
    if IS_FP64:
        e = ((amax.to(tl.uint64, bitcast=True) >> 52) & 0x7FF).to(tl.int32) - 1023
        k = tl.where((e >= 400) & (e <= 1023), e, 0)  # e = 1024: amax is inf or NaN
        ka = k // 2
        kb = k - ka
        f1 = ((1023 - ka).to(tl.uint64) << 52).to(tl.float64, bitcast=True)
        f2 = ((1023 - kb).to(tl.uint64) << 52).to(tl.float64, bitcast=True)
        g1 = ((1023 + ka).to(tl.uint64) << 52).to(tl.float64, bitcast=True)
        g2 = ((1023 + kb).to(tl.uint64) << 52).to(tl.float64, bitcast=True)
    else:
        e = ((amax.to(tl.uint32, bitcast=True) >> 23) & 0xFF).to(tl.int32) - 127
        k = tl.where((e >= 40) & (e <= 127), e, 0)  # e = 128: amax is inf or NaN
        ka = k // 2
        kb = k - ka
        f1 = ((127 - ka).to(tl.uint32) << 23).to(tl.float32, bitcast=True)
        f2 = ((127 - kb).to(tl.uint32) << 23).to(tl.float32, bitcast=True)
        g1 = ((127 + ka).to(tl.uint32) << 23).to(tl.float32, bitcast=True)
        g2 = ((127 + kb).to(tl.uint32) << 23).to(tl.float32, bitcast=True)
    return f1, f2, g1, g2


@triton.jit
def _round_to_bf16(v):
    """float32 -> bfloat16, round to nearest even (what ``cvt.rn.bf16.f32`` does on the GPU).

    Written out because Triton's CPU interpreter (3.9) converts float32 -> bfloat16 by
    truncating the low 16 bits, with or without ``fp_downcast_rounding="rtne"``."""
    bits = v.to(tl.uint32, bitcast=True)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    rounded = tl.where(v != v, (bits >> 16) | 0x40, rounded)  # NaN stays a (quiet) NaN of the same sign
    return rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _to_out(v, OUT: tl.constexpr):
    """Round the compute-dtype value ``v`` to the output dtype ``OUT`` (nearest even)."""
    if OUT == tl.bfloat16:
        r = _round_to_bf16(v)
    else:
        r = v.to(OUT)
    return r


@triton.jit
def _ln_fwd_kernel(X, Y, W, B, Mean, Rstd, N, eps: tl.float64,
                   HAS_W: tl.constexpr, HAS_B: tl.constexpr, CDT: tl.constexpr, IS_FP64: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    X += row * N
    Y += row * N
    cols0 = tl.arange(0, BLOCK_N)
    nf = tl.zeros([], dtype=CDT) + N
    # max|x| of the row: rows beyond 2^40 (2^400 in float64) are computed on the exactly
    # scaled xs = (x * f1) * f2, |xs| < 2, whose sums and squares cannot overflow (E7)
    amax = tl.zeros([BLOCK_N], dtype=CDT)
    for off in range(0, N, BLOCK_N):
        cols = off + cols0
        mask = cols < N
        x = tl.load(X + cols, mask=mask, other=0.0).to(CDT)
        amax = tl.maximum(amax, tl.abs(x))
    f1, f2, g1, g2 = _pow2_factors(tl.max(amax, axis=0), IS_FP64)
    # shifted mean: mean = x0 + sum(x - x0) / N (of the scaled row)
    x0 = (tl.load(X).to(CDT) * f1) * f2
    acc = tl.zeros([BLOCK_N], dtype=CDT)
    for off in range(0, N, BLOCK_N):
        cols = off + cols0
        mask = cols < N
        x = (tl.load(X + cols, mask=mask, other=0.0).to(CDT) * f1) * f2
        acc += tl.where(mask, x - x0, 0.0)
    mean_s = x0 + _div(tl.sum(acc, axis=0), nf, IS_FP64)
    # biased variance of the deviations from that mean
    acc = tl.zeros([BLOCK_N], dtype=CDT)
    for off in range(0, N, BLOCK_N):
        cols = off + cols0
        mask = cols < N
        x = (tl.load(X + cols, mask=mask, other=0.0).to(CDT) * f1) * f2
        xc = tl.where(mask, x - mean_s, 0.0)
        acc += xc * xc
    var_s = _div(tl.sum(acc, axis=0), nf, IS_FP64)
    # rstd_s = 1 / sqrt(var_s + eps * 2^-2k) multiplies the scaled deviations; the saved
    # rstd = rstd_s * 2^-k and mean = mean_s * 2^k are exact rescalings (no overflow:
    # |mean| <= max|x|).  eps * 2^-2k may underflow (to a subnormal, or to 0 where subnormals
    # are flushed); next to a nonzero var_s it is then negligible.  A scaled constant row
    # (var_s exactly 0; eps > 0) takes rstd = 1 / sqrt(eps) instead, and rstd_s = 1 multiplies
    # its exact-zero deviations.  Unscaled rows (f1 == 1) are computed as without scaling.
    eps_c = (tl.zeros([], dtype=tl.float64) + eps).to(CDT)
    degenerate = (f1 < 1.0) & (var_s == 0) & (eps_c > 0)
    denom = var_s + (((eps_c * f1) * f1) * f2) * f2
    rstd_s = _recip_sqrt(tl.where(degenerate, 1.0, denom), IS_FP64)
    rstd = tl.where(degenerate, _recip_sqrt(eps_c, IS_FP64), (rstd_s * f1) * f2)
    tl.store(Mean + row, (mean_s * g1) * g2)
    tl.store(Rstd + row, rstd)
    # normalize and apply the affine
    for off in range(0, N, BLOCK_N):
        cols = off + cols0
        mask = cols < N
        x = (tl.load(X + cols, mask=mask, other=0.0).to(CDT) * f1) * f2
        y = (x - mean_s) * rstd_s
        if HAS_W:
            y = y * tl.load(W + cols, mask=mask, other=0.0).to(CDT)
        if HAS_B:
            y = y + tl.load(B + cols, mask=mask, other=0.0).to(CDT)
        tl.store(Y + cols, _to_out(y, Y.dtype.element_ty), mask=mask)


@triton.jit
def _ln_bwd_kernel(DY, X, W, Mean, Rstd, DX, DWp, DBp, M, N, rows_per_program,
                   HAS_W: tl.constexpr, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr, CDT: tl.constexpr,
                   IS_FP64: tl.constexpr, BLOCK_N: tl.constexpr, SINGLE_BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    DWp += pid.to(tl.int64) * N  # this program's own row of the partial buffers
    DBp += pid.to(tl.int64) * N
    cols0 = tl.arange(0, BLOCK_N)
    nf = tl.zeros([], dtype=CDT) + N
    if SINGLE_BLOCK:
        # the whole row fits one block: weight and the partial sums stay in registers
        mask = cols0 < N
        if HAS_W:
            w = tl.load(W + cols0, mask=mask, other=0.0).to(CDT)
        dw = tl.zeros([BLOCK_N], dtype=CDT)
        db = tl.zeros([BLOCK_N], dtype=CDT)
        for row in range(row_start, row_end):
            off = tl.cast(row, tl.int64) * N
            x = tl.load(X + off + cols0, mask=mask, other=0.0).to(CDT)
            dy = tl.load(DY + off + cols0, mask=mask, other=0.0).to(CDT)
            mean = tl.load(Mean + row)
            rstd = tl.load(Rstd + row)
            # xhat from the scaled row, as in the forward: x - mean can overflow near the
            # float32 maximum (E7); ((xs - mean_s) * g1) * rstd * g2 keeps every factor finite
            f1, f2, g1, g2 = _pow2_factors(tl.max(tl.abs(x), axis=0), IS_FP64)
            xc = (x * f1) * f2 - (mean * f1) * f2
            xhat = tl.where(mask, ((xc * g1) * rstd) * g2, 0.0)
            if HAS_W:
                wdy = dy * w
            else:
                wdy = dy
            c1 = _div(tl.sum(wdy, axis=0), nf, IS_FP64)
            c2 = _div(tl.sum(xhat * wdy, axis=0), nf, IS_FP64)
            dx = (wdy - (xhat * c2 + c1)) * rstd
            tl.store(DX + off + cols0, _to_out(dx, DX.dtype.element_ty), mask=mask)
            if NEED_DW:
                dw += dy * xhat
            if NEED_DB:
                db += dy
        if NEED_DW:
            tl.store(DWp + cols0, dw, mask=mask)
        if NEED_DB:
            tl.store(DBp + cols0, db, mask=mask)
    else:
        # long rows: two sweeps per row; the partial sums accumulate in this program's
        # own (zero-initialised) row of the buffer, so no other program touches them
        for row in range(row_start, row_end):
            off = tl.cast(row, tl.int64) * N
            mean = tl.load(Mean + row)
            rstd = tl.load(Rstd + row)
            # max|x| of the row, for xhat from the scaled row (see the single-block path)
            amax = tl.zeros([BLOCK_N], dtype=CDT)
            for c in range(0, N, BLOCK_N):
                cols = c + cols0
                x = tl.load(X + off + cols, mask=cols < N, other=0.0).to(CDT)
                amax = tl.maximum(amax, tl.abs(x))
            f1, f2, g1, g2 = _pow2_factors(tl.max(amax, axis=0), IS_FP64)
            mean_s = (mean * f1) * f2
            acc1 = tl.zeros([BLOCK_N], dtype=CDT)
            acc2 = tl.zeros([BLOCK_N], dtype=CDT)
            for c in range(0, N, BLOCK_N):
                cols = c + cols0
                mask = cols < N
                x = tl.load(X + off + cols, mask=mask, other=0.0).to(CDT)
                dy = tl.load(DY + off + cols, mask=mask, other=0.0).to(CDT)
                xhat = tl.where(mask, ((((x * f1) * f2 - mean_s) * g1) * rstd) * g2, 0.0)
                if HAS_W:
                    wdy = dy * tl.load(W + cols, mask=mask, other=0.0).to(CDT)
                else:
                    wdy = dy
                acc1 += wdy
                acc2 += xhat * wdy
            c1 = _div(tl.sum(acc1, axis=0), nf, IS_FP64)
            c2 = _div(tl.sum(acc2, axis=0), nf, IS_FP64)
            for c in range(0, N, BLOCK_N):
                cols = c + cols0
                mask = cols < N
                x = tl.load(X + off + cols, mask=mask, other=0.0).to(CDT)
                dy = tl.load(DY + off + cols, mask=mask, other=0.0).to(CDT)
                xhat = tl.where(mask, ((((x * f1) * f2 - mean_s) * g1) * rstd) * g2, 0.0)
                if HAS_W:
                    wdy = dy * tl.load(W + cols, mask=mask, other=0.0).to(CDT)
                else:
                    wdy = dy
                dx = (wdy - (xhat * c2 + c1)) * rstd
                tl.store(DX + off + cols, _to_out(dx, DX.dtype.element_ty), mask=mask)
                if NEED_DW:
                    tl.store(DWp + cols, tl.load(DWp + cols, mask=mask) + dy * xhat, mask=mask)
                if NEED_DB:
                    tl.store(DBp + cols, tl.load(DBp + cols, mask=mask) + dy, mask=mask)


@triton.jit
def _ln_bwd_reduce_kernel(DWp, DBp, DW, DB, G, N, NEED_DW: tl.constexpr, NEED_DB: tl.constexpr,
                          CDT: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr):
    """Column block ``pid``: ``DW[cols] = sum_g DWp[g, cols]``, tiles of BLOCK_G rows in order."""
    pid = tl.program_id(0)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    cmask = cols < N
    rows0 = tl.arange(0, BLOCK_G)
    dw = tl.zeros([BLOCK_N], dtype=CDT)
    db = tl.zeros([BLOCK_N], dtype=CDT)
    for g in range(0, G, BLOCK_G):
        rows = g + rows0
        mask = (rows[:, None] < G) & cmask[None, :]
        offs = rows[:, None].to(tl.int64) * N + cols[None, :]
        if NEED_DW:
            dw += tl.sum(tl.load(DWp + offs, mask=mask, other=0.0), axis=0)
        if NEED_DB:
            db += tl.sum(tl.load(DBp + offs, mask=mask, other=0.0), axis=0)
    if NEED_DW:
        tl.store(DW + cols, _to_out(dw, DW.dtype.element_ty), mask=cmask)
    if NEED_DB:
        tl.store(DB + cols, _to_out(db, DB.dtype.element_ty), mask=cmask)


# ----------------------------------------------------------------------------- host side

_FLOAT_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(ml_dtypes.bfloat16): torch.bfloat16,
                 np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_DTYPE_NAMES = "float16, bfloat16, float32 or float64"
_DEVICE = "cpu" if _INTERPRET else "cuda"


def _array(name, value):
    """``value`` as a NumPy array of a supported float dtype (TypeError naming ``name`` otherwise)."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array of dtype {_DTYPE_NAMES}, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a ragged list
        raise TypeError(f"{name} must be an array of dtype {_DTYPE_NAMES}; could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype {_DTYPE_NAMES}, got dtype {arr.dtype}")
    return arr


def _tensor(arr):
    """A contiguous torch tensor copy of ``arr`` on the kernel device (bfloat16 via exact float32)."""
    if _DEVICE == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')!r} asks for compiled kernels, but "
                           "torch sees no GPU; set TRITON_INTERPRET=1 to run them in Triton's CPU interpreter")
    if arr.dtype == np.dtype(ml_dtypes.bfloat16):
        t = torch.from_numpy(np.ascontiguousarray(arr.astype(np.float32))).to(torch.bfloat16)
    else:
        t = torch.from_numpy(np.array(arr, copy=True, order="C"))
    return t.to(_DEVICE)


def _numpy(t):
    """The tensor as a NumPy array of its own dtype (bfloat16 as ml_dtypes.bfloat16)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy().copy()


def _normalized_shape(normalized_shape, x_shape):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        ns = (int(normalized_shape),)
    elif isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, (str, bytes)):
        if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in normalized_shape):
            raise TypeError(f"normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
        ns = tuple(int(d) for d in normalized_shape)
    else:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got "
                        f"{type(normalized_shape).__name__} {normalized_shape!r}")
    if not ns:
        raise ValueError("normalized_shape must contain at least one dimension, got ()")
    if any(d <= 0 for d in ns):
        raise ValueError(f"normalized_shape must contain only positive sizes, got {ns}")
    if len(ns) > len(x_shape) or tuple(x_shape[len(x_shape) - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {ns} must equal the trailing dimensions of x, "
                         f"got x of shape {tuple(x_shape)}")
    return ns


def _prepare(x, normalized_shape, weight, bias, eps):
    """Validate every argument (before any kernel runs); flatten x to (M, N) rows."""
    xa = _array("x", x)
    if xa.ndim < 1:
        raise ValueError(f"x must have at least 1 dimension, got shape {tuple(xa.shape)}")
    ns = _normalized_shape(normalized_shape, xa.shape)
    params = {}
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            params[name] = None
            continue
        pa = _array(name, p)
        if tuple(pa.shape) != ns:
            raise ValueError(f"{name} must have shape {ns} (normalized_shape), got shape {tuple(pa.shape)}")
        params[name] = pa
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__} {eps!r}")
    eps = float(eps)
    if math.isnan(eps):
        raise ValueError("eps must not be NaN")
    N = math.prod(ns)
    M = math.prod(xa.shape[: xa.ndim - len(ns)])
    return xa, ns, M, N, params["weight"], params["bias"], eps


def _compute_dtype(np_dtype):
    """(torch compute dtype, triton compute dtype, is_fp64) for an input dtype."""
    if np_dtype == np.float64:
        return torch.float64, tl.float64, True
    return torch.float32, tl.float32, False


def _block_n(N):
    return min(MAX_BLOCK_N, triton.next_power_of_2(N))


def _launch(kernel, grid, *args, **kwargs):
    # IEEE semantics, as on the GPU: the interpreter runs the kernels in NumPy, which would
    # warn on inf - inf, 0 * inf and overflow (E2, E7, E23 cases produce them by design)
    with np.errstate(all="ignore"):
        kernel[grid](*args, **kwargs)


def _forward(xa, M, N, weight, bias, eps):
    """Run the forward kernel on x viewed as (M, N) rows; return torch (x, w, b, y, mean, rstd)."""
    cd_torch, cd_tl, is_fp64 = _compute_dtype(xa.dtype)
    xt = _tensor(xa).reshape(M, N)
    wt = None if weight is None else _tensor(weight).reshape(N)
    bt = None if bias is None else _tensor(bias).reshape(N)
    y = torch.empty_like(xt)
    mean = torch.empty(M, dtype=cd_torch, device=xt.device)
    rstd = torch.empty(M, dtype=cd_torch, device=xt.device)
    if M > 0:
        _launch(_ln_fwd_kernel, (M,), xt, y, xt if wt is None else wt, xt if bt is None else bt, mean, rstd, N, eps,
                HAS_W=wt is not None, HAS_B=bt is not None, CDT=cd_tl, IS_FP64=is_fp64, BLOCK_N=_block_n(N))
    return xt, wt, bt, y, mean, rstd


def _row_blocks(M, device):
    """(G, rows_per_program): the backward's grid, G contiguous blocks of rows."""
    if M == 0:
        return 1, 0  # one program with no rows: it writes zero partial sums
    if torch.device(device).type == "cuda":
        target = 2 * torch.cuda.get_device_properties(device).multi_processor_count
    else:
        target = NUM_PARTIALS_CPU
    rows_per_program = triton.cdiv(M, min(M, target))
    return triton.cdiv(M, rows_per_program), rows_per_program


# ----------------------------------------------------------------------------- the refnorm backend protocol


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xa, ns, M, N, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps)
    _, _, _, y, mean, rstd = _forward(xa, M, N, w, b, eps)
    lead = xa.shape[: xa.ndim - len(ns)]
    return _numpy(y).reshape(xa.shape), {"mean": _numpy(mean).reshape(lead), "rstd": _numpy(rstd).reshape(lead)}


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return layer_norm_stats(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xa, ns, M, N, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps)
    dya = _array("dy", dy)
    if tuple(dya.shape) != tuple(xa.shape):
        raise ValueError(f"dy must have the shape of x {tuple(xa.shape)}, got shape {tuple(dya.shape)}")
    # the forward saves mean/rstd for the backward, as autograd would
    xt, wt, bt, _, mean, rstd = _forward(xa, M, N, w, b, eps)
    cd_torch, cd_tl, is_fp64 = _compute_dtype(xa.dtype)
    dyt = _tensor(dya).reshape(M, N)
    dx = torch.empty_like(xt)
    G, rows_per_program = _row_blocks(M, xt.device)
    block_n = _block_n(N)
    need_dw, need_db = wt is not None, bt is not None
    # the [G, N] partial sums (zeroed: the long-row path accumulates into them)
    dwp = torch.zeros((G, N), dtype=cd_torch, device=xt.device) if need_dw else mean
    dbp = torch.zeros((G, N), dtype=cd_torch, device=xt.device) if need_db else mean
    _launch(_ln_bwd_kernel, (G,), dyt, xt, xt if wt is None else wt, mean, rstd, dx, dwp, dbp, M, N,
            rows_per_program, HAS_W=need_dw, NEED_DW=need_dw, NEED_DB=need_db, CDT=cd_tl, IS_FP64=is_fp64,
            BLOCK_N=block_n, SINGLE_BLOCK=N <= block_n)
    out = {"x": _numpy(dx).reshape(xa.shape)}
    if need_dw or need_db:
        dw = torch.empty(N, dtype=wt.dtype, device=xt.device) if need_dw else None
        db = torch.empty(N, dtype=bt.dtype, device=xt.device) if need_db else None
        red_n = min(block_n, 1024)
        _launch(_ln_bwd_reduce_kernel, (triton.cdiv(N, red_n),), dwp, dbp, dx if dw is None else dw,
                dx if db is None else db, G, N, NEED_DW=need_dw, NEED_DB=need_db, CDT=cd_tl,
                BLOCK_G=min(32, triton.next_power_of_2(G)), BLOCK_N=red_n)
        if need_dw:
            out["weight"] = _numpy(dw).reshape(ns)
        if need_db:
            out["bias"] = _numpy(db).reshape(ns)
    return out
