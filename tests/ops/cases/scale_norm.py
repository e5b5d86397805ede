"""scale_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.scale_norm as sn_mod
from refnorm.ops import _rownorm

from ..._util import noncentred
from . import X2, NoExactOracle


def battery(rng):
    """Rows of every size class, g as a Python float, a 0-d and a (1,) array, the clamp
    inactive and active (never a zero row or a tie: autograd's sqrt has no derivative at 0)."""
    out = []
    for shape in [(4, 7), (3, 5, 6), (5,), (3, 1), (2, 2, 3)]:
        for gk, g in (("float", 2.5), ("0d", np.array(1.7)), ("shape1", np.array([np.sqrt(shape[-1])]))):
            kw = dict(x=noncentred(rng, shape, loc=-0.3, scale=0.7), g=g, eps=1e-5)
            out.append((f"{shape}-g{gk}", kw))
    # the clamp active on some rows (norm ~ 1e-4 < eps = 1e-2), inactive on the others
    x = noncentred(rng, (6, 5), loc=0.0, scale=1.0)
    x[::2] *= 1e-4
    out.append(("clamp-active-rows", dict(x=x, g=np.array([3.0]), eps=1e-2)))
    out.append(("eps0", dict(x=noncentred(rng, (3, 4), loc=0.2, scale=0.5), g=np.array(0.8), eps=0.0)))
    return out


def gradient_scale(spec, kw, dy, name):
    """``dx = g r (dy - ind xhat <dy, xhat>)``: per row ``|g| r (|dy| + |xhat| sum|dy xhat|)``;
    ``dg = sum <dy, xhat>``: ``sum |dy xhat|``."""
    x = np.asarray(kw["x"], dtype=np.float64)
    d = x.shape[-1]
    x2 = x.reshape(-1, d)
    _, st = spec.forward_with_stats(**kw)
    r = np.asarray(st["rnorm"]).reshape(-1, 1)
    xh = x2 * r
    d2 = np.asarray(dy, dtype=np.float64).reshape(-1, d)
    s = np.abs(d2 * xh).sum(axis=1, keepdims=True)
    if name == "g":
        return float(s.sum())
    g = abs(float(np.asarray(kw["g"], dtype=np.float64).reshape(())))
    return float(np.max(g * r * (np.abs(d2) + np.abs(xh) * s)))


ERRORS = [
    ("sn-x-0d", lambda: refnorm.scale_norm(np.float64(1.0), 1.0), ValueError, "x must have at least 1 dimensions"),
    ("sn-x-int", lambda: refnorm.scale_norm(np.ones((2, 3), int), 1.0), TypeError, "x must have a real"),
    ("sn-x-none", lambda: refnorm.scale_norm(None, 1.0), TypeError, "x must be an array"),
    ("sn-g-shape", lambda: refnorm.scale_norm(X2, np.ones(5)), ValueError, "g must be a scalar"),
    ("sn-g-shape-11", lambda: refnorm.scale_norm(X2, np.ones((1, 1))), ValueError, "g must be a scalar"),
    ("sn-g-none", lambda: refnorm.scale_norm(X2, None), TypeError, "g must be an array"),
    ("sn-g-int-array", lambda: refnorm.scale_norm(X2, np.array([2])), TypeError, "g must have a real"),
    ("sn-g-bool", lambda: refnorm.scale_norm(X2, True), TypeError, "g must have a real"),
    ("sn-g-str", lambda: refnorm.scale_norm(X2, "2"), TypeError, "g must be an array"),
    ("sn-eps-str", lambda: refnorm.scale_norm(X2, 1.0, eps="1e-5"), TypeError, "eps must be a real number"),
    ("sn-eps-neg", lambda: refnorm.scale_norm(X2, 1.0, eps=-1e-5), ValueError, "eps must be finite and >= 0"),
    ("sn-eps-inf", lambda: refnorm.scale_norm(X2, 1.0, eps=float("inf")), ValueError, "eps must be finite"),
    ("sn-eps-nan", lambda: refnorm.scale_norm(X2, 1.0, eps=float("nan")), ValueError, "eps must not be NaN"),
    ("sn-bwd-dy-shape", lambda: refnorm.scale_norm_backward(np.ones((4, 4)), X2, 1.0), ValueError,
     "dy must have the shape of the forward output (4, 5)"),
    ("sn-bwd-g-shape", lambda: refnorm.scale_norm_backward(np.ones((4, 5)), X2, np.ones(2)), ValueError,
     "g must be a scalar"),
    ("sn-stats-eps", lambda: refnorm.scale_norm_stats(X2, 1.0, eps="x"), TypeError, "eps must be a real number"),
    ("sn-jvp-key", lambda: refnorm.scale_norm_jvp({"weight": np.ones(5)}, X2, 1.0), ValueError,
     "not a differentiable argument"),
    ("sn-jvp-g-shape", lambda: refnorm.scale_norm_jvp({"g": np.ones(2)}, X2, np.ones(1)), ValueError,
     "tangents['g']"),
    ("sn-dbwd-dy", lambda: refnorm.scale_norm_double_backward({}, np.ones((5, 4)), X2, 1.0), ValueError,
     "dy must have the shape"),
]

KERNELS = [(sn_mod, ("_row_stats",)), (_rownorm, ("forward", "backward", "jvp", "double_backward"))]


def threads(rng):
    x = -0.3 + 0.7 * rng.standard_normal((96, 1000))
    x[::7] *= 1e-9  # some rows with the clamp active
    return [dict(x=x, g=np.array([31.6]), eps=1e-5)]


EXACT = NoExactOracle("no exact oracle: the square root of a sum of squares is irrational in general; checked "
                      "against the autograd reference and finite differences (tests/test_registry.py), a "
                      "PyTorch transcription of the authors' code and exact rational sums of squares "
                      "(tests/ops/test_scale_norm.py)")
