"""Mutant: adaLN with the gain ``scale`` instead of ``1 + scale``.

Bug class: a convention trap when porting adaLN between codebases.  DiT
(facebookresearch/DiT ``models.py``) modulates with ``x * (1 + scale) + shift``
and zero-initialises the ``adaLN_modulation`` projection, so that every block
starts as the identity gain; other codebases regress the gain itself (``x *
scale + shift``, initialised to ones, as a FiLM layer or an affine LayerNorm's
weight).  A port that keeps DiT's weights but drops the ``1 +`` -- or keeps the
``1 +`` with the other codebase's weights -- is off by exactly ``xhat`` in ``y``
(the gain is 1 lower), and its ``dx`` is scaled by ``scale`` instead of
``1 + scale``.  Caught by every value case of ``ada_layer_norm`` in the
committed corpus (``dit_tokens`` first; in ``gain_near_zero`` the wrong gain is
-1 instead of ~0).
Affects: ada_layer_norm, ada_layer_norm_backward, ada_layer_norm_stats (the
other protocol functions are numpy32's).

The arithmetic is a plain NumPy adaLN (float64 for float64 inputs, float32
otherwise; two-pass statistics; outputs rounded to x's dtype, the parameter
gradients to the parameters' dtype); :data:`CONTROL` is the same code with the
gain ``1 + scale`` (the unmutated base: numpy32 has no adaLN).
"""

from __future__ import annotations

import math

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


def _acc(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def _ns(normalized_shape):
    return (int(normalized_shape),) if np.ndim(normalized_shape) == 0 else tuple(int(d) for d in normalized_shape)


def _check(x, ns, params):
    """The argument errors refnorm raises (the mutant differs in the formula only)."""
    if x.ndim <= len(ns) or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {ns} must equal the trailing dimensions of x after a batch dimension, "
                         f"got x of shape {x.shape}")
    for name, p in params.items():
        if p is None:
            raise TypeError(f"{name} is required")
        if tuple(np.shape(p)) != (x.shape[0],) + ns:
            raise ValueError(f"{name} must have shape {(x.shape[0],) + ns}, got shape {tuple(np.shape(p))}")


class AdaLayerNorm:
    """adaLN in NumPy: LayerNorm without affine over ``normalized_shape``, then ``xhat * (one + scale) + shift``
    per sample (``one = 1``: DiT's ``modulate``; ``one = 0``: the bug)."""

    def __init__(self, one: float):
        self.one = one

    def _prep(self, x, normalized_shape, scale, shift, eps):
        x = np.asarray(x)
        ns = _ns(normalized_shape)
        _check(x, ns, {"scale": scale, "shift": shift})
        f = _acc(x.dtype)
        N, D = x.shape[0], math.prod(ns)
        x3 = x.astype(f).reshape(N, -1, D)
        mean = x3.mean(axis=2, keepdims=True, dtype=f)
        xc = x3 - mean
        var = (xc * xc).mean(axis=2, keepdims=True, dtype=f)
        rstd = f(1) / np.sqrt(var + f(eps))
        xhat = xc * rstd
        gain = f(self.one) + np.asarray(scale).astype(f).reshape(N, 1, D)
        return x, ns, f, (N, D), mean, rstd, xhat, gain

    def ada_layer_norm_stats(self, x, normalized_shape, scale, shift, eps=1e-6):
        x, ns, f, (N, D), mean, rstd, xhat, gain = self._prep(x, normalized_shape, scale, shift, eps)
        y = xhat * gain + np.asarray(shift).astype(f).reshape(N, 1, D)
        lead = x.shape[: x.ndim - len(ns)]
        return y.reshape(x.shape).astype(x.dtype), {"mean": mean.reshape(lead).astype(np.float64),
                                                    "rstd": rstd.reshape(lead).astype(np.float64)}

    def ada_layer_norm(self, x, normalized_shape, scale, shift, eps=1e-6):
        return self.ada_layer_norm_stats(x, normalized_shape, scale, shift, eps)[0]

    def ada_layer_norm_backward(self, dy, x, normalized_shape, scale, shift, eps=1e-6):
        x, ns, f, (N, D), _, rstd, xhat, gain = self._prep(x, normalized_shape, scale, shift, eps)
        dyf = np.asarray(dy).astype(f).reshape(xhat.shape)
        g = dyf * gain
        c1 = g.mean(axis=2, keepdims=True, dtype=f)
        c2 = (g * xhat).mean(axis=2, keepdims=True, dtype=f)
        dx = rstd * (g - c1 - xhat * c2)
        pshape = (N,) + ns
        return {"x": dx.reshape(x.shape).astype(x.dtype),
                "scale": (dyf * xhat).sum(axis=1, dtype=f).reshape(pshape).astype(np.asarray(scale).dtype),
                "shift": dyf.sum(axis=1, dtype=f).reshape(pshape).astype(np.asarray(shift).dtype)}


_BUGGY = AdaLayerNorm(one=0.0)
_RIGHT = AdaLayerNorm(one=1.0)
#: the unmutated base for adaLN (numpy32 has none): the same arithmetic with the gain 1 + scale
CONTROL = {"ada_layer_norm": _RIGHT.ada_layer_norm, "ada_layer_norm_backward": _RIGHT.ada_layer_norm_backward,
           "ada_layer_norm_stats": _RIGHT.ada_layer_norm_stats}

BACKEND_INFO = {"name": "ada_ln_scale_without_one",
                "description": "adaLN gain is scale, not 1 + scale (DiT's modulate ported without the 1 +)"}
AFFECTS = ("ada_layer_norm", "ada_layer_norm_backward", "ada_layer_norm_stats")
_S = (0.2 * _demo.rng(3).standard_normal((2, 8))).astype(np.float32)
DEMO_INPUT = _demo.demo("ada_layer_norm", _demo.noncentred((2, 3, 8), loc=0.3, scale=1.2), 8, _S, _S[::-1].copy())
export(NumpyBackend(), globals())
ada_layer_norm = _BUGGY.ada_layer_norm
ada_layer_norm_backward = _BUGGY.ada_layer_norm_backward
ada_layer_norm_stats = _BUGGY.ada_layer_norm_stats
