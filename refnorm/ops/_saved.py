"""Saved statistics: what ``<op>_stats`` returns and ``<op>_backward(..., stats=)`` takes back.

The forward's statistics are double-double (:mod:`refnorm.ops._sets`: the
mean and rstd each a high and a low part).  ``<op>_stats`` returns the high
parts, ``{"mean": ..., "rstd": ...}`` (RMSNorm: ``{"rstd": ...}``), as it
always has -- the keys and bits the conformance protocol and the golden
corpus compare.  The low parts must not become keys of that dict: the
protocol's ``<op>_stats`` of every backend returns exactly those keys, and
tests and tools treat refnorm's keys as the expected outputs.  So the dict is
a :class:`SavedStats`, a ``dict`` subclass with the same keys and values,
that also keeps, out of sight of anything reading it as a dict:

* the whole statistics array of the forward (rows ``MEAN``, ``MEAN_LO``,
  ``RSTD``, ``RSTD_LO``; a private copy, never handed out), and
* a fingerprint of the call it belongs to: the op's kernel family, the mode
  (batch, RMS or constant statistics), the shape of the normalized input,
  ``eps``, and up to :data:`SAMPLE` values of the input read at a fixed
  stride (for constant statistics, of ``running_mean`` and ``running_var``).

``<op>_backward(..., stats=s)`` checks ``s`` against the call (type, keys,
shapes, dtype, that the high parts still equal the private copy, the
fingerprint) before any kernel runs and then hands the private array to the
backward kernel, which skips its statistics pass; the result has the bits of
the backward without ``stats``.  The fingerprint is what can be checked
without reading all of ``x``: a dict from another call (other shape, eps,
mode or data) is refused, but an input changed in a place the sample does
not look at is not detected (hashing all of ``x`` would cost more than the
statistics pass that ``stats`` saves).

A plain dict with the same keys (e.g. after ``dict(s)``, or statistics
saved by another framework) is refused: it lacks the low parts, and the
backward could not give the bits it promises.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _kernels as K

#: At most this many values of the input (evenly strided, the last one
#: included) go into a fingerprint.
SAMPLE = 64

# modes of the fingerprint
BATCH = "batch statistics"
RMS = "batch statistics, no centring (RMS)"
CONST = "running statistics (constants)"


class SavedStats(dict):
    """The statistics dict of ``<op>_stats``: ``{"mean": ..., "rstd": ...}``
    (RMSNorm ``{"rstd": ...}``), float64 arrays of the shapes of the op's
    layout, plus what ``<op>_backward(..., stats=)`` needs to reproduce the
    bits of the backward without recomputing them (see the module docstring).

    It behaves as a dict in every way; ``dict(s)`` and ``{**s}`` keep only
    the high parts, which a backward cannot use.
    """

    __slots__ = ("_data", "_key", "_sample")

    def __init__(self, items, data, key, sample):
        super().__init__(items)
        self._data = data
        self._key = key
        self._sample = sample

    def __reduce__(self):  # pickling and copy keep the private parts
        return (SavedStats, (dict(self), self._data, self._key, self._sample))

    @property
    def fingerprint(self) -> dict:
        """What the statistics belong to: ``op``, ``mode``, ``shape`` (of the
        normalized input), ``eps`` (read-only information, for messages)."""
        op, mode, shape, eps = self._key
        return {"op": op, "mode": mode, "shape": shape, "eps": eps}


def _sample(*arrays) -> bytes:
    """Up to :data:`SAMPLE` values of each array at an even stride (the last
    included), as the bytes of their float64 values."""
    parts = []
    for a in arrays:
        flat = a.reshape(-1)
        n = flat.size
        if n:
            step = max(1, -(-n // (SAMPLE - 1)))
            if flat.dtype != np.float64:
                flat = flat.astype(np.float64)
            parts.append(flat[::step].tobytes())
            parts.append(flat[-1:].tobytes())
    return b"".join(parts)


def save(op: str, mode: str, x3: np.ndarray, eps: float, stats, names: tuple[str, ...],
         shapes: Mapping[str, tuple], running=None) -> SavedStats:
    """The :class:`SavedStats` of a forward on ``x3`` (the canonical float64
    view of the normalized input) with the statistics ``stats``
    (:class:`~refnorm.ops._normalize.Stats`); ``running``: ``(running_mean,
    running_var)`` for constant statistics."""
    rows = {"mean": stats.mean, "rstd": stats.rstd}
    items = {k: rows[k].reshape(shapes[k]) for k in names}
    data = np.array(stats.data)  # private copy: later changes of the returned arrays cannot reach it
    key = (op, mode, tuple(x3.shape), float(eps))
    sample = _sample(*running) if mode == CONST else _sample(x3)
    return SavedStats(items, data, key, sample)


def _bytes(a) -> bytes:
    return a.tobytes()  # float64 (checked), any layout: tobytes reads it in C order


def restore(stats, fn: str, op: str, mode: str, x3: np.ndarray, eps: float, names: tuple[str, ...],
            shapes: Mapping[str, tuple], running=None) -> np.ndarray:
    """Validate the ``stats`` argument of ``fn`` against the call and return
    the statistics array for the backward kernel (a fresh copy; ``stats`` is
    not modified).  ``TypeError`` for the wrong kind of object, ``ValueError``
    for one that does not belong to this call; raised before any kernel runs."""
    producer = fn[: -len("_backward")] + "_stats"
    if not isinstance(stats, SavedStats):
        want = ", ".join(f'"{k}": array of shape {tuple(shapes[k])}' for k in names)
        if isinstance(stats, Mapping):
            raise TypeError(f"stats must be the statistics dict returned by {producer} (a refnorm SavedStats "
                            f"{{{want}}}, which also keeps the low parts of the double-double mean and rstd); "
                            f"got a plain {type(stats).__name__} with keys {sorted(map(str, stats))}, which lacks "
                            "them (the backward could not give the bits of the backward without stats)")
        raise TypeError(f"stats must be None or the statistics dict returned by {producer} ({{{want}}}), "
                        f"got {type(stats).__name__}")
    if len(stats) != len(names) or any(k not in stats for k in names):
        raise ValueError(f"stats must have the keys {list(names)} of {producer}, got {sorted(map(str, stats))}")
    for k in names:
        v = stats[k]
        if not isinstance(v, np.ndarray) or v.dtype != np.float64:
            raise TypeError(f'stats["{k}"] must be a float64 numpy.ndarray, got '
                            f"{type(v).__name__}{'' if not isinstance(v, np.ndarray) else ' of dtype ' + str(v.dtype)}")
        if tuple(v.shape) != tuple(shapes[k]):
            raise ValueError(f'stats["{k}"] must have shape {tuple(shapes[k])} for this call, got shape '
                             f"{tuple(v.shape)}")
    s_op, s_mode, s_shape, s_eps = stats._key
    shape = tuple(x3.shape)
    if s_op != op:
        raise ValueError(f"stats were saved by {s_op}_stats, not {producer}")
    if s_mode != mode:
        raise ValueError(f"stats hold {s_mode}, but this call normalizes with {mode}")
    if s_shape != shape:
        raise ValueError(f"stats were saved for an input viewed as {s_shape}, this call's is {shape}")
    if not (s_eps == float(eps) or (np.isnan(s_eps) and np.isnan(eps))):
        raise ValueError(f"stats were saved with eps={s_eps!r}, this call has eps={float(eps)!r}")
    sample = _sample(*running) if mode == CONST else _sample(x3)
    if sample != stats._sample:
        what = "running_mean/running_var" if mode == CONST else "the input"
        raise ValueError(f"stats do not belong to this call: the values of {what} differ from those the "
                         "statistics were saved for")
    data = stats._data
    rows = {"mean": K.MEAN, "rstd": K.RSTD}
    for k in names:
        if _bytes(stats[k]) != _bytes(data[rows[k]]):
            raise ValueError(f'stats["{k}"] was changed after {producer} returned it (the low parts kept with '
                             "it no longer match)")
    return np.array(data)


__all__ = ["BATCH", "CONST", "RMS", "SavedStats", "restore", "save"]
