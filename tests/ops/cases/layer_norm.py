"""layer_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
The exact-oracle geometry helpers here (sets over the trailing normalized_shape)
serve rms_norm too."""

from __future__ import annotations

import math

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import X2, ExactOracle


def battery(rng):
    out = []
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (6,)), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5)),
                      ((5,), (5,)), ((3, 1), (1,)), ((2, 3, 1), (3, 1))]:
        for affine in ("both", "weight", "none"):
            w, b = random_affine(rng, ns)
            kw = dict(x=noncentred(rng, shape), normalized_shape=ns,
                      weight=None if affine == "none" else w, bias=b if affine == "both" else None,
                      eps=1e-5)
            out.append((f"{shape}-{ns}-{affine}", kw))
    # zero-centred weights: the scale is offset + weight (drawn after the cases above, which keep their values)
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6))]:
        for affine, offset in (("both", 1.0), ("weight", 1.0), ("both", -0.5), ("none", 1.0)):
            w, b = random_affine(rng, ns)
            kw = dict(x=noncentred(rng, shape), normalized_shape=ns,
                      weight=None if affine == "none" else 0.1 * (w - 1.0), bias=b if affine == "both" else None,
                      eps=1e-5, offset=offset)
            out.append((f"{shape}-{ns}-{affine}-offset{offset}", kw))
    return out


ERRORS = [
    ("ln-shape-mismatch", lambda: refnorm.layer_norm(X2, (4,)), ValueError, "trailing dimensions of x"),
    ("ln-shape-too-long", lambda: refnorm.layer_norm(X2, (3, 4, 5)), ValueError, "trailing dimensions"),
    ("ln-shape-empty", lambda: refnorm.layer_norm(X2, ()), ValueError, "at least one dimension"),
    ("ln-shape-type", lambda: refnorm.layer_norm(X2, "5"), TypeError, "normalized_shape must be"),
    ("ln-shape-float", lambda: refnorm.layer_norm(X2, (5.0,)), TypeError, "normalized_shape must be"),
    ("ln-weight-shape", lambda: refnorm.layer_norm(X2, (5,), np.ones(4)), ValueError, "weight must have shape (5,)"),
    ("ln-0d", lambda: refnorm.layer_norm(np.float64(1.0), (1,)), ValueError, "at least 1 dimensions"),
    ("ln-offset-bool", lambda: refnorm.layer_norm(X2, 5, np.ones(5), offset=True), TypeError,
     "offset must be a real number"),
    ("ln-offset-nan", lambda: refnorm.layer_norm(X2, 5, np.ones(5), offset=float("nan")), ValueError,
     "offset must not be NaN"),
    ("ln-bwd-offset-inf", lambda: refnorm.layer_norm_backward(np.ones((4, 5)), X2, 5, np.ones(5), offset=float("inf")),
     ValueError, "offset must be finite"),
    # the <op>_stats variant validates exactly as the forward
    ("ln-stats-shape", lambda: refnorm.layer_norm_stats(X2, (4,)), ValueError, "trailing dimensions of x"),
]

KERNELS = []


def threads(rng):
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000))
    return [dict(x=x, normalized_shape=1000, weight=rng.standard_normal(1000), bias=rng.standard_normal(1000))]


# --- the exact oracle: reduction sets over the trailing normalized_shape -----------


def trailing_layout(shape, attrs):
    k = len(attrs["normalized_shape"])
    shape = tuple(shape)
    return math.prod(shape[: len(shape) - k]), math.prod(shape[len(shape) - k:]), lambda v: v.reshape(shape).copy()


def trailing_view(x, kw):
    ns = kw["normalized_shape"]
    lead = x.shape[: x.ndim - (1 if isinstance(ns, int) else len(ns))]
    return x.reshape(1, math.prod(lead), -1), lead


def draw_trailing(draw, st, N, C, sp):
    shape = (N, C) + sp
    k = draw(st.integers(1, len(shape)))
    return shape, {"normalized_shape": shape[len(shape) - k:]}


def _long_cases(rng):
    """One row of 1e5 elements with E1 data (large offset, small spread)."""
    D = 100_000
    return [("long-row-1e5-offset", 1e4 + 1e-2 * rng.standard_normal((1, D)), {"normalized_shape": (D,)})]


EXACT = ExactOracle(
    variants=[((3, 10), {"normalized_shape": (10,)}), ((2, 3, 4, 5), {"normalized_shape": (4, 5)}),
              ((2, 3, 7), {"normalized_shape": (3, 7)})],
    exact_tier=((3, 4, 4), {"normalized_shape": (4, 4)}),
    single_element=((4, 1), {"normalized_shape": (1,)}),
    layout=trailing_layout, affine="trailing", has_bias=True, complete=lambda kw, rng: None,
    mode=lambda kw: "batch", view=trailing_view, draw=draw_trailing, long_cases=_long_cases,
)
