"""Mutant: ``normalize`` divides by ``||x||_p`` without the ``eps`` clamp.

Bug class: a missing denominator guard (E2, zero sets).  ``F.normalize`` divides
by ``x.norm(p, dim).clamp_min(eps)``; an implementation that writes
``x / x.norm(p, dim)`` -- the textbook ``x / ||x||`` of cosine-similarity and
embedding code -- agrees on every slice whose norm exceeds ``eps`` and returns
``0/0 = NaN`` on an all-zero slice (and ``x / tiny`` where the clamp should
hold the denominator at ``eps``); its backward is NaN or inf there too.
The corpus catches it with ``normalize/zero_row`` and ``normalize/clamp_active``.

This module is a small NumPy backend of ``normalize`` alone (numpy32 has no
``normalize``), float64 for float64 input and float32 otherwise: each slice scaled by a power of two near its ``max|x|``
(exact), the powers summed in float32, the root taken, the clamp applied
(:data:`BASE`, the unmutated control) -- or, in the mutant, not applied.
Affects: normalize, normalize_backward, normalize_stats (slices with norm < eps).
"""

from __future__ import annotations

import math

import numpy as np

from . import _demo



def _acc(dtype):
    """The working precision: float64 for float64 input, float32 for the others (as numpy32)."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


class NormalizeBackend:
    """``F.normalize`` in float32 (float64 for float64 input), the backward by its formula ``dx = (dy - [N >= eps] c g) / d``."""

    def _denominator(self, norm, eps):
        e = norm.dtype.type(eps)
        return np.maximum(norm, e), norm >= e  # clamp_min and its derivative

    def _prepare(self, x, p, dim):
        xa = np.asarray(x)
        _F = _acc(xa.dtype)
        xf = xa.astype(_F)
        k = dim % xf.ndim
        a = np.abs(xf)
        amax = a.max(axis=k, keepdims=True) if xf.shape[k] else np.zeros_like(a.sum(axis=k, keepdims=True))
        if p == math.inf:
            norm = amax
        else:
            two = np.ldexp(_F(1), np.frexp(np.where(amax > 0, amax, _F(1)))[1]).astype(_F)
            s = (a / two).astype(_F)
            norm = (np.sum(s ** _F(p), axis=k, keepdims=True, dtype=_F) ** _F(1.0 / p) * two).astype(_F)
        return xa.dtype, xf, k, norm

    def normalize_stats(self, x, p=2.0, dim=1, eps=1e-12):
        dt, xf, k, norm = self._prepare(x, p, dim)
        with np.errstate(all="ignore"):
            d, _ = self._denominator(norm, eps)
            y = (xf / d).astype(dt)
        return y, {"norm": np.squeeze(d, k).astype(dt)}

    def normalize(self, x, p=2.0, dim=1, eps=1e-12):
        return self.normalize_stats(x, p, dim, eps)[0]

    def normalize_backward(self, dy, x, p=2.0, dim=1, eps=1e-12):
        dt, xf, k, norm = self._prepare(x, p, dim)
        _F = xf.dtype.type
        g0 = np.asarray(dy).astype(_F)
        with np.errstate(all="ignore"):
            d, ind = self._denominator(norm, eps)
            y = xf / d
            c = np.sum(g0 * y, axis=k, keepdims=True, dtype=_F)
            if p == 2.0:
                g = y
            elif p == math.inf:
                m = np.abs(xf) == norm
                g = np.sign(xf) * m / m.sum(axis=k, keepdims=True)
            else:
                g = np.sign(xf) * np.abs(y) ** _F(p - 1.0)
            dx = (g0 - np.where(ind, c * g, _F(0))) / d
        return {"x": dx.astype(dt)}


class Backend(NormalizeBackend):
    def _denominator(self, norm, eps):
        return norm, np.ones(norm.shape, dtype=bool)  # the bug: no clamp_min(eps)


def _export(backend, namespace):
    for name in ("normalize", "normalize_backward", "normalize_stats"):
        namespace[name] = getattr(backend, name)


class _Module:
    pass


#: the unmutated control (what ``test_numpy32_passes_every_demo_input`` runs for this mutant)
BASE = _Module()
_export(NormalizeBackend(), BASE.__dict__)

BACKEND_INFO = {"name": "normalize_no_eps_clamp",
                "description": "normalize divides by ||x||_p without clamp_min(eps): NaN on a zero slice (E2)"}
AFFECTS = ("normalize", "normalize_backward", "normalize_stats")
_X = _demo.rng(0).standard_normal((3, 8)).astype(np.float32)
_X[1] = 0.0
DEMO_INPUT = _demo.demo("normalize", _X)
_export(Backend(), globals())
