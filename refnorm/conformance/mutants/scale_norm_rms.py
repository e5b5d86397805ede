"""Mutant: ScaleNorm divides by the RMS ``||x|| / sqrt(d)`` instead of the L2 norm ``||x||``.

Bug class: convention confusion between ScaleNorm and RMSNorm.  The paper
(Nguyen & Salazar, arXiv:1910.05895, eq. 8) and its authors' code divide by the
L2 norm, ``g x / max(||x||, eps)`` with ``g`` initialised to ``sqrt(d)``.  A
widely copied re-implementation (lucidrains' x-transformers ``ScaleNorm``, and
from it OpenMMLab mmpose's ``ScaleNorm`` in ``rtmcc_block.py`` and others) writes
``norm = torch.norm(x, dim=-1, keepdim=True) * dim ** -0.5;
x / norm.clamp(min=eps) * g`` with ``g`` initialised to 1: the RMS, i.e. the
paper's layer with ``g`` reparametrised by ``sqrt(d)`` and the floor ``eps``
moved onto the RMS.  Loaded as a ScaleNorm backend it is ``sqrt(d)`` times too
large (and its clamp switches at ``||x|| = sqrt(d) eps``).
Affects: scale_norm, scale_norm_backward, scale_norm_stats (every case with d > 1).

The unmutated base is :class:`ScaleNorm32` (:data:`BASE`): plain float32
NumPy with the authors' formula (numpy32 has no ScaleNorm).
"""

from __future__ import annotations

import numpy as np

from . import _demo


class ScaleNorm32:
    """ScaleNorm in float32 NumPy (pairwise sums), outputs as float64: ``r = 1/max(norm, eps)``,
    ``y = g x r``; backward ``dx = g r (dy - ind xhat <dy, xhat>)``, ``dg = sum <dy, xhat>``."""

    def norm(self, x):
        return np.sqrt((x * x).sum(axis=-1, keepdims=True, dtype=np.float32))

    def _fwd(self, x, g, eps):
        f = np.float32
        xf = np.asarray(x).astype(f)
        gf = np.asarray(g, dtype=np.float64).astype(f)
        n = self.norm(xf)
        c = np.maximum(n, f(eps))
        r = f(1) / c
        xhat = xf * r
        return xf, gf, n, r, xhat, n >= f(eps)

    def scale_norm(self, x, g, eps=1e-5):
        return self.scale_norm_stats(x, g, eps)[0]

    def scale_norm_stats(self, x, g, eps=1e-5):
        with np.errstate(all="ignore"):
            _, gf, _, r, xhat, _ = self._fwd(x, g, eps)
            y = gf.reshape(()) * xhat
        return y.astype(np.float64), {"rnorm": r[..., 0].astype(np.float64)}

    def scale_norm_backward(self, dy, x, g, eps=1e-5):
        with np.errstate(all="ignore"):
            _, gf, _, r, xhat, ind = self._fwd(x, g, eps)
            dyf = np.asarray(dy).astype(np.float32)
            c = (dyf * xhat).sum(axis=-1, keepdims=True, dtype=np.float32)
            t = np.where(ind, dyf - xhat * c, dyf)
            dx = gf.reshape(()) * (r * t)
            dg = np.full(np.shape(g), c.sum(dtype=np.float32))
        return {"x": dx.astype(np.float64), "g": dg.astype(np.float64)}


class Backend(ScaleNorm32):
    def norm(self, x):
        d = x.shape[-1]
        return np.sqrt((x * x).sum(axis=-1, keepdims=True, dtype=np.float32)) * np.float32(d ** -0.5)  # the bug


PROTOCOL = ("scale_norm", "scale_norm_backward", "scale_norm_stats")
BASE = ScaleNorm32()
BACKEND_INFO = {"name": "scale_norm_rms", "description": "ScaleNorm divides by the RMS ||x||/sqrt(d), not ||x||"}
AFFECTS = PROTOCOL
DEMO_INPUT = _demo.demo("scale_norm", _demo.noncentred((4, 8)), np.array([8 ** 0.5], np.float32))
_backend = Backend()
for _name in PROTOCOL:
    globals()[_name] = getattr(_backend, _name)
