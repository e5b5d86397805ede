"""Mutant: EvoNorm-B0 in training takes the *unbiased* batch variance (divides by n - 1).

Bug class: a variance-convention trap (E26, the EvoNorm form of ``unbiased_normalization``).
timm's ``EvoNorm2dB0`` normalizes with ``x.float().var(dim=(0, 2, 3), unbiased=False)`` and
puts the unbiased estimate (``momentum * n/(n - 1)``) only into its running variance; a port
that writes ``x.var(dim=(0, 2, 3))`` -- PyTorch's default is ``unbiased=True`` -- or reuses the
running-variance formula in the forward divides by ``sqrt(var n/(n - 1) + eps)`` wherever the
batch term wins the maximum: ~4 % off for ``n = N H W = 12`` and invisible for large batches.
Caught by the corpus case ``evo_norm_b0/train_nchw`` (``n = 12``).
Affects: evo_norm_b0, evo_norm_b0_backward, evo_norm_b0_jvp (the other protocol functions are numpy32's).

The arithmetic is float64 NumPy (HIPS autograd differentiates the formula: the backward is
its VJP, forward mode its JVP), outputs rounded to their argument's dtype; :data:`CONTROL` is the
same code with the biased variance (the unmutated base: numpy32 has no EvoNorm-B0).
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import make_jvp, make_vjp

from ..backends.numpy32 import NumpyBackend, export
from . import _demo

NAMES = ("x", "weight", "bias", "v")


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _check(x, params, running_var, training):
    """The argument errors refnorm raises (the mutant differs in the formula only)."""
    if x.ndim != 4:
        raise ValueError(f"x must have at least 4 dimensions ((N, C, H, W)), got shape {x.shape}")
    for name, p in params.items():
        if p is None:
            raise TypeError(f"{name} is required")
        if p.shape != (x.shape[1],):
            raise ValueError(f"{name} must have shape ({x.shape[1]},), got shape {p.shape}")
    if not training and running_var is None:
        raise ValueError("running_var is required when training=False")


class EvoNormB0:
    """``evo_norm_b0``, its backward and forward mode; ``correction`` the batch variance's (0: timm's)."""

    def __init__(self, correction: int):
        self.correction = correction

    def _forward(self, x, weight, bias, v, running_var, training, eps):
        N, C, H, W = x.shape
        p = (1, C, 1, 1)
        if training:
            m = anp.mean(x, axis=(0, 2, 3), keepdims=True)
            n = N * H * W
            var = anp.sum((x - m) ** 2, axis=(0, 2, 3), keepdims=True) / (n - self.correction)  # the bug when 1
        else:
            var = anp.reshape(running_var, p)
        left = anp.sqrt(var + eps)
        mu = anp.mean(x, axis=(2, 3), keepdims=True)
        istd = anp.sqrt(anp.mean((x - mu) ** 2, axis=(2, 3), keepdims=True) + eps)
        d = anp.maximum(left, x * anp.reshape(v, p) + istd)
        return x / d * anp.reshape(weight, p) + anp.reshape(bias, p)

    def _args(self, x, weight, bias, v, running_var, training):
        args = {"x": _f64(x), "weight": _f64(weight), "bias": _f64(bias), "v": _f64(v)}
        rv = _f64(running_var)
        _check(args["x"], {k: args[k] for k in NAMES[1:]}, rv, training)
        return args, rv

    def _fn(self, args, rv, training, eps):
        def f(*vals):
            return self._forward(*vals, rv, training, eps)
        return f

    def evo_norm_b0(self, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
        args, rv = self._args(x, weight, bias, v, running_var, training)
        return self._forward(*args.values(), rv, training, eps).astype(np.asarray(x).dtype)

    def evo_norm_b0_backward(self, dy, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
        args, rv = self._args(x, weight, bias, v, running_var, training)
        f = self._fn(args, rv, training, eps)
        vals = list(args.values())
        given = {"x": x, "weight": weight, "bias": bias, "v": v}
        out = {}
        for i, k in enumerate(NAMES):
            def fi(a, i=i):
                return f(*[a if j == i else vals[j] for j in range(4)])
            vjp, _ = make_vjp(fi)(vals[i])
            out[k] = vjp(_f64(dy)).astype(np.asarray(given[k]).dtype)
        return out

    def evo_norm_b0_jvp(self, tangents, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
        args, rv = self._args(x, weight, bias, v, running_var, training)
        f = self._fn(args, rv, training, eps)
        vals = list(args.values())
        y = f(*vals)
        ty = np.zeros_like(y)
        for i, k in enumerate(NAMES):
            if tangents.get(k) is None:
                continue
            def fi(a, i=i):
                return f(*[a if j == i else vals[j] for j in range(4)])
            ty = ty + make_jvp(fi)(vals[i])(_f64(tangents[k]))[1]
        dt = np.asarray(x).dtype
        return y.astype(dt), ty.astype(dt)


_BUGGY = EvoNormB0(correction=1)
_RIGHT = EvoNormB0(correction=0)
#: the unmutated base for EvoNorm-B0 (numpy32 has none): the same code with the biased batch variance
CONTROL = {"evo_norm_b0": _RIGHT.evo_norm_b0, "evo_norm_b0_backward": _RIGHT.evo_norm_b0_backward,
           "evo_norm_b0_jvp": _RIGHT.evo_norm_b0_jvp}

BACKEND_INFO = {"name": "evo_norm_b0_unbiased_batch_var",
                "description": "EvoNorm-B0 training normalizes with the unbiased (n - 1) batch variance (E26)"}
AFFECTS = ("evo_norm_b0", "evo_norm_b0_backward", "evo_norm_b0_jvp")
_W, _B = _demo.affine((3,))
DEMO_INPUT = _demo.demo("evo_norm_b0", _demo.noncentred((2, 3, 2, 2), loc=0.3, scale=1.2), _W, _B,
                        np.full(3, 0.1, dtype=np.float32))
export(NumpyBackend(), globals())
evo_norm_b0 = _BUGGY.evo_norm_b0
evo_norm_b0_backward = _BUGGY.evo_norm_b0_backward
evo_norm_b0_jvp = _BUGGY.evo_norm_b0_jvp
