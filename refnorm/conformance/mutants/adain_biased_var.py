"""Mutant: AdaIN with the BIASED variance (divisor M) instead of the reference code's unbiased one.

Bug class: variance convention (the E26 family, ``unbiased_normalization`` the
other way round).  The authors' ``calc_mean_std`` (naoto0804/pytorch-AdaIN,
``function.py``) takes ``feat.view(N, C, -1).var(dim=2)``, whose default
``correction=1`` divides by ``M - 1``; a port that reuses InstanceNorm's
statistics (``F.instance_norm``, ``torch.var_mean(..., unbiased=False)``,
``jnp.var``) divides by ``M``.  The content's rstd grows by ``sqrt(M/(M - 1))``
and the style's std shrinks by ``sqrt((Ms - 1)/Ms)`` (13 % for a 2x2 map): where
``M == Ms`` the two cancel in ``y`` and in the gradients (up to eps) and only the
saved statistics show the bug; where the sizes differ ``y`` is off too.  Caught
by the committed corpus (``adaptive_instance_norm/*``: the statistics of every
value case, and ``y``, ``dx``, ``dstyle`` of ``nchw_style_larger``, ``ncl_odd``...).
Affects: adaptive_instance_norm, adaptive_instance_norm_backward, adaptive_instance_norm_stats.

Only the AdaIN functions are offered (the other ops are not implemented by
this backend).  The computation is float64 autograd NumPy of the formula; the
backward is autograd's VJP, so the bug is the only difference: :data:`CONTROL`
is the same code with the unbiased variance.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp

from . import _demo


def _f64(a):
    return np.asarray(a).astype(np.float64)


def _check(x, style):
    """The argument errors refnorm raises (the mutant differs in the formula only)."""
    for name, a in (("x", x), ("style", style)):
        if a.ndim < 3:
            raise ValueError(f"{name} must have at least 3 dimensions ((N, C, *spatial)), got shape {a.shape}")
    if style.shape[:2] != x.shape[:2]:
        raise ValueError(f"style must have the N and C of x {x.shape[:2]}, got shape {style.shape}")
    for name, a in (("x", x), ("style", style)):
        if math.prod(a.shape[2:]) < 2:
            raise ValueError(f"{name} must have at least 2 spatial positions per (sample, channel)")


def _functions(correction):
    """The AdaIN protocol functions with the variance divisor ``M - correction``."""

    def moments(f, eps):
        N, C = f.shape[0], f.shape[1]
        M = math.prod(f.shape[2:])
        f3 = anp.reshape(f, (N, C, M))
        mean = anp.mean(f3, axis=2, keepdims=True)
        var = anp.sum((f3 - mean) ** 2, axis=2, keepdims=True) / (M - correction)  # correction 0: the bug
        return f3, mean, anp.sqrt(var + eps)

    def forward(x, style, eps):
        x3, m, sd = moments(x, eps)
        _, sm, ss = moments(style, eps)
        return anp.reshape((x3 - m) / sd * ss + sm, x.shape), (m, sd, sm, ss)

    def stats(x, style, eps=1e-5):
        x, style = _f64(x), _f64(style)
        _check(x, style)
        y, (m, sd, sm, ss) = forward(x, style, eps)
        N, C = x.shape[:2]
        return y, {"mean": m.reshape(N, C), "rstd": (1.0 / sd).reshape(N, C), "style_mean": sm.reshape(N, C),
                   "style_std": ss.reshape(N, C)}

    def fwd(x, style, eps=1e-5):
        return stats(x, style, eps)[0]

    def backward(dy, x, style, eps=1e-5):
        x, style = _f64(x), _f64(style)
        _check(x, style)
        vx, _ = make_vjp(lambda v: forward(v, style, eps)[0])(x)
        vs, _ = make_vjp(lambda v: forward(x, v, eps)[0])(style)
        return {"x": vx(_f64(dy)), "style": vs(_f64(dy))}

    return fwd, backward, stats


adaptive_instance_norm, adaptive_instance_norm_backward, adaptive_instance_norm_stats = _functions(0)
_right = _functions(1)
CONTROL = {"adaptive_instance_norm": _right[0], "adaptive_instance_norm_backward": _right[1],
           "adaptive_instance_norm_stats": _right[2]}

BACKEND_INFO = {"name": "adain_biased_var",
                "description": "AdaIN with the biased variance (divisor M), not calc_mean_std's unbiased var(dim=2)"}
AFFECTS = ("adaptive_instance_norm", "adaptive_instance_norm_backward", "adaptive_instance_norm_stats")
DEMO_INPUT = _demo.demo("adaptive_instance_norm", _demo.noncentred((2, 3, 2, 2), loc=0.3, scale=1.0),
                        _demo.noncentred((2, 3, 3, 2), seed=3, loc=-0.5, scale=2.0))
