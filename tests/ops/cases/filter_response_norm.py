"""filter_response_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.filter_response_norm as frn_mod

from ..._util import noncentred, random_affine
from . import C6, X4, NoExactOracle


def battery(rng):
    """Odd shapes (1-, 2- and 3-D spatial, sets of one element), tau present and
    absent, the paper's and timm's eps, and a small-magnitude set where eps is
    not negligible.  tau is drawn away from the ties (finite differences)."""
    out = []
    for shape in [(2, 3, 3, 2), (3, 2, 7), (2, 4, 1, 1), (1, 2, 3, 2, 2)]:
        C = shape[1]
        for with_tau in (True, False):
            for eps in (1e-6, 1e-5):
                if eps == 1e-5 and (not with_tau or shape != (3, 2, 7)):
                    continue
                w, b = random_affine(rng, (C,))
                x = noncentred(rng, shape, loc=0.4, scale=1.3)
                tau = 0.2 * rng.standard_normal(C) if with_tau else None
                out.append((f"{shape}-tau{with_tau}-eps{eps}", dict(x=x, weight=w, bias=b, tau=tau, eps=eps)))
    w, b = random_affine(rng, (3,))
    out.append(("small-nu2", dict(x=1e-3 * rng.standard_normal((2, 3, 6)), weight=w, bias=b,
                                  tau=0.1 * rng.standard_normal(3), eps=1e-6)))
    return out


X3 = np.random.default_rng(2).standard_normal((2, 6, 4))
ERRORS = [
    ("frn-x-2d", lambda: refnorm.filter_response_norm(np.ones((2, 6)), C6, C6), ValueError,
     "x must have at least 3 dimensions"),
    ("frn-x-int", lambda: refnorm.filter_response_norm(np.ones((2, 6, 3), int), C6, C6), TypeError,
     "x must have a real"),
    ("frn-x-none", lambda: refnorm.filter_response_norm(None, C6, C6), TypeError, "x must be an array"),
    ("frn-weight-none", lambda: refnorm.filter_response_norm(X4, None, C6), TypeError, "weight is required"),
    ("frn-bias-none", lambda: refnorm.filter_response_norm(X4, C6, None), TypeError, "bias is required"),
    ("frn-weight-shape", lambda: refnorm.filter_response_norm(X4, np.ones(5), C6), ValueError,
     "weight must have shape (6,)"),
    ("frn-bias-int", lambda: refnorm.filter_response_norm(X4, C6, np.ones(6, int)), TypeError,
     "bias must have a real"),
    ("frn-tau-shape", lambda: refnorm.filter_response_norm(X4, C6, C6, np.ones((6, 1))), ValueError,
     "tau must have shape (6,)"),
    ("frn-eps-negative", lambda: refnorm.filter_response_norm(X4, C6, C6, eps=-1e-6), ValueError,
     "eps must be >= 0"),
    ("frn-eps-str", lambda: refnorm.filter_response_norm(X4, C6, C6, eps="1e-6"), TypeError,
     "eps must be a real number"),
    ("frn-eps-nan", lambda: refnorm.filter_response_norm(X3, C6, C6, eps=float("nan")), ValueError,
     "eps must not be NaN"),
    ("frn-bwd-dy-shape", lambda: refnorm.filter_response_norm_backward(np.ones((2, 6)), X4, C6, C6), ValueError,
     "dy must have the shape of the forward output"),
    ("frn-bwd-tau-int", lambda: refnorm.filter_response_norm_backward(np.ones(X4.shape), X4, C6, C6,
                                                                      np.ones(6, int)), TypeError,
     "tau must have a real"),
    ("frn-stats-weight-none", lambda: refnorm.filter_response_norm_stats(X4, None, C6), TypeError,
     "weight is required"),
    ("frn-jvp-tau-not-given", lambda: refnorm.filter_response_norm_jvp({"tau": C6}, X4, C6, C6), ValueError,
     "tau is None"),
    ("frn-jvp-key", lambda: refnorm.filter_response_norm_jvp({"eps": C6}, X4, C6, C6), ValueError,
     "not a differentiable argument"),
    ("frn-2nd-x-shape", lambda: refnorm.filter_response_norm_double_backward({"x": np.ones(3)}, np.ones(X4.shape),
                                                                             X4, C6, C6, C6), ValueError,
     "must have the shape of x"),
    ("frn-2nd-dy-shape", lambda: refnorm.filter_response_norm_double_backward({}, np.ones(3), X4, C6, C6),
     ValueError, "dy must have the shape of the forward output"),
]

KERNELS = [(frn_mod, ("_moments",))]


def threads(rng):
    x = 0.3 + rng.standard_normal((4, 16, 24, 24))
    w, b = random_affine(rng, (16,))
    return [dict(x=x, weight=w, bias=b, tau=0.2 * rng.standard_normal(16)), dict(x=x, weight=w, bias=b)]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py) and a PyTorch transcription of timm's FilterResponseNormTlu2d "
                      "(tests/ops/test_filter_response_norm.py)")
