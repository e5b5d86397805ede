"""group_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import math

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import C6, X4, ExactOracle


def battery(rng):
    out = []
    for shape, G in [((2, 6, 5), 1), ((2, 6, 5), 6), ((2, 6, 5), 3), ((3, 4, 3, 3), 2), ((2, 6), 2),
                     ((1, 4, 2, 3, 2), 4), ((2, 3, 1), 3)]:
        C = shape[1]
        for affine in (True, False):
            w, b = random_affine(rng, (C,))
            kw = dict(x=noncentred(rng, shape), num_groups=G, weight=w if affine else None,
                      bias=b if affine else None, eps=1e-5)
            out.append((f"{shape}-G{G}-affine{affine}", kw))
    return out


ERRORS = [
    ("gn-groups-not-dividing", lambda: refnorm.group_norm(X4, 4), ValueError, "num_groups must divide"),
    ("gn-groups-zero", lambda: refnorm.group_norm(X4, 0), ValueError, "num_groups must be >= 1"),
    ("gn-groups-float", lambda: refnorm.group_norm(X4, 2.0), TypeError, "num_groups must be an int"),
    ("gn-weight-shape", lambda: refnorm.group_norm(X4, 2, np.ones(3)), ValueError, "weight must have shape (6,)"),
    ("gn-bias-shape", lambda: refnorm.group_norm(X4, 2, C6, np.ones((6, 1))), ValueError, "bias must have shape"),
    ("gn-1d", lambda: refnorm.group_norm(np.ones(6), 2), ValueError, "x must have at least 2 dimensions"),
    # the <op>_stats variant validates exactly as the forward
    ("gn-stats-groups", lambda: refnorm.group_norm_stats(X4, 4), ValueError, "num_groups must divide"),
]

KERNELS = []


def threads(rng):
    x4 = 1e3 + rng.standard_normal((8, 32, 9, 11))
    c = rng.standard_normal(32)
    return [dict(x=x4, num_groups=8, weight=c, bias=c)]


# --- the exact oracle -------------------------------------------------------------


def _layout(shape, attrs):
    G = attrs["num_groups"]
    return shape[0] * G, math.prod(shape[1:]) // G, lambda v: v.reshape(shape).copy()


def _draw(draw, st, N, C, sp):
    G = draw(st.sampled_from([g for g in range(1, C + 1) if C % g == 0]))
    return (N, C) + sp, {"num_groups": G}


EXACT = ExactOracle(
    variants=[((2, 6, 5), {"num_groups": 3}), ((2, 4, 2, 3), {"num_groups": 1}), ((2, 4, 3), {"num_groups": 4})],
    exact_tier=((2, 4, 4), {"num_groups": 2}),
    single_element=((2, 3, 1), {"num_groups": 3}),
    layout=_layout, affine="channel", has_bias=True, complete=lambda kw, rng: None, mode=lambda kw: "batch",
    view=lambda x, kw: (x.reshape(1, x.shape[0] * kw["num_groups"], -1), (x.shape[0], kw["num_groups"])),
    draw=_draw,
)
