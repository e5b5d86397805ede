"""batch_renorm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm

from ..._util import noncentred, random_affine
from . import C6, X4, NoExactOracle

#: running statistics that put channel 0 in the unclipped range, and clip r at r_max and at 1/r_max
#: (running_var 0.002 / 50 against a batch variance ~ 0.25) and d at +d_max / -d_max (running_mean far below /
#: above the batch mean ~ -2.3), channel by channel, for data noncentred(loc=-2.3, scale=0.5)
_CLIP_MEAN = np.array([-2.1, -9.0, 40.0])
_CLIP_VAR = np.array([0.3, 0.002, 50.0])


def _running(rng, C, clip):
    if clip:
        return np.resize(_CLIP_MEAN, C), np.resize(_CLIP_VAR, C)
    return -2.3 + 0.2 * rng.standard_normal(C), 0.25 * (0.6 + 0.8 * rng.random(C))


def battery(rng):
    """Training with the clip inactive (r, d depend on x) and active on some channels, eval, weight and bias
    present and absent, odd shapes, and r_max = 1, d_max = 0 (BatchNorm's training)."""
    out = []
    for shape in [(5, 3), (4, 3, 7), (2, 3, 3, 5), (1, 3, 2)]:
        C = shape[1]
        for training in (True, False):
            for affine in (True, False):
                for clip in ((False, True) if training else (False,)):
                    w, b = random_affine(rng, (C,))
                    rm, rv = _running(rng, C, clip)
                    kw = dict(x=noncentred(rng, shape), running_mean=rm, running_var=rv,
                              weight=w if affine else None, bias=b if affine else None,
                              training=training, momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0)
                    out.append((f"{shape}-train{training}-affine{affine}-clip{clip}", kw))
    w, b = random_affine(rng, (3,))
    rm, rv = _running(rng, 3, False)
    out.append(("weight-only", dict(x=noncentred(rng, (6, 3)), running_mean=rm, running_var=rv, weight=w, bias=None,
                                    training=True, momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0)))
    out.append(("all-clipped", dict(x=noncentred(rng, (3, 3, 4)), running_mean=np.array([-9.0, 40.0, -9.0]),
                                    running_var=np.array([0.002, 50.0, 0.002]), weight=w, bias=b, training=True,
                                    momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0)))
    out.append(("bn-limit", dict(x=noncentred(rng, (4, 3, 2)), running_mean=rm, running_var=rv, weight=w, bias=b,
                                 training=True, momentum=0.1, eps=1e-3, r_max=1.0, d_max=0.0)))
    return out


def _corrections(kw):
    """``(r_unclipped, d_unclipped, r_max, d_max)`` per channel for a training case."""
    x = np.asarray(kw["x"], dtype=np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    sigma = np.sqrt(np.asarray(kw["running_var"]) + kw["eps"])
    return (np.sqrt(var + kw["eps"]) / sigma, (mean - np.asarray(kw["running_mean"])) / sigma,
            kw.get("r_max", 3.0), kw.get("d_max", 5.0))


def finite_differences_apply(kw):
    """In training, r and d are functions of x that every derivative treats as constants (the paper's
    stop_gradient): a finite difference of the forward (or of the backward) moves them too and measures
    another derivative, except where both are clipped on every channel (constant near x).  Eval applies."""
    if not kw.get("training"):
        return True
    r, d, r_max, d_max = _corrections(kw)
    return bool(np.all((r > r_max) | (r < 1.0 / r_max)) and np.all(np.abs(d) > d_max))


def running_stats_args(kw):
    """The update runs in training mode, on the case's running statistics."""
    if kw["training"]:
        return kw["x"], kw["running_mean"], kw["running_var"], 0.1
    return None


X2 = np.random.default_rng(3).standard_normal((4, 6))
ERRORS = [
    ("brn-train-no-running", lambda: refnorm.batch_renorm(X4, None, None, training=True), TypeError,
     "running_mean and running_var are required"),
    ("brn-eval-no-running", lambda: refnorm.batch_renorm(X4, None, None), TypeError,
     "running_mean and running_var are required"),
    ("brn-running-one-only", lambda: refnorm.batch_renorm(X4, C6, None, training=True), ValueError, "together"),
    ("brn-running-shape", lambda: refnorm.batch_renorm(X4, np.ones(5), np.ones(5)), ValueError,
     "running_mean must have shape (6,)"),
    ("brn-1d", lambda: refnorm.batch_renorm(np.ones(6), C6, C6), ValueError, "at least 2 dimensions"),
    ("brn-train-one-value", lambda: refnorm.batch_renorm(np.ones((1, 6)), C6, C6, training=True), ValueError,
     "more than 1 value per channel"),
    ("brn-weight-shape", lambda: refnorm.batch_renorm(X4, C6, C6, np.ones(5)), ValueError,
     "weight must have shape (6,)"),
    ("brn-training-int", lambda: refnorm.batch_renorm(X4, C6, C6, training=1), TypeError, "training must be a bool"),
    ("brn-eps-nan", lambda: refnorm.batch_renorm(X4, C6, C6, eps=float("nan")), ValueError, "eps must not be NaN"),
    ("brn-r-max-below-1", lambda: refnorm.batch_renorm(X4, C6, C6, training=True, r_max=0.5), ValueError,
     "r_max must be >= 1"),
    ("brn-d-max-negative", lambda: refnorm.batch_renorm(X4, C6, C6, training=True, d_max=-1.0), ValueError,
     "d_max must be >= 0"),
    ("brn-r-max-str", lambda: refnorm.batch_renorm(X4, C6, C6, r_max="3"), TypeError, "r_max must be a real number"),
    ("brn-d-max-nan", lambda: refnorm.batch_renorm(X4, C6, C6, d_max=float("nan")), ValueError,
     "d_max must not be NaN"),
    ("brn-bwd-dy-shape", lambda: refnorm.batch_renorm_backward(np.ones((2, 6)), X4, C6, C6, training=True),
     ValueError, "dy must have the shape of the forward output"),
    ("brn-bwd-r-max", lambda: refnorm.batch_renorm_backward(np.ones(X4.shape), X4, C6, C6, r_max=0.0), ValueError,
     "r_max must be >= 1"),
    ("brn-stats-no-running", lambda: refnorm.batch_renorm_stats(X4, None, None, training=True), TypeError,
     "running_mean and running_var are required"),
    ("brn-rs-convention", lambda: refnorm.batch_renorm_running_stats(X4, C6, C6, convention="keras"), ValueError,
     "convention must be one of"),
    ("brn-rs-one-value", lambda: refnorm.batch_renorm_running_stats(np.ones((1, 6)), C6, C6), ValueError,
     "more than 1 value per channel"),
    ("brn-rs-momentum-none", lambda: refnorm.batch_renorm_running_stats(X4, C6, C6, None), ValueError,
     "num_batches_tracked is required"),
    ("brn-jvp-key", lambda: refnorm.batch_renorm_jvp({"eps": C6}, X4, C6, C6), ValueError,
     "not a differentiable argument"),
    ("brn-jvp-weight-not-given", lambda: refnorm.batch_renorm_jvp({"weight": C6}, X4, C6, C6, training=True),
     ValueError, "weight is None"),
    ("brn-2nd-x-shape", lambda: refnorm.batch_renorm_double_backward({"x": np.ones(3)}, np.ones(X4.shape), X4, C6,
                                                                      C6, training=True), ValueError,
     "must have the shape of x"),
    ("brn-2nd-dy-shape", lambda: refnorm.batch_renorm_double_backward({}, np.ones(3), X4, C6, C6), ValueError,
     "dy must have the shape of the forward output"),
]

KERNELS = []


def threads(rng):
    x4 = -2.3 + 0.5 * rng.standard_normal((8, 32, 9, 11))
    w, b = random_affine(rng, (32,))
    rm, rv = _running(rng, 32, False)
    rmc, rvc = _running(rng, 32, True)
    return [dict(x=x4, running_mean=rm, running_var=rv, weight=w, bias=b, training=True),
            dict(x=x4, running_mean=rmc, running_var=rvc, weight=w, bias=b, training=True)]


def thread_extras(cases):
    kw = cases[0]
    return list(refnorm.batch_renorm_running_stats(kw["x"], kw["running_mean"], kw["running_var"]))


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference (r, d through autograd's getval, "
                      "its stop_gradient) and finite differences where r and d are clipped or in eval "
                      "(tests/test_registry.py), and an independent PyTorch transcription of Algorithm 1 with "
                      "r.detach(), d.detach() (tests/ops/test_batch_renorm.py)")
