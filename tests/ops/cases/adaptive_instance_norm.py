"""adaptive_instance_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.adaptive_instance_norm as adain_mod

from ..._util import noncentred
from . import X4, NoExactOracle


def battery(rng):
    """Content and style of equal and of different spatial sizes, 1-, 2- and 3-D
    spatial, a style with another number of spatial dimensions than the content,
    the smallest sets (2 positions), mean-offset data, the default and another eps."""
    out = []
    pairs = [((2, 2, 3, 2), (2, 2, 3, 2)), ((2, 2, 3, 2), (2, 2, 2, 3)), ((3, 2, 7), (3, 2, 4)),
             ((2, 2, 2), (2, 2, 2)), ((1, 2, 2, 2, 2), (1, 2, 2, 1, 3)), ((2, 2, 5), (2, 2, 2, 3))]
    for xs, ss in pairs:
        out.append((f"{xs}-{ss}", dict(x=noncentred(rng, xs, loc=0.4, scale=1.3),
                                       style=noncentred(rng, ss, loc=-0.7, scale=1.8), eps=1e-5)))
    out.append(("offset-eps1e-3", dict(x=noncentred(rng, (2, 2, 6), loc=30.0, scale=0.5),
                                       style=noncentred(rng, (2, 2, 5), loc=-20.0, scale=0.3), eps=1e-3)))
    return out


X3 = np.random.default_rng(2).standard_normal((2, 6, 4))
S3 = np.random.default_rng(3).standard_normal((2, 6, 5))
ERRORS = [
    ("adain-x-2d", lambda: refnorm.adaptive_instance_norm(np.ones((2, 6)), S3), ValueError,
     "x must have at least 3 dimensions"),
    ("adain-style-2d", lambda: refnorm.adaptive_instance_norm(X3, np.ones((2, 6))), ValueError,
     "style must have at least 3 dimensions"),
    ("adain-x-int", lambda: refnorm.adaptive_instance_norm(np.ones((2, 6, 3), int), S3), TypeError,
     "x must have a real"),
    ("adain-style-none", lambda: refnorm.adaptive_instance_norm(X3, None), TypeError, "style must be an array"),
    ("adain-c-mismatch", lambda: refnorm.adaptive_instance_norm(X3, np.ones((2, 5, 4))), ValueError,
     "style must have the N and C of x"),
    ("adain-n-mismatch", lambda: refnorm.adaptive_instance_norm(X3, np.ones((3, 6, 4))), ValueError,
     "style must have the N and C of x"),
    ("adain-x-one-position", lambda: refnorm.adaptive_instance_norm(np.ones((2, 6, 1, 1)), S3), ValueError,
     "x must have at least 2 spatial positions"),
    ("adain-style-one-position", lambda: refnorm.adaptive_instance_norm(X3, np.ones((2, 6, 1))), ValueError,
     "style must have at least 2 spatial positions"),
    ("adain-eps-negative", lambda: refnorm.adaptive_instance_norm(X3, S3, eps=-1e-5), ValueError,
     "eps must be >= 0"),
    ("adain-eps-str", lambda: refnorm.adaptive_instance_norm(X3, S3, eps="1e-5"), TypeError,
     "eps must be a real number"),
    ("adain-eps-nan", lambda: refnorm.adaptive_instance_norm(X3, S3, eps=float("nan")), ValueError,
     "eps must not be NaN"),
    ("adain-bwd-dy-shape", lambda: refnorm.adaptive_instance_norm_backward(np.ones((2, 6, 5)), X3, S3), ValueError,
     "dy must have the shape of the forward output"),
    ("adain-bwd-style-shape", lambda: refnorm.adaptive_instance_norm_backward(np.ones(X3.shape), X3, X4[:, :5]),
     ValueError, "style must have the N and C of x"),
    ("adain-stats-style-int", lambda: refnorm.adaptive_instance_norm_stats(X3, np.ones((2, 6, 5), int)), TypeError,
     "style must have a real"),
    ("adain-jvp-key", lambda: refnorm.adaptive_instance_norm_jvp({"eps": S3}, X3, S3), ValueError,
     "not a differentiable argument"),
    ("adain-jvp-style-shape", lambda: refnorm.adaptive_instance_norm_jvp({"style": X3}, X3, S3), ValueError,
     "must have the shape of style"),
    ("adain-2nd-x-shape", lambda: refnorm.adaptive_instance_norm_double_backward({"x": np.ones(3)}, np.ones(X3.shape),
                                                                                 X3, S3), ValueError,
     "must have the shape of x"),
    ("adain-2nd-dy-shape", lambda: refnorm.adaptive_instance_norm_double_backward({}, np.ones(3), X3, S3),
     ValueError, "dy must have the shape of the forward output"),
]

KERNELS = [(adain_mod, ("_unbiased", "_centred", "_dots", "_sums"))]


def threads(rng):
    x = 0.3 + rng.standard_normal((4, 16, 24, 24))
    s = -0.5 + 2.0 * rng.standard_normal((4, 16, 20, 20))
    return [dict(x=x, style=s)]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py) and a PyTorch transcription of the authors' calc_mean_std / "
                      "adaptive_instance_normalization (tests/ops/test_adaptive_instance_norm.py)")
