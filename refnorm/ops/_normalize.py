"""Python glue between the public ops and the kernels of :mod:`refnorm.ops._kernels`.

An op module reshapes its validated float64 input to the canonical view
``(A, B, S)``, builds its affine vectors (length ``P * Q``) and calls these
helpers.  Nothing here validates arguments: that is the op module's job, done
before any of this runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels as K


@dataclass(frozen=True)
class Stats:
    """Double-double statistics of the reduction sets (length ``B``, or the
    period of a per-channel running statistic)."""

    mean: np.ndarray
    mean_lo: np.ndarray
    rstd: np.ndarray
    rstd_lo: np.ndarray
    m2: np.ndarray | None = None  # centred sum of squares (batch statistics only)
    m2_lo: np.ndarray | None = None
    n: int = 0  # size of each reduction set
    const: bool = False  # True: running statistics, constants for the backward

    @property
    def period(self) -> int:
        return self.mean.shape[0]

    def var(self, correction: int = 0) -> np.ndarray:
        """``m2 / (n - correction)`` rounded once (batch statistics only):
        ``correction=0`` is the biased variance used for normalizing,
        ``correction=1`` the unbiased one PyTorch puts in ``running_var``.
        NaN where ``n - correction <= 0``."""
        d = self.n - correction
        if d <= 0:
            return np.full_like(self.m2, np.nan)
        out = np.empty_like(self.m2)
        K.divide_m2(self.m2, self.m2_lo, d, out)
        return out


def batch_stats(x3: np.ndarray, eps: float, *, center: bool = True) -> Stats:
    """Statistics of each reduction set ``x3[:, b, :]``."""
    B = x3.shape[1]
    mean, mean_lo, m2, m2_lo, rstd, rstd_lo = (np.empty(B) for _ in range(6))
    K.moments(x3, center, float(eps), mean, mean_lo, m2, m2_lo, rstd, rstd_lo)
    return Stats(mean, mean_lo, rstd, rstd_lo, m2, m2_lo, x3.shape[0] * x3.shape[2])


def const_stats(mean: np.ndarray, var: np.ndarray, eps: float) -> Stats:
    """Statistics given as constants (running mean and variance)."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    var = np.ascontiguousarray(var, dtype=np.float64)
    rstd = np.empty_like(var)
    rstd_lo = np.empty_like(var)
    K.rstd_of_var(var, float(eps), rstd, rstd_lo)
    return Stats(mean, np.zeros_like(mean), rstd, rstd_lo, const=True)


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


def forward(x3, stats: Stats, weight, bias, P: int, Q: int) -> np.ndarray:
    """``y = weight * xhat + bias`` on the canonical view; affine of length P * Q."""
    T = _inner(x3, Q)
    w, b = affine_vectors(weight, bias, P * Q)
    y3 = np.empty_like(x3)
    K.forward(x3, stats.mean, stats.mean_lo, stats.rstd, stats.rstd_lo, stats.period, w, b, P, Q, T, y3)
    return y3


def backward(dy3, x3, stats: Stats, weight, P: int, Q: int, *, rms: bool = False, affine: bool = True):
    """Input gradient and (if ``affine``) the raw ``dweight``/``dbias`` vectors
    (length P * Q; zeros where a parameter touches no element)."""
    T = _inner(x3, Q)
    w, _ = affine_vectors(weight, None, P * Q)
    if stats.const:
        mode = K.MODE_CONST_STATS
    elif rms:
        mode = K.MODE_RMS
    else:
        mode = K.MODE_BATCH_STATS
    dx3 = np.empty_like(x3)
    K.backward_input(dy3, x3, stats.mean, stats.mean_lo, stats.rstd, stats.rstd_lo, stats.period,
                     w, P, Q, T, mode, dx3)
    if not affine:
        return dx3, None, None
    dweight = np.empty(P * Q)
    dbias = np.empty(P * Q)
    K.backward_affine(dy3, x3, stats.mean, stats.mean_lo, stats.rstd, stats.rstd_lo, stats.period,
                      P, Q, T, dweight, dbias)
    return dx3, dweight, dbias
