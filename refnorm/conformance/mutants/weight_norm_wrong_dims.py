"""Mutant: weight norm taken over ``dim`` itself instead of over every other dimension.

Bug class: the reduction axes read backwards.  ``torch._weight_norm(v, g, dim)``
(and the paper's per-output-unit length) keeps ``dim`` and takes the L2 norm over
every OTHER dimension, ``norm_except_dim(v, 2, dim)``: with the default ``dim=0`` one
norm per output row of a Linear weight.  Reading ``dim`` as the axis to reduce,
``v.norm(dim=dim, keepdim=True)``, gives one norm per INPUT column instead (and for
``dim=-1``, meant as the whole tensor, a norm over the last dimension).
Affects: weight_norm, weight_norm_backward, weight_norm_stats (every case with more than
one slice and slices of more than one element).

The unmutated control is :data:`CONTROL`: the same float32 NumPy code with the
right axes (numpy32 has no weight norm).
"""

from __future__ import annotations

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class WeightNorm32:
    """Weight norm in float32 NumPy, outputs as float64: ``n = sqrt(sum v^2)`` over ``axes``,
    ``w = v (g / n)``; backward (written for any reduction axes, ``G`` = g broadcast)
    ``dv = G dy / n - v / n^3 sum_axes(dy G v)``, ``dg = sum of dy v / n down to g's shape``."""

    def __init__(self, wrong_dims):
        self.wrong_dims = wrong_dims

    def _axes(self, ndim, dim):
        whole = dim is None or dim == -1
        k = ndim - 1 if whole else dim % ndim
        if self.wrong_dims:
            return (k,)  # the bug: the norm over dim itself
        return tuple(range(ndim)) if whole else tuple(i for i in range(ndim) if i != k)

    def _fwd(self, v, g, dim):
        f = np.float32
        vf = np.asarray(v).astype(f)
        gf = np.asarray(g).astype(f)
        axes = self._axes(vf.ndim, dim)
        n = np.sqrt((vf * vf).sum(axis=axes, keepdims=True, dtype=f))
        return vf, gf, axes, n

    def weight_norm_stats(self, v, g, dim=0):
        with np.errstate(all="ignore"):
            vf, gf, axes, n = self._fwd(v, g, dim)
            w = vf * (gf / n)
        norm = n.reshape(()) if n.size == 1 and np.ndim(g) == 0 else n
        if norm.shape != np.shape(g) and norm.size == np.size(g):
            norm = norm.reshape(np.shape(g))
        return w.astype(np.float64), {"norm": norm.astype(np.float64)}

    def weight_norm(self, v, g, dim=0):
        return self.weight_norm_stats(v, g, dim)[0]

    def weight_norm_backward(self, dy, v, g, dim=0):
        with np.errstate(all="ignore"):
            vf, gf, axes, n = self._fwd(v, g, dim)
            dyf = np.asarray(dy).astype(np.float32)
            G = np.broadcast_to(gf.reshape(gf.shape if gf.ndim == vf.ndim else (1,) * vf.ndim), vf.shape)
            s = (dyf * G * vf).sum(axis=axes, keepdims=True, dtype=np.float32)
            dv = G * dyf / n - vf * (s / (n * n * n))
            t = dyf * vf / n
            gshape = np.shape(g)
            if len(gshape) == vf.ndim:
                red = tuple(i for i in range(vf.ndim) if gshape[i] == 1)
                dg = t.sum(axis=red, keepdims=True, dtype=np.float32)
            else:
                dg = np.asarray(t.sum(dtype=np.float32)).reshape(gshape)
        return {"v": dv.astype(np.float64), "g": dg.astype(np.float64)}


_RIGHT = WeightNorm32(wrong_dims=False)
_BUGGY = WeightNorm32(wrong_dims=True)
#: the unmutated base for weight norm (numpy32 has none): the same arithmetic, the right axes
CONTROL = {"weight_norm": _RIGHT.weight_norm, "weight_norm_backward": _RIGHT.weight_norm_backward,
           "weight_norm_stats": _RIGHT.weight_norm_stats}

BACKEND_INFO = {"name": "weight_norm_wrong_dims",
                "description": "weight norm over dim itself (a per-input-channel norm), not over every other dim"}
AFFECTS = ("weight_norm", "weight_norm_backward", "weight_norm_stats")
DEMO_INPUT = _demo.demo("weight_norm", _demo.noncentred((4, 6)),
                        (1.0 + 0.5 * _demo.rng(1).standard_normal((4, 1))).astype(np.float32))
export(NumpyBackend(), globals())
weight_norm = _BUGGY.weight_norm
weight_norm_backward = _BUGGY.weight_norm_backward
weight_norm_stats = _BUGGY.weight_norm_stats
