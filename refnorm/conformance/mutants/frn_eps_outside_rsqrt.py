"""Mutant: FRN with eps added to the root mean square, ``x / (sqrt(nu2) + eps)``.

Bug class: eps placement (E15), the FRN form of ``eps_outside_sqrt``: the
paper (Singh & Krishnan 2019, eq. (2) and its listing) and timm's
``FilterResponseNormTlu2d`` normalize by ``rsqrt(nu2 + eps)``; a port that
writes ``x / (x.norm() / sqrt(S) + eps)`` is within ~eps/sqrt(nu2) of it for
ordinary activations and ~30 % off where ``nu2 ~ eps`` (small activations, the
regime FRN's learned eps is about).  Caught by the corpus case
``filter_response_norm/small_nu2_eps_matters``.
Affects: filter_response_norm, filter_response_norm_backward, filter_response_norm_stats.

Only the FRN functions are offered (the other ops are not implemented by this
backend).  The computation is float64 NumPy; the backward is autograd's VJP of
the mutated formula, so the bug is the only difference.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp

from . import _demo


def _f64(a):
    return None if a is None else np.asarray(a).astype(np.float64)


def _check(x, params):
    """The argument errors refnorm raises (the mutant differs in the formula only)."""
    if x.ndim < 3:
        raise ValueError(f"x must have at least 3 dimensions ((N, C, *spatial)), got shape {x.shape}")
    for name, p in params.items():
        if p is not None and p.shape != (x.shape[1],):
            raise ValueError(f"{name} must have shape ({x.shape[1]},), got shape {p.shape}")


def _forward(x, weight, bias, tau, eps):
    N, C = x.shape[0], x.shape[1]
    x3 = anp.reshape(x, (N, C, math.prod(x.shape[2:])))
    nu2 = anp.mean(x3 * x3, axis=2, keepdims=True)
    r = 1.0 / (anp.sqrt(nu2) + eps)  # the bug: eps outside the square root
    z = x3 * r * anp.reshape(weight, (1, C, 1)) + anp.reshape(bias, (1, C, 1))
    y = z if tau is None else anp.maximum(z, anp.reshape(tau, (1, C, 1)))
    return anp.reshape(y, x.shape), r


def filter_response_norm_stats(x, weight, bias, tau=None, eps=1e-6):
    x = _f64(x)
    p = {"weight": _f64(weight), "bias": _f64(bias), "tau": _f64(tau)}
    _check(x, p)
    y, r = _forward(x, p["weight"], p["bias"], p["tau"], eps)
    return y, {"rstd": r.reshape(x.shape[0], x.shape[1])}


def filter_response_norm(x, weight, bias, tau=None, eps=1e-6):
    return filter_response_norm_stats(x, weight, bias, tau, eps)[0]


def filter_response_norm_backward(dy, x, weight, bias, tau=None, eps=1e-6):
    args = {"x": _f64(x), "weight": _f64(weight), "bias": _f64(bias), "tau": _f64(tau)}
    _check(args["x"], {k: v for k, v in args.items() if k != "x"})
    names = [k for k, v in args.items() if v is not None]

    def f(*vals):
        return _forward(*({**args, **dict(zip(names, vals))}[k] for k in ("x", "weight", "bias", "tau")), eps)[0]

    out = {}
    for i, k in enumerate(names):
        vjp, _ = make_vjp(lambda v, i=i: f(*[v if j == i else args[n] for j, n in enumerate(names)]))(args[k])
        out[k] = vjp(_f64(dy))
    return out


BACKEND_INFO = {"name": "frn_eps_outside_rsqrt",
                "description": "FRN: x / (sqrt(nu2) + eps) instead of x * rsqrt(nu2 + eps)"}
AFFECTS = ("filter_response_norm", "filter_response_norm_backward", "filter_response_norm_stats")
_W, _B = _demo.affine((3,))
DEMO_INPUT = _demo.demo("filter_response_norm", 1e-3 * _demo.noncentred((2, 3, 8), loc=0.0, scale=1.0), _W, _B,
                        -0.1 * np.ones(3, dtype=np.float32))
