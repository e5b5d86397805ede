"""The kernel entry points every mean/variance normalizer calls.

The kernels are read at two levels:

* :mod:`refnorm.ops._sets` -- the math, one reduction set at a time: the
  canonical view ``(A, B, S)``, the affine rule (P, Q, T), the notation, the
  statistics array, the accuracy bounds and determinism; the moments of a
  set, ``y``, the backward (``c1 = mean(g)``, ``c2 = mean(g * xhat)``,
  ``dx = rstd * ((g - c1) - xhat * c2)``) and the affine sums;
* :mod:`refnorm.ops._lanes` and :mod:`refnorm.ops._runs` -- the same
  operations, eight sets (``_lanes``) or eight positions of a row (``_runs``)
  at a time in SIMD lanes, built on the vector intrinsics of
  :mod:`refnorm.ops._simd` and the double-double arithmetic of
  :mod:`refnorm.ops._dd`.  Not a single rounding differs from the first level.

This module picks between them and is what the ops and
:mod:`refnorm.ops._normalize` call (``K.moments``, ``K.forward`` ...).  The
statistics of the B reduction sets travel as one float64 array of shape
``(NSTATS, B)`` (:func:`empty_stats`), rows :data:`MEAN`, :data:`MEAN_LO`,
:data:`M2`, :data:`M2_LO`, :data:`RSTD`, :data:`RSTD_LO`.
"""

from __future__ import annotations

import numpy as np

from ._dd import fast_two_sum
from ._lanes import CHUNK, _moments_lanes, backward_sets, normalize
from ._runs import _affine_lanes, _forward_lanes, affine_block
from ._sets import (M2, M2_LO, MEAN, MEAN_LO, MODE_BATCH_STATS, MODE_CONST_STATS, MODE_RMS, NSTATS, RSTD, RSTD_LO,
                    _affine_sets, _moments_sets, affine_result, backward_input, divide_m2, empty_stats, rstd_of_var)
from ._simd import LANES


def moments(x, center, eps, stats):
    """Statistics of every reduction set of ``x`` (A, B, S), in double-double.

    Writes, for each b, column ``b`` of ``stats`` (shape ``(NSTATS, B)``):
    ``MEAN`` (+ ``MEAN_LO``; zero when ``center`` is False), the centred sum
    of squares ``M2`` (+ ``M2_LO``) and ``RSTD = 1 / sqrt(m2 / n + eps)``
    (+ ``RSTD_LO``).  The same bits for any memory layout of ``x`` (lane-wise
    when it is C-contiguous).
    """
    kernel = _moments_lanes if x.flags.c_contiguous else _moments_sets
    kernel(x, center, eps, stats)


def forward(x, stats, weight, bias, P, Q, T, y, stream=False):
    """``y = weight[k] * xhat + bias[k]`` with ``k = (b % P) * Q + s // T``.

    The statistics of set ``b`` are column ``b % stats.shape[1]`` of
    ``stats`` (``B`` columns for batch statistics; ``C`` when InstanceNorm
    uses per-channel running statistics).  ``stream``: write ``y`` with
    non-temporal stores (for outputs larger than the caches).  Any memory
    layout; the kernel itself works on C-contiguous arrays.
    """
    x, weight, bias = (np.ascontiguousarray(v) for v in (x, weight, bias))
    target = y if y.flags.c_contiguous else np.empty(y.shape)
    _forward_lanes(x, stats, weight, bias, P, Q, T, target, stream)
    if target is not y:
        y[...] = target


def backward_affine(dy, x, stats, P, Q, T, acc, block):
    """``dweight[k] = sum dy * xhat`` and ``dbias[k] = sum dy`` over all elements
    with affine index k, compensated, summed in the order (a, b, s) ascending
    (C-contiguous ``dy`` and ``x``).

    The Sum2 accumulators are ``acc[0] + acc[1]`` (dweight) and
    ``acc[2] + acc[3]`` (dbias), shape (4, P * Q): the sums continue from what
    they hold, so consecutive bands of sets (``x[:, b0:b1]``, b ascending, when
    ``A == 1``) give the bits of one call over all of them;
    :func:`affine_result` rounds them to ``dweight``, ``dbias``.

    Parallel over (p, block of ``block`` consecutive q): each affine parameter
    is reduced by exactly one thread, so the result depends neither on the
    thread count nor on ``block`` (which only shapes the work: see
    :func:`affine_block`).  With one parameter per position (``T == 1``) the
    parameters of a block are summed as vectors
    (:func:`~refnorm.ops._runs._affine_lanes`), else one term at a time
    (:func:`~refnorm.ops._sets._affine_sets`).
    """
    if T == 1:
        _affine_lanes(dy, x, stats, P, Q, acc, block)
    else:
        _affine_sets(dy, x, stats, P, Q, T, acc, block)


__all__ = [
    "CHUNK",
    "LANES",
    "M2",
    "M2_LO",
    "MEAN",
    "MEAN_LO",
    "MODE_BATCH_STATS",
    "MODE_CONST_STATS",
    "MODE_RMS",
    "NSTATS",
    "RSTD",
    "RSTD_LO",
    "affine_block",
    "affine_result",
    "backward_affine",
    "backward_input",
    "backward_sets",
    "divide_m2",
    "empty_stats",
    "fast_two_sum",
    "forward",
    "moments",
    "normalize",
    "rstd_of_var",
]
