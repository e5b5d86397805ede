"""Mutant: EvoNorm-S0 with the gate's sigmoid taken of the normalized value, ``xn sigmoid(v xn)``.

Bug class: convention trap (order of the gate and the division).  EvoNorm-S0
(Liu et al. 2020, Table 1; timm's ``EvoNorm2dS0``) gates the *raw* input and then
divides: ``x sigmoid(v x) / group_std(x)``.  Reading S0 as "a grouped RMS-like
normalization followed by a SiLU with slope v" gives ``xn sigmoid(v xn)`` with
``xn = x / group_std(x)``: the numerator is the same, but the gate sees ``x / std``
instead of ``x``.  The two agree only where the group std is 1 (``sqrt(var + eps) =
1``), so every golden case whose groups have another spread catches it (e.g.
``evo_norm_s0/nchw_g2``, std ~ 1.2, and ``evo_norm_s0/small_var_eps_matters``,
where the mutant's gate is sigmoid(~v) instead of ~1/2).
Affects: evo_norm_s0, evo_norm_s0_backward, evo_norm_s0_stats.

Only the EvoNorm-S0 functions are offered (the other ops are not implemented by
this backend).  The computation is float64 NumPy; the backward is autograd's VJP
of the formula, so the bug is the only difference: :data:`CONTROL` is the same
code with the gate on ``x`` (the unmutated base: numpy32 has no EvoNorm-S0).
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp

from . import _demo


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _check(x, num_groups, params):
    """The argument errors refnorm raises (the mutant differs in the formula only)."""
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions ((N, C, *spatial)), got shape {x.shape}")
    C = x.shape[1]
    if C % num_groups != 0:
        raise ValueError(f"num_groups must divide the number of channels C = {C}, got num_groups = {num_groups}")
    for name, p in params.items():
        if p is None:
            raise TypeError(f"{name} is required: an array of shape ({C},) (one value per channel C), got None")
        if p.shape != (C,):
            raise ValueError(f"{name} must have shape ({C},), got shape {p.shape}")


def _forward(x, G, weight, bias, v, eps, normalized_gate):
    N, C = x.shape[0], x.shape[1]
    x4 = anp.reshape(x, (N, G, C // G, math.prod(x.shape[2:])))
    mean = anp.mean(x4, axis=(2, 3), keepdims=True)
    xc = x4 - mean
    r = 1.0 / anp.sqrt(anp.mean(xc * xc, axis=(2, 3), keepdims=True) + eps)
    vv = anp.reshape(v, (1, G, C // G, 1))
    gate_in = x4 * r if normalized_gate else x4  # the bug: the gate sees x / std
    gate = 0.5 * (anp.tanh(0.5 * (gate_in * vv)) + 1.0)
    z = (x4 * gate) * r
    y = z * anp.reshape(weight, (1, G, C // G, 1)) + anp.reshape(bias, (1, G, C // G, 1))
    return anp.reshape(y, x.shape), mean, r


class _EvoNormS0:
    def __init__(self, normalized_gate):
        self.normalized_gate = normalized_gate

    def evo_norm_s0_stats(self, x, num_groups, weight, bias, v, eps=1e-5):
        x = _f64(x)
        p = {"weight": _f64(weight), "bias": _f64(bias), "v": _f64(v)}
        _check(x, num_groups, p)
        y, mean, r = _forward(x, num_groups, p["weight"], p["bias"], p["v"], eps, self.normalized_gate)
        return y, {"mean": mean.reshape(x.shape[0], num_groups), "rstd": r.reshape(x.shape[0], num_groups)}

    def evo_norm_s0(self, x, num_groups, weight, bias, v, eps=1e-5):
        return self.evo_norm_s0_stats(x, num_groups, weight, bias, v, eps)[0]

    def evo_norm_s0_backward(self, dy, x, num_groups, weight, bias, v, eps=1e-5):
        args = {"x": _f64(x), "weight": _f64(weight), "bias": _f64(bias), "v": _f64(v)}
        _check(args["x"], num_groups, {k: a for k, a in args.items() if k != "x"})
        names = list(args)
        out = {}
        for i, k in enumerate(names):
            def f(val, k=k):
                a = {**args, k: val}
                return _forward(a["x"], num_groups, a["weight"], a["bias"], a["v"], eps, self.normalized_gate)[0]
            vjp, _ = make_vjp(f)(args[k])
            out[k] = vjp(_f64(dy))
        return out


_BUGGY = _EvoNormS0(normalized_gate=True)
_RIGHT = _EvoNormS0(normalized_gate=False)
#: the unmutated base for EvoNorm-S0 (numpy32 has none): the same code with the gate on x
CONTROL = {"evo_norm_s0": _RIGHT.evo_norm_s0, "evo_norm_s0_backward": _RIGHT.evo_norm_s0_backward,
           "evo_norm_s0_stats": _RIGHT.evo_norm_s0_stats}


def evo_norm_s0_stats(x, num_groups, weight, bias, v, eps=1e-5):
    return _BUGGY.evo_norm_s0_stats(x, num_groups, weight, bias, v, eps)


def evo_norm_s0(x, num_groups, weight, bias, v, eps=1e-5):
    return _BUGGY.evo_norm_s0(x, num_groups, weight, bias, v, eps)


def evo_norm_s0_backward(dy, x, num_groups, weight, bias, v, eps=1e-5):
    return _BUGGY.evo_norm_s0_backward(dy, x, num_groups, weight, bias, v, eps)


BACKEND_INFO = {"name": "evo_norm_s0_sigmoid_of_normalized",
                "description": "EvoNorm-S0: xn sigmoid(v xn), xn = x / group_std, "
                               "instead of x sigmoid(v x) / group_std"}
AFFECTS = ("evo_norm_s0", "evo_norm_s0_backward", "evo_norm_s0_stats")
_W, _B = _demo.affine((4,))
DEMO_INPUT = _demo.demo("evo_norm_s0", _demo.noncentred((2, 4, 3, 3), loc=0.3, scale=2.0), 2, _W, _B,
                        np.ones(4, dtype=np.float32))
