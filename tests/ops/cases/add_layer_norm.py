"""add_layer_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import X2, NoExactOracle


def battery(rng):
    out = []
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6)), ((5,), (5,))]:
        for affine, offset, rd in ((True, 0.0, None), (False, 0.0, None), (True, 1.0, None), (True, 0.0, "float64"),
                                   (True, 0.0, "float32"), (True, 0.0, "bfloat16")):
            w, _ = random_affine(rng, ns)  # _ is the bias
            kw = dict(x=noncentred(rng, shape), residual=0.7 * rng.standard_normal(shape), normalized_shape=ns,
                      weight=(0.1 * (w - 1.0) if offset else w) if affine else None, bias=_ if affine else None,
                      eps=1e-5, offset=offset, residual_dtype=rd)
            out.append((f"{shape}-{ns}-affine{affine}-offset{offset}-{rd}", kw))
    return out


def finite_differences_apply(kw):
    """h is rounded to a narrower residual_dtype: a step function to finite differences, while its
    derivative is the identity by definition (checked against autograd of the reference instead)."""
    return kw.get("residual_dtype") in (None, "float64")


X2R = np.ones((4, 5))
ERRORS = [
    ("aln-residual-shape", lambda: refnorm.add_layer_norm(X2, np.ones((4, 4)), 5), ValueError,
     "residual must have the shape of x (4, 5)"),
    ("aln-residual-none", lambda: refnorm.add_layer_norm(X2, None, 5), TypeError, "residual must be an array"),
    ("aln-residual-dtype", lambda: refnorm.add_layer_norm(X2, X2R, 5, residual_dtype="int8"), ValueError,
     "residual_dtype must be None or one of float64, float32, float16, bfloat16"),
    ("aln-residual-dtype-type", lambda: refnorm.add_layer_norm(X2, X2R, 5, residual_dtype=3), TypeError,
     "residual_dtype must be None or one of"),
    ("aln-weight-shape", lambda: refnorm.add_layer_norm(X2, X2R, 5, np.ones(4)), ValueError, "weight must have shape"),
    ("aln-offset", lambda: refnorm.add_layer_norm(X2, X2R, 5, np.ones(5), offset="1"), TypeError,
     "offset must be a real number"),
    ("aln-bwd-dh-shape", lambda: refnorm.add_layer_norm_backward(np.ones((4, 5)), np.ones((4, 4)), X2, X2R, 5),
     ValueError, "dh must have the shape of the returned residual h (4, 5)"),
    ("aln-bwd-dy-shape", lambda: refnorm.add_layer_norm_backward(np.ones((4, 4)), None, X2, X2R, 5), ValueError,
     "dy must have the shape of the forward output (4, 5)"),
    ("aln-stats-shape", lambda: refnorm.add_layer_norm_stats(X2, X2R, 4), ValueError, "trailing dimensions of x"),
]

KERNELS = []


def threads(rng):
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000))
    return [dict(x=x, residual=rng.standard_normal((96, 1000)), normalized_shape=1000,
                 weight=rng.standard_normal(1000), bias=rng.standard_normal(1000), residual_dtype="float32")]


EXACT = NoExactOracle("the normalization is LayerNorm's (exact-oracle tested) applied to h, and h = x + residual "
                      "rounded once is compared bitwise in every golden case")
