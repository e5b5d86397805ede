"""evo_norm_b0's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward, forward mode and the
running-variance update)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.evo_norm_b0 as evo_mod

from ..._util import noncentred, random_affine
from . import C6, X4, NoExactOracle


def battery(rng):
    """Odd shapes (1x1 maps, one sample), training and evaluation, timm's eps and a
    larger one, v of both signs (both branches of the maximum are taken: with
    v ~ N(0, 0.8) some elements have right > left, others not).  Random data
    keeps every element away from a tie (finite differences)."""
    out = []
    for shape in [(2, 3, 3, 2), (3, 2, 1, 1), (1, 4, 3, 3), (2, 5, 2, 3)]:
        C = shape[1]
        for training in (True, False):
            w, b = random_affine(rng, (C,))
            x = noncentred(rng, shape, loc=0.3, scale=1.2)
            v = 0.8 * rng.standard_normal(C)
            rv = 0.5 + rng.random(C)
            out.append((f"{shape}-train{training}", dict(x=x, weight=w, bias=b, v=v, running_var=rv,
                                                           training=training)))
    w, b = random_affine(rng, (3,))
    out.append(("eps0.1-no-running", dict(x=noncentred(rng, (2, 3, 2, 2)), weight=w, bias=b,
                                          v=0.5 * rng.standard_normal(3), eps=0.1)))
    out.append(("small-x-eps-dominated", dict(x=1e-2 * rng.standard_normal((2, 3, 3, 3)), weight=w, bias=b,
                                               v=rng.standard_normal(3), running_var=0.1 + rng.random(3),
                                               training=True)))
    return out


def running_stats_args(kw):
    """One update of a running variance of ones with timm's momentum (None for a batch of one value per channel)."""
    x = kw["x"]
    if x.size // x.shape[1] < 2:
        return None
    rv = kw.get("running_var")
    return x, (np.ones(x.shape[1]) if rv is None else rv), 0.1


def gradient_scale(spec, kw, dy, name):
    """The magnitudes of the terms each gradient is summed from (from the kernel's intermediates,
    docs/ops/evo_norm_b0.md#evo-b0-backward): ``dx`` per element ``|g|/d`` plus ``|dd|`` times ``|v|``,
    ``S |x - mu| / (S istd)`` and ``N S |x - m| / (N S left)``, the sums over the sets taken of absolute
    values; ``dweight``: ``sum |dy xn|``, ``dbias``: ``sum |dy|``, ``dv``: ``sum |dd x|``."""
    x = np.asarray(kw["x"], dtype=np.float64)
    C = x.shape[1]
    f = evo_mod._Fwd(x.reshape(evo_mod.layout(x.shape).view), np.asarray(kw["weight"], dtype=np.float64),
                     np.asarray(kw["bias"], dtype=np.float64), np.asarray(kw["v"], dtype=np.float64),
                     kw.get("running_var"), kw.get("training", True), kw.get("eps", 1e-3))
    d3 = np.asarray(dy, dtype=np.float64).reshape(f.xn.shape)
    g = np.abs(d3 * np.asarray(kw["weight"], dtype=np.float64).reshape(1, C, 1))
    dd = g * np.abs(f.xn) / f.d
    if name == "weight":
        return float(np.abs(d3 * f.xn).sum(axis=(0, 2)).max())
    if name == "bias":
        return float(np.abs(d3).sum(axis=(0, 2)).max())
    if name == "v":
        return float((dd * np.abs(f.xn * f.d)).sum(axis=(0, 2)).max())
    t = g / f.d + dd * np.abs(f.vv) + dd.sum(axis=2, keepdims=True) / f.istd * np.abs(f.xn * f.d - f.mu)
    if f.training:
        t = t + dd.sum(axis=(0, 2), keepdims=True) / f.left * np.abs(f.xn * f.d - f.m)
    return float(t.max())


ERRORS = [
    ("evo-x-3d", lambda: refnorm.evo_norm_b0(np.ones((2, 6, 3)), C6, C6, C6), ValueError,
     "x must have at least 4 dimensions"),
    ("evo-x-5d", lambda: refnorm.evo_norm_b0(np.ones((2, 6, 3, 3, 1)), C6, C6, C6), ValueError,
     "x must have exactly 4 dimensions"),
    ("evo-x-int", lambda: refnorm.evo_norm_b0(np.ones((2, 6, 3, 3), int), C6, C6, C6), TypeError,
     "x must have a real"),
    ("evo-weight-none", lambda: refnorm.evo_norm_b0(X4, None, C6, C6), TypeError, "weight is required"),
    ("evo-v-none", lambda: refnorm.evo_norm_b0(X4, C6, C6, None), TypeError, "v is required"),
    ("evo-v-shape", lambda: refnorm.evo_norm_b0(X4, C6, C6, np.ones(5)), ValueError, "v must have shape (6,)"),
    ("evo-running-var-shape", lambda: refnorm.evo_norm_b0(X4, C6, C6, C6, np.ones(3)), ValueError,
     "running_var must have shape (6,)"),
    ("evo-eval-no-running-var", lambda: refnorm.evo_norm_b0(X4, C6, C6, C6, None, False), ValueError,
     "running_var is required when training=False"),
    ("evo-training-int", lambda: refnorm.evo_norm_b0(X4, C6, C6, C6, C6, 1), TypeError, "training must be a bool"),
    ("evo-eps-negative", lambda: refnorm.evo_norm_b0(X4, C6, C6, C6, eps=-1e-3), ValueError, "eps must be >= 0"),
    ("evo-eps-nan", lambda: refnorm.evo_norm_b0(X4, C6, C6, C6, eps=float("nan")), ValueError,
     "eps must not be NaN"),
    ("evo-bwd-dy-shape", lambda: refnorm.evo_norm_b0_backward(np.ones((2, 6)), X4, C6, C6, C6), ValueError,
     "dy must have the shape of the forward output"),
    ("evo-bwd-eval-no-running-var", lambda: refnorm.evo_norm_b0_backward(np.ones(X4.shape), X4, C6, C6, C6,
                                                                         training=False), ValueError,
     "running_var is required"),
    ("evo-jvp-key", lambda: refnorm.evo_norm_b0_jvp({"eps": C6}, X4, C6, C6, C6), ValueError,
     "not a differentiable argument"),
    ("evo-jvp-v-shape", lambda: refnorm.evo_norm_b0_jvp({"v": np.ones(2)}, X4, C6, C6, C6), ValueError,
     "must have the shape of v"),
    ("evo-running-none", lambda: refnorm.evo_norm_b0_running_stats(X4, None), TypeError, "running_var is required"),
    ("evo-running-one-value", lambda: refnorm.evo_norm_b0_running_stats(np.ones((1, 6, 1, 1)), C6), ValueError,
     "more than 1 value per channel"),
    ("evo-running-momentum-str", lambda: refnorm.evo_norm_b0_running_stats(X4, C6, "0.1"), TypeError,
     "momentum must be a real number"),
]

KERNELS = [(evo_mod, ("_sums",))]


def threads(rng):
    x = 0.3 + rng.standard_normal((4, 16, 12, 12))
    w, b = random_affine(rng, (16,))
    v = 0.8 * rng.standard_normal(16)
    return [dict(x=x, weight=w, bias=b, v=v), dict(x=x, weight=w, bias=b, v=v, running_var=0.5 + rng.random(16),
                                                   training=False)]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py) and a PyTorch transcription of timm's EvoNorm2dB0 "
                      "(tests/ops/test_evo_norm_b0.py)")
