"""batch_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import math

import numpy as np

import refnorm
from ..._util import noncentred, random_affine
from . import C6, X4, ExactOracle


def battery(rng):
    out = []
    for shape in [(5, 3), (4, 3, 7), (2, 3, 3, 5), (2, 2, 3, 2, 3), (1, 3, 2)]:
        C = shape[1]
        for training in (True, False):
            for affine in (True, False):
                w, b = random_affine(rng, (C,))
                rm = 0.3 * rng.standard_normal(C) - 2.0
                rv = 0.2 + rng.random(C)
                kw = dict(x=noncentred(rng, shape), running_mean=rm, running_var=rv,
                          weight=w if affine else None, bias=b if affine else None,
                          training=training, momentum=0.1, eps=1e-5)
                out.append((f"{shape}-train{training}-affine{affine}", kw))
    w, b = random_affine(rng, (3,))
    out.append(("train-no-running", dict(x=noncentred(rng, (6, 3, 2)), running_mean=None, running_var=None,
                                         weight=w, bias=b, training=True, momentum=0.1, eps=1e-3)))
    out.append(("weight-only", dict(x=noncentred(rng, (6, 3)), running_mean=None, running_var=None,
                                    weight=w, bias=None, training=True, momentum=0.1, eps=1e-5)))
    return out


def running_stats_args(kw):
    """The update runs in training mode, on the case's running statistics."""
    if kw["training"] and kw.get("running_mean") is not None:
        return kw["x"], kw["running_mean"], kw["running_var"], 0.1
    return None


ERRORS = [
    ("bn-train-one-value", lambda: refnorm.batch_norm(np.ones((1, 3)), None, None, training=True), ValueError,
     "more than 1 value per channel"),
    ("bn-train-one-value-4d", lambda: refnorm.batch_norm(np.ones((1, 3, 1, 1)), None, None, training=True),
     ValueError, "more than 1 value per channel"),
    ("bn-eval-no-running", lambda: refnorm.batch_norm(X4, None, None), ValueError,
     "running_mean and running_var are required when training=False"),
    ("bn-running-one-only", lambda: refnorm.batch_norm(X4, C6, None, training=True), ValueError, "together"),
    ("bn-running-shape", lambda: refnorm.batch_norm(X4, np.ones(5), np.ones(5)), ValueError,
     "running_mean must have shape (6,)"),
    ("bn-1d", lambda: refnorm.batch_norm(np.ones(6), C6, C6), ValueError, "at least 2 dimensions"),
    ("bn-training-int", lambda: refnorm.batch_norm(X4, C6, C6, training=1), TypeError, "training must be a bool"),
    ("bn-eps-nan", lambda: refnorm.batch_norm(X4, C6, C6, eps=float("nan")), ValueError, "eps must not be NaN"),
    ("bn-rs-momentum-none", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None), ValueError,
     "num_batches_tracked is required"),
    ("bn-rs-convention", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, convention="keras"), ValueError,
     "convention must be one of"),
    ("bn-rs-none-onnx", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None, convention="onnx"), ValueError,
     "only in convention='torch'"),
    ("bn-rs-one-value", lambda: refnorm.batch_norm_running_stats(np.ones((1, 6)), C6, C6), ValueError,
     "more than 1 value per channel"),
    ("bn-rs-nbt-negative", lambda: refnorm.batch_norm_running_stats(X4, C6, C6, None, num_batches_tracked=-1),
     ValueError, "num_batches_tracked must be >= 0"),
    # the <op>_stats variant validates exactly as the forward
    ("bn-stats-eval-no-running", lambda: refnorm.batch_norm_stats(X4, None, None), ValueError,
     "running_mean and running_var are required when training=False"),
]

KERNELS = []


def threads(rng):
    x4 = 1e3 + rng.standard_normal((8, 32, 9, 11))
    c = rng.standard_normal(32)
    return [dict(x=x4, running_mean=None, running_var=None, weight=c, bias=c, training=True)]


def thread_extras(cases):
    kw = cases[0]
    return list(refnorm.batch_norm_running_stats(kw["x"], kw["weight"], np.abs(kw["weight"])))


# --- the exact oracle -------------------------------------------------------------


def _layout(shape, attrs):
    N, C = shape[:2]
    rest = tuple(shape[2:])
    return C, N * math.prod(rest), lambda v: np.moveaxis(v.reshape((C, N) + rest), 0, 1).copy()


def _complete(kw, rng):
    kw.setdefault("training", True)
    C = kw["x"].shape[1]
    kw["running_mean"] = -2.0 + 0.3 * rng.standard_normal(C)
    kw["running_var"] = 0.2 + rng.random(C)


def _draw(draw, st, N, C, sp):
    training = draw(st.booleans())
    if training and N * math.prod(sp) == 1:
        N += 1
    return (N, C) + sp, {"training": training}


EXACT = ExactOracle(
    variants=[((4, 3, 5), {"training": True}), ((3, 2, 2, 3), {"training": True}),
              ((4, 3, 5), {"training": False}), ((7, 3), {"training": True})],
    exact_tier=((4, 3, 4), {"training": True}),
    # BatchNorm training refuses one value per channel (as PyTorch): eval mode
    single_element=((1, 3), {"training": False}),
    layout=_layout, affine="channel", has_bias=True, complete=_complete,
    mode=lambda kw: "batch" if kw["training"] else "running",
    view=lambda x, kw: (x.reshape(x.shape[0], x.shape[1], -1), (x.shape[1],)),
    draw=_draw,
    long_cases=lambda rng: [("long-set-1e4", -2.3 + 0.5 * rng.standard_normal((20, 2, 500)), {"training": True})],
)
