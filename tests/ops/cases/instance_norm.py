"""instance_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import math

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import C6, X4, ExactOracle


def battery(rng):
    out = []
    for shape in [(2, 3, 5), (3, 2, 3, 4), (1, 2, 2, 3, 2)]:
        C = shape[1]
        for uis in (True, False):
            for affine in (True, False):
                w, b = random_affine(rng, (C,))
                stats = uis is False or rng.random() < 0.5
                kw = dict(x=noncentred(rng, shape),
                          running_mean=(0.3 * rng.standard_normal(C) - 2.0) if stats else None,
                          running_var=(0.2 + rng.random(C)) if stats else None,
                          weight=w if affine else None, bias=b if affine else None,
                          use_input_stats=uis, momentum=0.1, eps=1e-5)
                out.append((f"{shape}-uis{uis}-affine{affine}", kw))
    return out


def running_stats_args(kw):
    """The update (from the case's batch statistics) on the case's running statistics."""
    if kw.get("running_mean") is not None:
        return kw["x"], kw["running_mean"], kw["running_var"], 0.1
    return None


ERRORS = [
    ("in-hw1", lambda: refnorm.instance_norm(np.ones((2, 3, 1))), ValueError, "more than 1 spatial element"),
    ("in-2d", lambda: refnorm.instance_norm(np.ones((2, 3))), ValueError, "more than 1 spatial element"),
    ("in-eval-no-running", lambda: refnorm.instance_norm(X4, use_input_stats=False), ValueError,
     "required when use_input_stats=False"),
    ("in-weight-shape", lambda: refnorm.instance_norm(X4, weight=np.ones(2)), ValueError, "weight must have shape"),
    ("in-bwd-weight-shape", lambda: refnorm.instance_norm_backward(np.ones(X4.shape), X4, weight=np.ones(2)),
     ValueError, "weight must have shape"),
    ("in-rs-onnx", lambda: refnorm.instance_norm_running_stats(X4, C6, C6, convention="onnx"), ValueError,
     "only convention='torch'"),
    # the <op>_stats variant validates exactly as the forward
    ("in-stats-hw1", lambda: refnorm.instance_norm_stats(np.ones((2, 3, 1))), ValueError,
     "more than 1 spatial element"),
]

KERNELS = []


def threads(rng):
    x4 = 1e3 + rng.standard_normal((8, 32, 9, 11))
    c = rng.standard_normal(32)
    return [dict(x=x4, weight=c, bias=c)]


# --- the exact oracle -------------------------------------------------------------


def _complete(kw, rng):
    kw.setdefault("use_input_stats", True)
    if not kw["use_input_stats"]:
        C = kw["x"].shape[1]
        kw["running_mean"] = -2.0 + 0.3 * rng.standard_normal(C)
        kw["running_var"] = 0.2 + rng.random(C)


def _draw(draw, st, N, C, sp):
    uis = draw(st.booleans())
    if uis and math.prod(sp) == 1:
        sp = sp + (2,)
    return (N, C) + sp, {"use_input_stats": uis}


EXACT = ExactOracle(
    variants=[((2, 3, 6), {"use_input_stats": True}), ((2, 2, 3, 4), {"use_input_stats": True}),
              ((2, 3, 6), {"use_input_stats": False})],
    exact_tier=((2, 3, 8), {"use_input_stats": True}),
    # InstanceNorm with input statistics refuses one value per set (as PyTorch): running statistics
    single_element=((2, 3, 1), {"use_input_stats": False}),
    layout=lambda shape, attrs: (shape[0] * shape[1], math.prod(shape[2:]), lambda v: v.reshape(shape).copy()),
    affine="channel", has_bias=True, complete=_complete,
    mode=lambda kw: "batch" if kw["use_input_stats"] else "running",
    view=lambda x, kw: (x.reshape(1, x.shape[0] * x.shape[1], -1), x.shape[:2]),
    draw=_draw,
)
