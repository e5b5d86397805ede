"""weight_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.weight_norm as wn_mod
from refnorm.ops import _rownorm

from ..._util import noncentred
from . import X2, NoExactOracle


def _g_shape(shape, dim):
    if dim is None or dim == -1:
        return ()
    k = dim % len(shape)
    return tuple(s if i == k else 1 for i, s in enumerate(shape))


def battery(rng):
    """Linear/conv-shaped v with dim 0, a middle dim, the last dim (as ``ndim - 1`` and
    as ``-2`` from the end), the whole tensor (``None``, ``-1``; g 0-d or all-ones), 1-D v
    (one-element slices) and g of either sign; never a zero slice (no derivative there)."""
    out = []
    for shape, dim in [((4, 7), 0), ((3, 2, 3, 3), 0), ((3, 2, 3, 3), 1), ((3, 5, 4), 2), ((3, 5, 4), -2),
                       ((5, 6), None), ((2, 3, 4), -1), ((6,), 0), ((5, 1), 1)]:
        v = noncentred(rng, shape, loc=0.1, scale=0.6)
        g = 1.0 + 0.5 * rng.standard_normal(_g_shape(shape, dim))
        out.append((f"{shape}-dim{dim}", dict(v=v, g=g, dim=dim)))
    v = noncentred(rng, (3, 4), loc=-0.2, scale=0.5)
    out.append(("whole-g-ones", dict(v=v, g=np.array([[2.0]]), dim=-1)))
    out.append(("neg-g", dict(v=noncentred(rng, (4, 5), loc=0.0, scale=1.0), g=-np.abs(rng.standard_normal((4, 1))),
                              dim=0)))
    return out


def gradient_scale(spec, kw, dy, name):
    """``dv = (g/n) (dy - xhat <dy, xhat>)``: ``max |g|/n (|dy| + |xhat| sum|dy xhat|)``;
    ``dg = <dy, xhat>``: ``max sum |dy xhat|`` (per slice)."""
    v = np.asarray(kw["v"], dtype=np.float64)
    dim = kw.get("dim", 0)
    axes = tuple(range(v.ndim)) if dim is None or dim == -1 else tuple(i for i in range(v.ndim)
                                                                         if i != dim % v.ndim)
    n = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
    xh = v / n
    d = np.asarray(dy, dtype=np.float64)
    s = np.sum(np.abs(d * xh), axis=axes, keepdims=True)
    if name == "g":
        return float(np.max(s))
    g = np.abs(np.asarray(kw["g"], dtype=np.float64))
    return float(np.max(g / n * (np.abs(d) + np.abs(xh) * s)))


G41 = np.ones((4, 1))

ERRORS = [
    ("wn-v-0d", lambda: refnorm.weight_norm(np.float64(1.0), np.ones(())), ValueError,
     "v must have at least 1 dimensions"),
    ("wn-v-int", lambda: refnorm.weight_norm(np.ones((4, 5), int), G41), TypeError, "v must have a real"),
    ("wn-v-none", lambda: refnorm.weight_norm(None, G41), TypeError, "v must be an array"),
    ("wn-v-empty", lambda: refnorm.weight_norm(np.ones((4, 0)), G41), ValueError, "v must have at least one element"),
    ("wn-g-flat", lambda: refnorm.weight_norm(X2, np.ones(4)), ValueError, "g must have shape (4, 1)"),
    ("wn-g-whole-shape", lambda: refnorm.weight_norm(X2, np.ones(1), dim=None), ValueError,
     "g must have shape () or (1, 1)"),
    ("wn-g-none", lambda: refnorm.weight_norm(X2, None), TypeError, "g must be an array"),
    ("wn-g-int", lambda: refnorm.weight_norm(X2, np.ones((4, 1), int)), TypeError, "g must have a real"),
    ("wn-dim-float", lambda: refnorm.weight_norm(X2, G41, dim=0.0), TypeError, "dim must be an int or None"),
    ("wn-dim-bool", lambda: refnorm.weight_norm(X2, G41, dim=False), TypeError, "dim must be an int or None"),
    ("wn-dim-range", lambda: refnorm.weight_norm(X2, G41, dim=2), ValueError, "dim must be None, -1"),
    ("wn-dim-range-neg", lambda: refnorm.weight_norm(X2, G41, dim=-3), ValueError, "dim must be None, -1"),
    ("wn-bwd-dy-shape", lambda: refnorm.weight_norm_backward(np.ones((4, 4)), X2, G41), ValueError,
     "dy must have the shape of the forward output w (4, 5)"),
    ("wn-bwd-g-shape", lambda: refnorm.weight_norm_backward(np.ones((4, 5)), X2, np.ones((1, 5))), ValueError,
     "g must have shape (4, 1)"),
    ("wn-stats-dim", lambda: refnorm.weight_norm_stats(X2, G41, dim="0"), TypeError, "dim must be an int"),
    ("wn-jvp-key", lambda: refnorm.weight_norm_jvp({"x": np.ones((4, 5))}, X2, G41), ValueError,
     "not a differentiable argument"),
    ("wn-jvp-g-shape", lambda: refnorm.weight_norm_jvp({"g": np.ones(4)}, X2, G41), ValueError, "tangents['g']"),
    ("wn-dbwd-dy", lambda: refnorm.weight_norm_double_backward({}, np.ones((5, 4)), X2, G41), ValueError,
     "dy must have the shape"),
]

KERNELS = [(wn_mod, ("_row_stats",)), (_rownorm, ("forward", "backward", "jvp", "double_backward"))]


def threads(rng):
    v = 0.1 + 0.5 * rng.standard_normal((96, 20, 50))
    return [dict(v=v, g=1.0 + rng.standard_normal((96, 1, 1)), dim=0),
            dict(v=v, g=1.0 + rng.standard_normal((1, 20, 1)), dim=1)]


EXACT = NoExactOracle("no exact oracle: the square root of a sum of squares is irrational in general; checked "
                      "against the autograd reference and finite differences (tests/test_registry.py) and "
                      "against torch._weight_norm and torch.nn.utils.parametrizations.weight_norm in float64 "
                      "(tests/ops/test_weight_norm.py)")
