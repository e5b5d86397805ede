"""Mutant: Batch Renormalization with the gradient flowing through ``r`` and ``d``.

Bug class: a stop_gradient dropped.  Algorithm 1 of Ioffe (2017) defines
``r = stop_gradient(clip(sigma_B / sigma))`` and ``d = stop_gradient(clip((mu_B - mu) / sigma))``:
the backward is BatchNorm's scaled by ``r``.  A port that writes
``r = torch.clamp(sigma_b / sigma, ...)`` without ``.detach()`` (``.data`` in older code) gets
the same forward and a different backward wherever the clip is inactive, because ``r`` and ``d``
then depend on ``x``: ``d(xhat0 r + d)/dx`` picks up ``xhat0 dr/dx + dd/dx``.  Where both are
clipped the two agree (the clip is flat there).  Caught by the corpus cases
``batch_renorm/train_clip_inactive``, ``train_no_affine`` and ``deriv_train`` (their ``dx``).
Affects: batch_renorm_backward (the forward, stats and running update are right).

A float64 NumPy/autograd transcription of Algorithm 1 (the backward is autograd's VJP);
:data:`CONTROL` is the same code with ``r`` and ``d`` through ``getval`` (stop_gradient).
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.tracer import getval

from . import _demo


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _check(x, running_mean, running_var, r_max):
    """The argument errors refnorm raises that the corpus asks for (the mutant differs in the backward only)."""
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions ((N, C, *spatial)), got shape {x.shape}")
    if running_mean is None or running_var is None:
        raise TypeError("running_mean and running_var are required: arrays of shape (C,)")
    if not r_max >= 1.0:
        raise ValueError(f"r_max must be >= 1 (r is clipped to [1/r_max, r_max]), got {r_max}")


def _forward(stop, x, rm, rv, weight, bias, training, eps, r_max, d_max):
    C = x.shape[1]
    sh = (1, C) + (1,) * (x.ndim - 2)
    axes = (0,) + tuple(range(2, x.ndim))
    sigma = anp.sqrt(anp.reshape(rv, sh) + eps)
    if training:
        mean = anp.mean(x, axis=axes, keepdims=True)
        xc = x - mean
        sigma_b = anp.sqrt(anp.mean(xc * xc, axis=axes, keepdims=True) + eps)
        r = anp.clip(sigma_b / sigma, 1.0 / r_max, r_max)
        d = anp.clip((mean - anp.reshape(rm, sh)) / sigma, -d_max, d_max)
        if stop:
            r, d = getval(r), getval(d)
        xhat = xc / sigma_b * r + d
    else:
        xhat = (x - anp.reshape(rm, sh)) / sigma
    y = xhat if weight is None else xhat * anp.reshape(weight, sh)
    return y if bias is None else y + anp.reshape(bias, sh)


class BatchRenorm:
    """The protocol functions of ``batch_renorm``; ``stop``: r and d as constants (the right backward)."""

    def __init__(self, stop: bool):
        self.stop = stop

    def batch_renorm_stats(self, x, running_mean, running_var, weight=None, bias=None, training=False,
                           momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0):
        x, rm, rv, w, b = (_f64(v) for v in (x, running_mean, running_var, weight, bias))
        _check(x, rm, rv, r_max)
        y = _forward(True, x, rm, rv, w, b, training, eps, r_max, d_max)
        axes = (0,) + tuple(range(2, x.ndim))
        if training:
            mean, rstd = x.mean(axis=axes), 1.0 / np.sqrt(x.var(axis=axes) + eps)
        else:
            mean, rstd = rm.copy(), 1.0 / np.sqrt(rv + eps)
        return y, {"mean": mean, "rstd": rstd}

    def batch_renorm(self, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                     eps=1e-5, r_max=3.0, d_max=5.0):
        return self.batch_renorm_stats(x, running_mean, running_var, weight, bias, training, momentum, eps, r_max,
                                       d_max)[0]

    def batch_renorm_backward(self, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                              momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0):
        args = {"x": _f64(x), "weight": _f64(weight), "bias": _f64(bias)}
        rm, rv = _f64(running_mean), _f64(running_var)
        _check(args["x"], rm, rv, r_max)
        out = {}
        for k in [k for k, v in args.items() if v is not None]:
            def f(v, k=k):
                a = {**args, k: v}
                return _forward(self.stop, a["x"], rm, rv, a["weight"], a["bias"], training, eps, r_max, d_max)
            vjp, _ = make_vjp(f)(args[k])
            out[k] = vjp(_f64(dy))
        return out

    def batch_renorm_running_stats(self, x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                                   convention="torch"):
        x, rm, rv = _f64(x), _f64(running_mean), _f64(running_var)
        axes = (0,) + tuple(range(2, x.ndim))
        n = x.size // x.shape[1]
        f = momentum if momentum is not None else 1.0 / (num_batches_tracked + 1)
        return f * x.mean(axis=axes) + (1 - f) * rm, f * x.var(axis=axes) * (n / (n - 1)) + (1 - f) * rv


_BUGGY = BatchRenorm(stop=False)
_RIGHT = BatchRenorm(stop=True)
#: the unmutated base (numpy32 has no Batch Renormalization): the same code with r, d as constants
CONTROL = {name: getattr(_RIGHT, name) for name in ("batch_renorm", "batch_renorm_backward", "batch_renorm_stats",
                                                    "batch_renorm_running_stats")}

BACKEND_INFO = {"name": "brn_rd_differentiated",
                "description": "Batch Renormalization: r and d not detached, the gradient flows through them"}
AFFECTS = ("batch_renorm_backward",)
_X = _demo.noncentred((4, 3, 5), loc=0.5, scale=1.2)
_W, _B = _demo.affine((3,))
DEMO_INPUT = _demo.demo("batch_renorm_backward", _demo.cotangent((4, 3, 5)), _X,
                        np.array([0.3, 0.7, 0.5], np.float32), np.array([1.0, 2.0, 0.8], np.float32), _W, _B,
                        training=True)

batch_renorm = _BUGGY.batch_renorm
batch_renorm_stats = _BUGGY.batch_renorm_stats
batch_renorm_backward = _BUGGY.batch_renorm_backward
batch_renorm_running_stats = _BUGGY.batch_renorm_running_stats
