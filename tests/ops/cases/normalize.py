"""normalize's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (every public function of the op)."""

from __future__ import annotations

import math

import numpy as np

import refnorm
import refnorm.ops.normalize as nrm_mod

from ..._util import noncentred
from . import NoExactOracle


def _away_from_zero(rng, shape):
    """Magnitudes in [0.3, 1.5] with random signs: |y|^(p - 2) (the curvature for p < 2) stays
    moderate, so that central finite differences of the backward are accurate."""
    return rng.uniform(0.3, 1.5, shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def battery(rng):
    """Every p kind (2, 1, general > 1, 0 < p < 1, inf), positive and negative dims,
    1-D input, the clamp active (eps above the norms) and inactive.  Inputs have no
    zeros and no tied maxima (where the reference is not differentiable)."""
    out = []
    for shape, dim in [((3, 5), 1), ((2, 4, 3), 1), ((2, 4, 3), -1), ((5, 2, 3), 0), ((7,), 0), ((7,), -1)]:
        for p in (2.0, 1.0, 3.0, 0.5, 1.5, math.inf):
            if len(shape) == 1 and p not in (2.0, math.inf):
                continue
            x = _away_from_zero(rng, shape)
            out.append((f"{shape}-dim{dim}-p{p}", dict(x=x, p=p, dim=dim, eps=1e-12)))
    for p in (2.0, 3.0, math.inf):
        out.append((f"clamp-active-p{p}", dict(x=1e-3 * _away_from_zero(rng, (3, 4)), p=p, dim=1,
                                               eps=0.1)))
    out.append(("defaults", dict(x=noncentred(rng, (3, 6), loc=-0.2, scale=1.0))))
    return out


def gradient_scale(spec, kw, dy, name):
    """Per slice ``dx = (dy - c g) / d`` with ``c = sum dy y``: the terms are at most
    ``(max|dy| + sum|dy y| max|g|) / d``, ``|g| <= 1`` for p >= 1 (``|y|^(p-1)``)
    and ``max|y|^(p-1)`` for p < 1."""
    x = np.asarray(kw["x"], dtype=np.float64)
    dim = kw.get("dim", 1) % x.ndim
    p = kw.get("p", 2.0)
    y, st = spec.forward_with_stats(**kw)
    d = np.expand_dims(st["norm"], dim)
    dy = np.asarray(dy, dtype=np.float64)
    ay = np.abs(y)
    gmax = 1.0 if p >= 1 else np.max(np.where(ay > 0, ay, 1.0) ** (p - 1.0), axis=dim, keepdims=True)
    terms = (np.max(np.abs(dy), axis=dim, keepdims=True) + np.sum(np.abs(dy * y), axis=dim, keepdims=True) * gmax) / d
    return float(np.max(terms)) * x.shape[dim]


X2 = np.random.default_rng(5).standard_normal((3, 4))
ERRORS = [
    ("x-none", lambda: refnorm.normalize(None), TypeError, "x must be an array"),
    ("x-int", lambda: refnorm.normalize(np.ones((2, 3), int)), TypeError, "x must have a real"),
    ("x-0d", lambda: refnorm.normalize(np.float64(1.0), dim=0), ValueError, "x must have at least 1 dimensions"),
    ("1d-default-dim", lambda: refnorm.normalize(np.ones(4)), ValueError, "pass dim=0 or dim=-1 for 1-D x"),
    ("dim-range", lambda: refnorm.normalize(X2, dim=2), ValueError, "dim must be in [-2, 1]"),
    ("dim-range-neg", lambda: refnorm.normalize(X2, dim=-3), ValueError, "dim must be in [-2, 1]"),
    ("dim-float", lambda: refnorm.normalize(X2, dim=1.0), TypeError, "dim must be an int"),
    ("dim-bool", lambda: refnorm.normalize(X2, dim=True), TypeError, "dim must be an int"),
    ("p-zero", lambda: refnorm.normalize(X2, p=0), ValueError, "p must be > 0"),
    ("p-negative", lambda: refnorm.normalize(X2, p=-1.0), ValueError, "p must be > 0"),
    ("p-minus-inf", lambda: refnorm.normalize(X2, p=-math.inf), ValueError, "p must be > 0"),
    ("p-nan", lambda: refnorm.normalize(X2, p=float("nan")), ValueError, "p must not be NaN"),
    ("p-str", lambda: refnorm.normalize(X2, p="fro"), TypeError, "p must be a real number"),
    ("eps-negative", lambda: refnorm.normalize(X2, eps=-1e-12), ValueError, "eps must be >= 0"),
    ("eps-none", lambda: refnorm.normalize(X2, eps=None), TypeError, "eps must be a real number"),
    ("bwd-dy-shape", lambda: refnorm.normalize_backward(np.ones((4, 3)), X2), ValueError,
     "dy must have the shape of the forward output"),
    ("bwd-dy-int", lambda: refnorm.normalize_backward(np.ones((3, 4), int), X2), TypeError, "dy must have a real"),
    ("bwd-dim", lambda: refnorm.normalize_backward(np.ones((3, 4)), X2, dim=5), ValueError, "dim must be in"),
    ("stats-p", lambda: refnorm.normalize_stats(X2, p=0.0), ValueError, "p must be > 0"),
    ("jvp-key", lambda: refnorm.normalize_jvp({"weight": X2}, X2), ValueError, "not a differentiable argument"),
    ("jvp-shape", lambda: refnorm.normalize_jvp({"x": np.ones(3)}, X2), ValueError, "must have the shape of x"),
    ("jvp-dim", lambda: refnorm.normalize_jvp({"x": X2}, X2, dim=-3), ValueError, "dim must be in"),
    ("dbl-cot-shape", lambda: refnorm.normalize_double_backward({"x": np.ones(2)}, np.ones((3, 4)), X2),
     ValueError, "must have the shape of x"),
    ("dbl-dy-shape", lambda: refnorm.normalize_double_backward({"x": X2}, np.ones(2), X2), ValueError,
     "dy must have the shape"),
    ("dbl-p", lambda: refnorm.normalize_double_backward({}, np.ones((3, 4)), X2, p=-2.0), ValueError,
     "p must be > 0"),
]

KERNELS = [(nrm_mod, ("_forward", "_backward", "_jvp", "_double_backward"))]


def threads(rng):
    x = rng.standard_normal((48, 64, 5))
    return [dict(x=x, p=p, dim=1) for p in (2.0, 3.0, math.inf)] + [dict(x=x, p=1.0, dim=-1)]


EXACT = NoExactOracle("no exact oracle (p-th powers and roots are not rational): checked against the "
                      "autograd reference and finite differences (tests/test_registry.py) and against "
                      "torch.nn.functional.normalize in float64 (tests/ops/test_normalize.py)")
