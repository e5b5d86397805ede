"""local_response_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (every public function of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.local_response_norm as lrn_mod

from ..._util import noncentred
from . import X4, NoExactOracle


def battery(rng):
    """3-D, 4-D and 5-D inputs; odd and even sizes, size 1 and size larger than C; the
    defaults (alpha = 1e-4: the window term is tiny) and a large alpha (the window term
    comparable to k), beta 0.75 and 0.5, k 1 and 2."""
    out = []
    for shape in [(2, 5, 3), (2, 6, 3, 2), (1, 4, 2, 3, 2)]:
        for size in (1, 2, 3, 4, 7):
            x = noncentred(rng, shape, loc=0.2, scale=1.1)
            out.append((f"{shape}-size{size}", dict(x=x, size=size, alpha=0.5, beta=0.75, k=1.0)))
    out.append(("defaults", dict(x=noncentred(rng, (2, 6, 4), loc=-0.3, scale=1.0), size=5)))
    out.append(("beta0.5-k2", dict(x=noncentred(rng, (3, 5, 2), loc=0.0, scale=1.5), size=3, alpha=1.0,
                                   beta=0.5, k=2.0)))
    return out


def gradient_scale(spec, kw, dy, name):
    """``dx_i = dy_i / div_i - g x_i sum_{c} q_c`` with ``q_c = dy_c y_c / b_c`` summed over at
    most ``size`` channels, ``g = 2 alpha beta / size``: the terms are at most
    ``max|dy / div| + |g| max|x| size max|q|``, times the ``size`` terms of a sum."""
    size, alpha, beta = kw["size"], kw.get("alpha", 1e-4), kw.get("beta", 0.75)
    y, st = spec.forward_with_stats(**kw)
    div = st["div"]
    b = div ** (1.0 / beta)
    dy = np.asarray(dy, dtype=np.float64)
    x = np.asarray(kw["x"], dtype=np.float64)
    g = abs(2.0 * alpha * beta / size)
    return float(np.max(np.abs(dy / div)) + g * np.max(np.abs(x)) * size * np.max(np.abs(dy * y / b))) * size


X3 = np.random.default_rng(7).standard_normal((2, 5, 3))
DY3 = np.ones((2, 5, 3))
ERRORS = [
    ("lrn-x-2d", lambda: refnorm.local_response_norm(np.ones((2, 5)), 3), ValueError,
     "x must have at least 3 dimensions"),
    ("lrn-x-none", lambda: refnorm.local_response_norm(None, 3), TypeError, "x must be an array"),
    ("lrn-x-int", lambda: refnorm.local_response_norm(np.ones((2, 5, 3), int), 3), TypeError, "x must have a real"),
    ("lrn-size-zero", lambda: refnorm.local_response_norm(X3, 0), ValueError, "size must be >= 1"),
    ("lrn-size-float", lambda: refnorm.local_response_norm(X3, 3.0), TypeError, "size must be an int"),
    ("lrn-size-bool", lambda: refnorm.local_response_norm(X3, True), TypeError, "size must be an int"),
    ("lrn-alpha-str", lambda: refnorm.local_response_norm(X3, 3, alpha="1e-4"), TypeError,
     "alpha must be a real number"),
    ("lrn-beta-nan", lambda: refnorm.local_response_norm(X3, 3, beta=float("nan")), ValueError,
     "beta must not be NaN"),
    ("lrn-k-inf", lambda: refnorm.local_response_norm(X4, 3, k=float("inf")), ValueError, "k must be finite"),
    ("lrn-k-none", lambda: refnorm.local_response_norm(X3, 3, k=None), TypeError, "k must be a real number"),
    ("lrn-bwd-dy-shape", lambda: refnorm.local_response_norm_backward(np.ones((2, 5)), X3, 3), ValueError,
     "dy must have the shape of the forward output"),
    ("lrn-bwd-size", lambda: refnorm.local_response_norm_backward(DY3, X3, -1), ValueError, "size must be >= 1"),
    ("lrn-stats-x-2d", lambda: refnorm.local_response_norm_stats(np.ones(5), 3), ValueError,
     "x must have at least 3 dimensions"),
    ("lrn-jvp-key", lambda: refnorm.local_response_norm_jvp({"weight": X3}, X3, 3), ValueError,
     "not a differentiable argument"),
    ("lrn-jvp-shape", lambda: refnorm.local_response_norm_jvp({"x": np.ones(3)}, X3, 3), ValueError,
     "must have the shape of x"),
    ("lrn-2nd-cot-shape", lambda: refnorm.local_response_norm_double_backward({"x": np.ones(2)}, DY3, X3, 3),
     ValueError, "must have the shape of x"),
    ("lrn-2nd-dy-shape", lambda: refnorm.local_response_norm_double_backward({}, np.ones(2), X3, 3), ValueError,
     "dy must have the shape"),
    ("lrn-2nd-alpha", lambda: refnorm.local_response_norm_double_backward({}, DY3, X3, 3, alpha=float("-inf")),
     ValueError, "alpha must be finite"),
]

KERNELS = [(lrn_mod, ("_forward", "_backward", "_jvp", "_double_backward"))]


def threads(rng):
    x = rng.standard_normal((8, 16, 12, 12))
    return [dict(x=x, size=5, alpha=0.5), dict(x=x, size=4, alpha=1e-4, beta=0.75, k=2.0)]


EXACT = NoExactOracle("no exact oracle (b^beta is not rational): checked against the autograd reference and "
                      "finite differences (tests/test_registry.py) and against "
                      "torch.nn.functional.local_response_norm in float64 (tests/ops/test_local_response_norm.py)")
