"""Python glue between the public ops and the kernels of :mod:`refnorm.ops._kernels`.

An op module reshapes its validated float64 input to the canonical view
``(A, B, S)``, builds its affine vectors (length ``P * Q``) and calls these
helpers.  Nothing here validates the op's arguments: that is the op module's
job, done before any of this runs.  The one exception is :func:`check_out`,
the shared validation of a caller's preallocated output array (``out=``),
which the op modules call before any kernel.

The helpers choose the kernels: with batch statistics, :func:`normalize` and
:func:`normalize_backward` compute the statistics *inside* the forward or
backward kernel, block by block (one read of ``x`` from memory instead of
two); :func:`batch_stats`, :func:`forward` and :func:`backward` are the
unfused steps (running statistics, ``running_stats`` updates, and callers
that want the statistics alone).  Fused or not, the results are the same bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np

from . import _kernels as K


@dataclass(frozen=True)
class Stats:
    """Double-double statistics of the reduction sets (``period`` of them:
    ``B``, or the period of a per-channel running statistic).

    ``data`` is the one float64 array the kernels read and write, shape
    ``(K.NSTATS, period)``, rows ``K.MEAN``, ``K.MEAN_LO``, ``K.M2``,
    ``K.M2_LO``, ``K.RSTD``, ``K.RSTD_LO`` (see :mod:`refnorm.ops._sets`);
    the attributes below are views of its rows."""

    data: np.ndarray
    n: int = 0  # size of each reduction set
    const: bool = False  # True: running statistics, constants for the backward

    @property
    def mean(self) -> np.ndarray:
        return self.data[K.MEAN]

    @property
    def mean_lo(self) -> np.ndarray:
        return self.data[K.MEAN_LO]

    @property
    def rstd(self) -> np.ndarray:
        return self.data[K.RSTD]

    @property
    def rstd_lo(self) -> np.ndarray:
        return self.data[K.RSTD_LO]

    @property
    def m2(self) -> np.ndarray | None:
        """The centred sum of squares (batch statistics only; None for constants)."""
        return None if self.const else self.data[K.M2]

    @property
    def m2_lo(self) -> np.ndarray | None:
        return None if self.const else self.data[K.M2_LO]

    @property
    def period(self) -> int:
        return self.data.shape[1]

    def var(self, correction: int = 0) -> np.ndarray:
        """``m2 / (n - correction)`` rounded once (batch statistics only):
        ``correction=0`` is the biased variance used for normalizing,
        ``correction=1`` the unbiased one PyTorch puts in ``running_var``.
        NaN where ``n - correction <= 0``."""
        d = self.n - correction
        if d <= 0:
            return np.full_like(self.m2, np.nan)
        out = np.empty_like(self.m2)
        K.divide_m2(self.data, d, out)
        return out


def _empty_stats(x3) -> Stats:
    return Stats(K.empty_stats(x3.shape[1]), x3.shape[0] * x3.shape[2])


def batch_stats(x3: np.ndarray, eps: float, *, center: bool = True) -> Stats:
    """Statistics of each reduction set ``x3[:, b, :]``."""
    st = _empty_stats(x3)
    with _serial_if_small(x3.size):
        K.moments(x3, center, float(eps), st.data)
    return st


def const_stats(mean: np.ndarray, var: np.ndarray, eps: float) -> Stats:
    """Statistics given as constants (running mean and variance)."""
    var = np.ascontiguousarray(var, dtype=np.float64)
    data = K.empty_stats(var.shape[0])
    data[K.MEAN] = mean
    data[K.MEAN_LO] = 0.0
    data[K.M2:K.M2_LO + 1] = np.nan  # no m2 for constants (never read)
    K.rstd_of_var(var, float(eps), data)
    return Stats(data, const=True)


def affine_vectors(weight: np.ndarray | None, bias: np.ndarray | None, size: int):
    """Flattened weight and bias of length ``size`` (ones / zeros when absent)."""
    w = np.ones(size) if weight is None else np.ascontiguousarray(weight, dtype=np.float64).reshape(-1)
    b = np.zeros(size) if bias is None else np.ascontiguousarray(bias, dtype=np.float64).reshape(-1)
    return w, b


def _inner(x3, Q: int) -> int:
    """T, the run of consecutive elements sharing one affine parameter (S = Q * T)."""
    S = x3.shape[2]
    assert Q > 0 and S % Q == 0 or S == 0, (S, Q)
    return S // Q if Q > 0 else 0


def _cache_bytes(level: int, default: int) -> int:
    """The size of a (level 2: per-core; level 3: shared) cache, or ``default``."""
    try:
        size = os.sysconf(f"SC_LEVEL{level}_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        size = 0
    return size if size > 0 else default


#: Outputs at least this large are written with non-temporal stores (they
#: would not stay in the cache anyway; the store then skips reading the line).
STREAM_BYTES = _cache_bytes(3, 32 * 2**20)


def _stream(arr) -> bool:
    return arr.nbytes >= STREAM_BYTES


#: Below this many elements a kernel runs on the calling thread alone (the
#: thread count is set to 1 around it): starting the parallel region costs
#: more than it saves there (measured, 2 threads, a 1 x 8 LayerNorm: 50 us a
#: call on one thread against 8 ms on two when the other core is busy, its
#: worker then waiting for a time slice).  The bits do not depend on the
#: number of threads (:mod:`refnorm.ops._jit`), so this is a matter of speed only.
SERIAL_ELEMENTS = 8192


class _serial_if_small:
    """``with _serial_if_small(n):`` runs the kernels inside on one thread when
    ``n < SERIAL_ELEMENTS`` (restoring the thread count after)."""

    __slots__ = ("threads",)

    def __init__(self, n: int):
        self.threads = numba.get_num_threads() if n < SERIAL_ELEMENTS else 1

    def __enter__(self):
        if self.threads > 1:
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        if self.threads > 1:
            numba.set_num_threads(self.threads)
        return False


def _target(x3, out):
    """The array receiving an elementwise result: ``out`` viewed like ``x3``
    (already validated by :func:`check_out`), or a new one."""
    return np.empty_like(x3) if out is None else out.reshape(x3.shape)


def forward(x3, stats: Stats, weight, bias, P: int, Q: int, *, out=None) -> np.ndarray:
    """``y = weight * xhat + bias`` on the canonical view; affine of length P * Q."""
    T = _inner(x3, Q)
    w, b = affine_vectors(weight, bias, P * Q)
    y3 = _target(x3, out)
    with _serial_if_small(x3.size):
        K.forward(x3, stats.data, w, b, P, Q, T, y3, _stream(y3))
    return y3


def normalize(x3, eps: float, weight, bias, P: int, Q: int, *, center: bool = True, out=None):
    """:func:`batch_stats` and :func:`forward` in one kernel: ``(y3, stats)``."""
    T = _inner(x3, Q)
    w, b = affine_vectors(weight, bias, P * Q)
    y3 = _target(x3, out)
    st = _empty_stats(x3)
    with _serial_if_small(x3.size):
        K.normalize(x3, center, float(eps), w, b, P, Q, T, y3, st.data, _stream(y3))
    return y3, st


def _mode(stats_const: bool, rms: bool) -> int:
    if stats_const:
        return K.MODE_CONST_STATS
    return K.MODE_RMS if rms else K.MODE_BATCH_STATS


def _fuse_affine(x3, P: int, T: int) -> bool:
    """Whether the affine gradients are summed inside the input-gradient
    kernel (blocks of parameter groups p; see ``K.backward_sets``) rather than
    by ``K.backward_affine``: only with enough groups to fill the lanes, and
    when the two give the same summation order."""
    A, B, _ = x3.shape
    return P >= K.LANES // 2 and (A == 1 or B == P) and not (T == 1 and P == 1)


def _affine_band_sets(x3, P: int, T: int, per_set: bool) -> int:
    """Sets per band when the affine sums are a separate pass
    (:func:`K.backward_affine`) over one parameter per position (LayerNorm,
    RMSNorm: ``P == 1, T == 1``, ``A == 1``) and the statistics have one
    column per set (``per_set``: computed here, or saved by the forward): the
    input gradient and the affine sums then run band by band, so
    that the second pass reads ``x`` and ``dy`` from the threads' L2 caches
    instead of memory.  The bands are consecutive sets in ascending order and
    the Sum2 accumulators carry over, so every dweight/dbias has the bits of
    one pass over all rows.  0: no bands."""
    A, B, S = x3.shape
    if not (per_set and P == 1 and T == 1 and A == 1) or S == 0:
        return 0
    budget = AFFINE_BAND_BYTES or _L2_BYTES * numba.get_num_threads()
    sets = budget // (2 * 8 * S)  # x and dy of a band
    return sets if 0 < sets < B else 0


_L2_BYTES = _cache_bytes(2, 2**20)
#: x and dy bytes of one band of the LayerNorm/RMSNorm backward; 0: each
#: thread's share fills its (per-core) L2 cache.  Only the speed depends on
#: it (measured: 2 threads, L2 1 MiB, 16384 x 768: no bands 25.8 ms, 1, 2, 4,
#: 8, 16 MiB bands 21.1, 19.8, 19.9, 21.1, 23.3 ms).
AFFINE_BAND_BYTES = 0


def _backward(dy3, x3, stats: Stats, fresh: bool, eps: float, weight, P: int, Q: int, rms: bool, affine: bool,
              out):
    with _serial_if_small(x3.size):
        return _backward_kernels(dy3, x3, stats, fresh, eps, weight, P, Q, rms, affine, out)


def _backward_kernels(dy3, x3, stats: Stats, fresh: bool, eps: float, weight, P: int, Q: int, rms: bool,
                      affine: bool, out):
    T = _inner(x3, Q)
    w, _ = affine_vectors(weight, None, P * Q)
    mode = _mode(stats.const, rms)
    dx3 = _target(x3, out)
    fuse = affine and _fuse_affine(x3, P, T)
    dweight = np.zeros(P * Q if fuse else 0)
    dbias = np.zeros(P * Q if fuse else 0)
    stream = _stream(dx3)
    separate = affine and not fuse  # dweight/dbias by K.backward_affine, after the input gradient
    acc = np.zeros((4, P * Q if separate else 0))  # its Sum2 accumulators, carried across bands
    block = K.affine_block(Q, T, numba.get_num_threads())
    band = _affine_band_sets(x3, P, T, stats.period == x3.shape[1]) if separate else 0
    for r in [slice(b0, b0 + band) for b0 in range(0, x3.shape[1], band)] if band else [slice(None)]:
        st = np.ascontiguousarray(stats.data[:, r]) if band else stats.data  # a band's statistics: its columns
        K.backward_sets(dy3[:, r], x3[:, r], fresh, not rms, float(eps), st, w, P, Q, T, mode, dx3[:, r], dweight,
                        dbias, stream)
        if separate:
            K.backward_affine(dy3[:, r], x3[:, r], st, P, Q, T, acc, block)
        if band and fresh:
            stats.data[:, r] = st
    if not affine:
        return dx3, None, None
    if separate:
        dweight, dbias = np.empty(P * Q), np.empty(P * Q)
        K.affine_result(acc, dweight, dbias)
    return dx3, dweight, dbias


def backward(dy3, x3, stats: Stats, weight, P: int, Q: int, *, rms: bool = False, affine: bool = True, out=None):
    """Input gradient and (if ``affine``) the raw ``dweight``/``dbias`` vectors
    (length P * Q; zeros where a parameter touches no element), for given
    statistics."""
    return _backward(dy3, x3, stats, False, 0.0, weight, P, Q, rms, affine, out)


def normalize_backward(dy3, x3, eps: float, weight, P: int, Q: int, *, rms: bool = False, affine: bool = True,
                       out=None, saved=None):
    """:func:`backward` with the batch statistics computed inside the kernel
    (as :func:`batch_stats` would): ``(dx3, dweight, dbias)``.

    ``saved``: the statistics array a forward computed
    (:func:`refnorm.ops._saved.restore`); the kernel then reads them instead
    of computing them, with the same bits."""
    if saved is not None:
        return _backward(dy3, x3, Stats(saved, x3.shape[0] * x3.shape[2]), False, 0.0, weight, P, Q, rms, affine,
                         out)
    st = _empty_stats(x3)
    return _backward(dy3, x3, st, True, eps, weight, P, Q, rms, affine, out)


# ----------------------------------------------------------------------------- out=


def check_out(out, shape, *inputs, name: str = "out") -> np.ndarray:
    """Validate a preallocated output array and return it.

    ``out`` must be a writeable, C-contiguous ``numpy.ndarray`` of dtype
    float64 and exactly ``shape`` (the shape of the result), and must not share
    memory with any of ``inputs`` (refnorm never writes into its inputs, and a
    kernel reading ``x`` while writing an overlapping ``out`` would compute
    garbage).  Raises ``TypeError`` for a wrong kind or dtype, ``ValueError``
    for a wrong shape, layout or an overlap.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray of dtype float64, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"{name} must have dtype float64 (refnorm computes in float64), got dtype {out.dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{name} must have the shape of the result {tuple(shape)}, got shape {tuple(out.shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    for arg_name, arr in inputs:
        if isinstance(arr, np.ndarray) and _overlaps(out, arr):
            raise ValueError(f"{name} must not share memory with the input {arg_name}")
    return out


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays share memory (bounds first; an exact test that is
    too hard to decide counts as sharing)."""
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10**6))
    except np.exceptions.TooHardError:
        return True


def gradient_dict(dx3, shape, out, weight, bias, dweight, dbias, param_shape=None):
    """The ``<op>_backward`` result: ``{"x": dx}`` plus ``"weight"`` / ``"bias"``
    for the parameters that were given (``dx`` is ``out`` when one was passed;
    the parameter gradients reshaped to ``param_shape`` when given)."""
    grads = {"x": out if out is not None else dx3.reshape(shape)}
    if weight is not None:
        grads["weight"] = dweight if param_shape is None else dweight.reshape(param_shape)
    if bias is not None:
        grads["bias"] = dbias if param_shape is None else dbias.reshape(param_shape)
    return grads
