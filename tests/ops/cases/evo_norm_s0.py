"""evo_norm_s0's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.evo_norm_s0 as evo_mod

from ..._util import noncentred, random_affine
from . import C6, X4, NoExactOracle


def battery(rng):
    """Odd shapes (no, one, two and three spatial dimensions; one group, one channel per
    group, sets of one element), the gate's slope v of either sign, timm's eps and a
    small-variance set where eps is not negligible."""
    out = []
    for shape, G in [((2, 4, 3, 2), 2), ((3, 6, 5), 3), ((4, 6), 2), ((2, 3, 1, 1), 3), ((1, 2, 3, 2, 2), 1)]:
        C = shape[1]
        w, b = random_affine(rng, (C,))
        x = noncentred(rng, shape, loc=0.4, scale=1.3)
        v = rng.standard_normal(C) + 0.5
        out.append((f"{shape}-G{G}", dict(x=x, num_groups=G, weight=w, bias=b, v=v, eps=1e-5)))
    w, b = random_affine(rng, (4,))
    out.append(("small-var", dict(x=3e-3 * rng.standard_normal((2, 4, 5)), num_groups=2, weight=w, bias=b,
                                  v=rng.standard_normal(4), eps=1e-5)))
    w, b = random_affine(rng, (4,))
    out.append(("steep-gate", dict(x=rng.standard_normal((2, 4, 3)), num_groups=2, weight=w, bias=b,
                                   v=np.array([6.0, -5.0, 3.0, -8.0]), eps=1e-3)))
    return out


X3 = np.random.default_rng(2).standard_normal((2, 6, 4))
ERRORS = [
    ("evo-x-1d", lambda: refnorm.evo_norm_s0(np.ones(6), 2, C6, C6, C6), ValueError,
     "x must have at least 2 dimensions"),
    ("evo-x-int", lambda: refnorm.evo_norm_s0(np.ones((2, 6, 3), int), 2, C6, C6, C6), TypeError,
     "x must have a real"),
    ("evo-x-none", lambda: refnorm.evo_norm_s0(None, 2, C6, C6, C6), TypeError, "x must be an array"),
    ("evo-groups-not-dividing", lambda: refnorm.evo_norm_s0(X4, 4, C6, C6, C6), ValueError,
     "num_groups must divide the number of channels C = 6"),
    ("evo-groups-zero", lambda: refnorm.evo_norm_s0(X4, 0, C6, C6, C6), ValueError, "num_groups"),
    ("evo-groups-float", lambda: refnorm.evo_norm_s0(X4, 2.0, C6, C6, C6), TypeError, "num_groups"),
    ("evo-weight-none", lambda: refnorm.evo_norm_s0(X4, 2, None, C6, C6), TypeError, "weight is required"),
    ("evo-bias-none", lambda: refnorm.evo_norm_s0(X4, 2, C6, None, C6), TypeError, "bias is required"),
    ("evo-v-none", lambda: refnorm.evo_norm_s0(X4, 2, C6, C6, None), TypeError, "v is required"),
    ("evo-weight-shape", lambda: refnorm.evo_norm_s0(X4, 2, np.ones(5), C6, C6), ValueError,
     "weight must have shape (6,)"),
    ("evo-v-per-group", lambda: refnorm.evo_norm_s0(X4, 2, C6, C6, np.ones(2)), ValueError,
     "v must have shape (6,)"),
    ("evo-bias-int", lambda: refnorm.evo_norm_s0(X4, 2, C6, np.ones(6, int), C6), TypeError,
     "bias must have a real"),
    ("evo-eps-negative", lambda: refnorm.evo_norm_s0(X4, 2, C6, C6, C6, eps=-1e-5), ValueError,
     "eps must be >= 0"),
    ("evo-eps-str", lambda: refnorm.evo_norm_s0(X4, 2, C6, C6, C6, eps="1e-5"), TypeError,
     "eps must be a real number"),
    ("evo-eps-nan", lambda: refnorm.evo_norm_s0(X3, 2, C6, C6, C6, eps=float("nan")), ValueError,
     "eps must not be NaN"),
    ("evo-bwd-dy-shape", lambda: refnorm.evo_norm_s0_backward(np.ones((2, 6)), X4, 2, C6, C6, C6), ValueError,
     "dy must have the shape of the forward output"),
    ("evo-bwd-v-int", lambda: refnorm.evo_norm_s0_backward(np.ones(X4.shape), X4, 2, C6, C6, np.ones(6, int)),
     TypeError, "v must have a real"),
    ("evo-stats-v-none", lambda: refnorm.evo_norm_s0_stats(X4, 2, C6, C6, None), TypeError, "v is required"),
    ("evo-jvp-key", lambda: refnorm.evo_norm_s0_jvp({"eps": C6}, X4, 2, C6, C6, C6), ValueError,
     "not a differentiable argument"),
    ("evo-jvp-v-shape", lambda: refnorm.evo_norm_s0_jvp({"v": np.ones(2)}, X4, 2, C6, C6, C6), ValueError,
     "must have the shape of v"),
    ("evo-2nd-x-shape", lambda: refnorm.evo_norm_s0_double_backward({"x": np.ones(3)}, np.ones(X4.shape), X4, 2,
                                                                    C6, C6, C6), ValueError,
     "must have the shape of x"),
    ("evo-2nd-dy-shape", lambda: refnorm.evo_norm_s0_double_backward({}, np.ones(3), X4, 2, C6, C6, C6),
     ValueError, "dy must have the shape of the forward output"),
]

KERNELS = [(evo_mod, ("_forward", "_backward", "_jvp", "_double_backward"))]


def threads(rng):
    x = 0.3 + rng.standard_normal((4, 16, 24, 24))
    w, b = random_affine(rng, (16,))
    return [dict(x=x, num_groups=4, weight=w, bias=b, v=rng.standard_normal(16) + 1.0)]


EXACT = NoExactOracle("no exact oracle: the sigmoid gate is transcendental; checked against the autograd "
                      "reference and finite differences (tests/test_registry.py) and a PyTorch transcription "
                      "of timm's EvoNorm2dS0 (tests/ops/test_evo_norm_s0.py)")
