"""Where an op's reduction sets, statistics and parameters lie in its input.

Every op module has a ``layout`` function of *shapes* (and the attributes that
shape the computation: ``normalized_shape``, ``num_groups`` ...).  Its own
``_prepare`` views the validated input through it, and the rest of refnorm
reads the same record instead of knowing the op: the golden catalogue takes
the shapes of the saved statistics from it, the tolerance model its reduction
sets and how a weight broadcasts, the input recipes the sets an exact input
is built in.

The canonical view ``(A, B, S)`` is the one of :mod:`refnorm.ops._kernels`:
the input, C-contiguous, reshaped (never copied) to ``x3[a, b, s]``; set
``b`` is ``{x3[a, b, s] : a < A, s < S}`` (``n = A * S`` elements).  The
affine ``(P, Q, T)`` says which parameter element each position uses:
``w[(b % P) * Q + s // T]``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Layout:
    """The shape facts of one call of an op.

    Attributes
    ----------
    shape : the normalized input's shape.
    stats : saved statistic name -> its shape (empty for an op that saves none).
    view : ``(A, B, S)``, the canonical view; None for a layer that normalizes
        over more than one set structure (GN+, BLN).
    affine : ``(P, Q, T)``, the affine index rule; None where ``view`` is None.
    param_axes : the axes of the input a weight or bias spans (its shape is
        ``shape[i] for i in param_axes``).
    """

    shape: tuple[int, ...]
    stats: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    view: tuple[int, int, int] | None = None
    affine: tuple[int, int, int] | None = None
    param_axes: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "stats", MappingProxyType({k: tuple(int(s) for s in v)
                                                            for k, v in self.stats.items()}))
        if self.view is not None:
            A, B, S = self.view
            if A * B * S != math.prod(self.shape):
                raise ValueError(f"view {self.view} does not hold the {math.prod(self.shape)} elements of "
                                 f"shape {self.shape}")

    @property
    def param_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.param_axes)

    # ---- reduction sets

    def _need_view(self):
        if self.view is None:
            raise ValueError("this layer has no single canonical view (A, B, S)")
        return self.view

    def to_sets(self, a: np.ndarray) -> np.ndarray:
        """``a`` (shaped like the input) as ``(B, A * S)``: one row per reduction set."""
        A, B, S = self._need_view()
        if A == 1:
            return a.reshape(B, S)
        return a.reshape(A, B, S).transpose(1, 0, 2).reshape(B, A * S)

    def from_sets(self, s: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_sets`."""
        A, B, S = self._need_view()
        if A == 1:
            return s.reshape(self.shape)
        return s.reshape(B, A, S).transpose(1, 0, 2).reshape(self.shape)

    # ---- parameters

    def param_view(self, w: np.ndarray | None) -> np.ndarray | None:
        """A weight-like parameter broadcast over the input (read-only view)."""
        if w is None:
            return None
        shape = [s if i in self.param_axes else 1 for i, s in enumerate(self.shape)]
        return np.broadcast_to(w.reshape(shape), self.shape)

    def param_sum(self, a: np.ndarray) -> np.ndarray:
        """Sum an input-shaped array over the positions that share each parameter element."""
        axes = tuple(i for i in range(a.ndim) if i not in self.param_axes)
        return a.sum(axis=axes) if axes else a.copy()


def channels(shape, view, affine, stats) -> Layout:
    """A layout whose affine is one value per channel (axis 1 of ``(N, C, *spatial)``)."""
    return _channels(tuple(shape), tuple(view), tuple(affine), tuple((k, tuple(v)) for k, v in stats.items()))


def trailing(shape, normalized_shape, stats) -> Layout:
    """LayerNorm-like: each row of the trailing ``normalized_shape`` is a set,
    the affine is per element of the row (``P = 1``, ``T = 1``); ``stats``:
    the names of the saved statistics."""
    return _trailing(tuple(shape), tuple(normalized_shape), tuple(stats))


# A Layout is immutable, so one record serves every call with the same shapes:
# the ops build one per call, and building it costs more than the rest of
# the validation of a small input (measured: 14 us against ~2 us a check).
@functools.lru_cache(maxsize=1024)
def _channels(shape, view, affine, stats) -> Layout:
    return Layout(shape, dict(stats), view, affine, (1,))


@functools.lru_cache(maxsize=1024)
def _trailing(shape, ns, stats) -> Layout:
    lead = tuple(shape[: len(shape) - len(ns)])
    D = math.prod(ns)
    return Layout(shape, {k: lead for k in stats}, (1, math.prod(lead), D), (1, D, 1),
                  tuple(range(len(shape) - len(ns), len(shape))))


__all__ = ["Layout", "channels", "trailing"]
