"""What the two fused residual adds (add_rms_norm, add_layer_norm) share in their case modules:
the battery, the bad inputs and the thread inputs, with or without a bias."""

from __future__ import annotations

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import X2, NoExactOracle

X2R = np.ones((4, 5))


def battery(rng, *, bias: bool, eps: float):
    out = []
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6)), ((5,), (5,))]:
        for affine, offset, rd in ((True, 0.0, None), (False, 0.0, None), (True, 1.0, None), (True, 0.0, "float64"),
                                   (True, 0.0, "float32"), (True, 0.0, "bfloat16")):
            w, b = random_affine(rng, ns)
            kw = dict(x=noncentred(rng, shape), residual=0.7 * rng.standard_normal(shape), normalized_shape=ns,
                      weight=(0.1 * (w - 1.0) if offset else w) if affine else None)
            if bias:
                kw["bias"] = b if affine else None
            kw.update(eps=eps, offset=offset, residual_dtype=rd)
            out.append((f"{shape}-{ns}-affine{affine}-offset{offset}-{rd}", kw))
    return out


def finite_differences_apply(kw):
    """h is rounded to a narrower residual_dtype: a step function to finite differences, while its
    derivative is the identity by definition (checked against autograd of the reference instead)."""
    return kw.get("residual_dtype") in (None, "float64")


def errors(op: str, tag: str):
    """The bad-input cases of ``refnorm.<op>`` (each lambda looks the function up when it runs)."""
    f = lambda suffix="": getattr(refnorm, op + suffix)  # noqa: E731
    return [
        (f"{tag}-residual-shape", lambda: f()(X2, np.ones((4, 4)), 5), ValueError,
         "residual must have the shape of x (4, 5)"),
        (f"{tag}-residual-none", lambda: f()(X2, None, 5), TypeError, "residual must be an array"),
        (f"{tag}-residual-dtype", lambda: f()(X2, X2R, 5, residual_dtype="int8"), ValueError,
         "residual_dtype must be None or one of float64, float32, float16, bfloat16"),
        (f"{tag}-residual-dtype-type", lambda: f()(X2, X2R, 5, residual_dtype=3), TypeError,
         "residual_dtype must be None or one of"),
        (f"{tag}-weight-shape", lambda: f()(X2, X2R, 5, np.ones(4)), ValueError, "weight must have shape"),
        (f"{tag}-offset", lambda: f()(X2, X2R, 5, np.ones(5), offset="1"), TypeError, "offset must be a real number"),
        (f"{tag}-bwd-dh-shape", lambda: f("_backward")(np.ones((4, 5)), np.ones((4, 4)), X2, X2R, 5),
         ValueError, "dh must have the shape of the returned residual h (4, 5)"),
        (f"{tag}-bwd-dy-shape", lambda: f("_backward")(np.ones((4, 4)), None, X2, X2R, 5), ValueError,
         "dy must have the shape of the forward output (4, 5)"),
        (f"{tag}-stats-shape", lambda: f("_stats")(X2, X2R, 4), ValueError, "trailing dimensions of x"),
    ]


def threads(rng, *, bias: bool):
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000))
    kw = dict(x=x, residual=rng.standard_normal((96, 1000)), normalized_shape=1000, weight=rng.standard_normal(1000))
    if bias:
        kw["bias"] = rng.standard_normal(1000)
    return [dict(kw, residual_dtype="float32")]


def exact(norm: str):
    return NoExactOracle(f"the normalization is {norm}'s (exact-oracle tested) applied to h, and h = x + residual "
                         "rounded once is compared bitwise in every golden case")
