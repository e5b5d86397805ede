"""proxy_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.proxy_norm as pn_mod

from ..._util import noncentred
from . import NoExactOracle


def battery(rng):
    out = []
    # x is PN-Act's normalized pre-activation, but nothing assumes it: half
    # the cases are non-centred at -2.3 (ReLU then cuts most of x), half at 0.4
    for shape, act, nk, eps in [((2, 3, 5), "relu", 200, 0.03), ((3, 2, 2, 3), "silu", 200, 0.03),
                                ((5, 3), "gelu", 200, 0.03), ((2, 4, 1, 3), "relu", 7, 0.5),
                                ((3, 3, 4), "gelu", 7, 0.5), ((1, 1, 1), "silu", 200, 0.03),
                                ((3, 2, 5), "swish", 1, 0.1)]:
        C = shape[1]
        x = noncentred(rng, shape, loc=0.4, scale=1.1) if len(out) % 2 else noncentred(rng, shape)
        kw = dict(x=x, weight=1.0 + 0.5 * rng.standard_normal(C), bias=0.3 * rng.standard_normal(C),
                  proxy_shift=0.3 * rng.standard_normal(C), proxy_scale=0.3 * rng.standard_normal(C),
                  activation=act, eps=eps, num_points=nk)
        out.append((f"{shape}-{act}-K{nk}-eps{eps}", kw))
    return out


def gradient_scale(spec, kw, dy, name):
    """dx = dy s phi'(u) w is a product (no cancellation): 0.  A parameter
    gradient is a sum of data terms and proxy-chain terms:
    ``s * sum|dy| * max(1, |w|) * max(1, |x|, |Y|)`` with ``|Y| <= |beta~| + 3|1 + gamma~|``."""
    if name == "x":
        return 0.0
    _, st = spec.forward_with_stats(**kw)
    ymax = 3.0 * (1.0 + np.max(np.abs(kw["proxy_scale"]))) + np.max(np.abs(kw["proxy_shift"]))
    x = np.asarray(kw["x"], dtype=np.float64)
    big = max(1.0, float(np.max(np.abs(x))) if x.size else 1.0, ymax)
    return (float(np.max(st["rstd"])) * float(np.sum(np.abs(dy))) * max(1.0, float(np.max(np.abs(kw["weight"]))))
            * big)


X = np.random.default_rng(0).standard_normal((2, 3, 4))
P3 = np.ones(3)


def _fwd(**over):
    kw = dict(x=X, weight=P3, bias=P3, proxy_shift=P3, proxy_scale=P3)
    kw.update(over)
    return lambda: refnorm.proxy_norm(**kw)


ERRORS = [
    ("x-1d", _fwd(x=np.ones(3)), ValueError, "x must have at least 2 dimensions"),
    ("x-int", _fwd(x=np.ones((2, 3), int)), TypeError, "x must have a real floating dtype"),
    ("x-none", _fwd(x=None), TypeError, "x must be an array"),
    ("weight-shape", _fwd(weight=np.ones(4)), ValueError, "weight must have shape (3,)"),
    ("weight-none", _fwd(weight=None), TypeError, "weight must be an array"),
    ("bias-2d", _fwd(bias=np.ones((3, 1))), ValueError, "bias must have shape (3,)"),
    ("shift-shape", _fwd(proxy_shift=np.ones(2)), ValueError, "proxy_shift must have shape (3,)"),
    ("scale-int", _fwd(proxy_scale=np.ones(3, int)), TypeError, "proxy_scale must have a real floating dtype"),
    ("scale-none", _fwd(proxy_scale=None), TypeError, "proxy_scale must be an array"),
    ("act-unknown", _fwd(activation="tanh"), ValueError, "activation must be one of"),
    ("act-case", _fwd(activation="ReLU"), ValueError, "activation must be one of"),
    ("act-callable", _fwd(activation=np.tanh), TypeError, "activation must be a str"),
    ("eps-str", _fwd(eps="0.03"), TypeError, "eps must be a real number"),
    ("eps-nan", _fwd(eps=float("nan")), ValueError, "eps must not be NaN"),
    ("eps-negative", _fwd(eps=-0.1), ValueError, "eps must be >= 0"),
    ("k-zero", _fwd(num_points=0), ValueError, "num_points must be >= 1"),
    ("k-float", _fwd(num_points=200.0), TypeError, "num_points must be an int"),
    ("k-bool", _fwd(num_points=True), TypeError, "num_points must be an int"),
    ("dy-shape", lambda: refnorm.proxy_norm_backward(np.ones((2, 3)), X, P3, P3, P3, P3), ValueError,
     "dy must have the shape of the forward output (2, 3, 4)"),
    ("dy-int", lambda: refnorm.proxy_norm_backward(np.ones(X.shape, int), X, P3, P3, P3, P3), TypeError,
     "dy must have a real floating dtype"),
    ("bwd-act", lambda: refnorm.proxy_norm_backward(np.ones(X.shape), X, P3, P3, P3, P3, "elu"), ValueError,
     "activation must be one of"),
    ("stats-weight", lambda: refnorm.proxy_norm_stats(X, np.ones(2), P3, P3, P3), ValueError, "weight must have shape"),
    ("quantiles-zero", lambda: refnorm.proxy_quantiles(0), ValueError, "num_points must be >= 1"),
    ("quantiles-float", lambda: refnorm.proxy_quantiles(2.5), TypeError, "num_points must be an int"),
    ("pn-activation", lambda: refnorm.proxy_norm(X, P3, P3, P3, P3, "tanh"), ValueError,
     "activation must be one of"),
    ("pn-shift-shape", lambda: refnorm.proxy_norm(X, P3, P3, np.ones(2), P3), ValueError,
     "proxy_shift must have shape (3,)"),
    ("pn-scale-none", lambda: refnorm.proxy_norm(X, P3, P3, P3, None), TypeError, "proxy_scale must be an array"),
    ("pn-eps-negative", lambda: refnorm.proxy_norm(X, P3, P3, P3, P3, eps=-1.0), ValueError, "eps must be >= 0"),
    ("pn-bwd-dy", lambda: refnorm.proxy_norm_backward(np.ones((2, 3)), X, P3, P3, P3, P3), ValueError,
     "dy must have the shape"),
    ("pn-stats-k0", lambda: refnorm.proxy_norm_stats(X, P3, P3, P3, P3, num_points=0), ValueError,
     "num_points must be >= 1"),
    ("pn-quantiles-float", lambda: refnorm.proxy_quantiles(2.5), TypeError, "num_points must be an int"),
]

KERNELS = [(pn_mod, ("_proxy_points", "_forward", "_backward"))]


def threads(rng):
    """Every activation (one channel or (n, c) row per thread)."""
    x = rng.standard_normal((8, 32, 7, 9))
    w, b, shift, scale = (0.3 * rng.standard_normal(32) + c for c in (1, 0, 0, 0))
    return [dict(x=x, weight=w, bias=b, proxy_shift=shift, proxy_scale=scale, activation=act)
            for act in ("relu", "silu", "gelu")]


EXACT = NoExactOracle("no exact oracle (the proxy quantiles and activations are transcendental): checked against "
                      "the autograd reference and finite differences (tests/test_registry.py) and 50-digit mpmath "
                      "quantiles (tests/ops/test_proxy_norm.py)")
