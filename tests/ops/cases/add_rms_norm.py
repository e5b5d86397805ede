"""add_rms_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import X2, NoExactOracle
from . import rms_norm as _rms


def battery(rng):
    out = []
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6)), ((5,), (5,))]:
        for affine, offset, rd in ((True, 0.0, None), (False, 0.0, None), (True, 1.0, None), (True, 0.0, "float64"),
                                   (True, 0.0, "float32"), (True, 0.0, "bfloat16")):
            w, _ = random_affine(rng, ns)
            kw = dict(x=noncentred(rng, shape), residual=0.7 * rng.standard_normal(shape), normalized_shape=ns,
                      weight=(0.1 * (w - 1.0) if offset else w) if affine else None, eps=1e-6, offset=offset,
                      residual_dtype=rd)
            out.append((f"{shape}-{ns}-affine{affine}-offset{offset}-{rd}", kw))
    return out


#: the reference receives a resolved eps (eps=None is dtype-dependent), as RMSNorm's
reference_kwargs = _rms.reference_kwargs


def finite_differences_apply(kw):
    """h is rounded to a narrower residual_dtype: a step function to finite differences, while its
    derivative is the identity by definition (checked against autograd of the reference instead)."""
    return kw.get("residual_dtype") in (None, "float64")


X2R = np.ones((4, 5))
ERRORS = [
    ("arms-residual-shape", lambda: refnorm.add_rms_norm(X2, np.ones((4, 4)), 5), ValueError,
     "residual must have the shape of x (4, 5)"),
    ("arms-residual-none", lambda: refnorm.add_rms_norm(X2, None, 5), TypeError, "residual must be an array"),
    ("arms-residual-dtype", lambda: refnorm.add_rms_norm(X2, X2R, 5, residual_dtype="int8"), ValueError,
     "residual_dtype must be None or one of float64, float32, float16, bfloat16"),
    ("arms-residual-dtype-type", lambda: refnorm.add_rms_norm(X2, X2R, 5, residual_dtype=3), TypeError,
     "residual_dtype must be None or one of"),
    ("arms-weight-shape", lambda: refnorm.add_rms_norm(X2, X2R, 5, np.ones(4)), ValueError, "weight must have shape"),
    ("arms-offset", lambda: refnorm.add_rms_norm(X2, X2R, 5, np.ones(5), offset="1"), TypeError,
     "offset must be a real number"),
    ("arms-bwd-dh-shape", lambda: refnorm.add_rms_norm_backward(np.ones((4, 5)), np.ones((4, 4)), X2, X2R, 5),
     ValueError, "dh must have the shape of the returned residual h (4, 5)"),
    ("arms-bwd-dy-shape", lambda: refnorm.add_rms_norm_backward(np.ones((4, 4)), None, X2, X2R, 5), ValueError,
     "dy must have the shape of the forward output (4, 5)"),
    ("arms-stats-shape", lambda: refnorm.add_rms_norm_stats(X2, X2R, 4), ValueError, "trailing dimensions of x"),
]

KERNELS = []


def threads(rng):
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000))
    return [dict(x=x, residual=rng.standard_normal((96, 1000)), normalized_shape=1000,
                 weight=rng.standard_normal(1000), residual_dtype="float32")]


EXACT = NoExactOracle("the normalization is RMSNorm's (exact-oracle tested) applied to h, and h = x + residual "
                      "rounded once is compared bitwise in every golden case")
