"""batch_layer_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.batch_layer_norm as bln_mod

from ..._util import noncentred, random_affine
from . import X2, NoExactOracle


def battery(rng):
    out = []
    for shape, fa in [((5, 4), -1), ((3, 4, 5), -1), ((3, 4, 2, 3), 1)]:
        for bs in ("position", "channel"):
            d = shape[fa]
            x = noncentred(rng, shape)
            w, b = random_affine(rng, (d,))
            for batch_size in (None, 7):
                kw = dict(x=x, weight=w, bias=b, batch_size=batch_size, eps=1e-3, feature_axis=fa, batch_stats=bs)
                out.append((f"{shape}-fa{fa}-{bs}-B{batch_size}-train", kw))
            # inference: the default flags, all moving, and a mixed choice (a moving
            # mean with a current variance is taken about the current mean)
            # plausible moving statistics: those of a nearby batch (plain NumPy: no kernel at import)
            xs = x + 0.2 * rng.standard_normal(shape)
            f_ax = fa % len(shape)
            b_ax = (0,) if bs == "position" else tuple(a for a in range(len(shape)) if a != f_ax)
            mv = {"batch_mean": xs.mean(axis=b_ax, keepdims=True) + 0.05,
                  "batch_var": xs.var(axis=b_ax, keepdims=True) + 0.1,
                  "feature_mean": xs.mean(axis=f_ax, keepdims=True) + 0.05,
                  "feature_var": xs.var(axis=f_ax, keepdims=True) + 0.1}
            for flags in ((True, True, False, False), (True, True, True, True), (True, False, False, True)):
                kw = dict(x=x, weight=w, bias=b, batch_size=8, eps=1e-3, training=False, moving_stats=mv,
                          flags=flags, feature_axis=fa, batch_stats=bs)
                out.append((f"{shape}-fa{fa}-{bs}-infer{''.join('TF'[not f] for f in flags)}", kw))
    x = noncentred(rng, (4, 6))
    out.append(("no-affine-no-sqrt-d", dict(x=x, weight=None, bias=None, batch_size=None, eps=1e-3,
                                             sqrt_d_scale=False)))
    w, b = random_affine(rng, (6,))
    out.append(("no-offset-eps1e-2", dict(x=x, weight=w, bias=None, batch_size=4, eps=1e-2, weight_offset=0.0)))
    out.append(("batch-of-one", dict(x=noncentred(rng, (1, 5)), weight=random_affine(rng, (5,))[0],
                                     bias=random_affine(rng, (5,))[1], batch_size=1, eps=1e-3)))
    return out


def running_stats_args(kw):
    """The moving-statistics update, with one batch's statistics as the sums."""
    sums = refnorm.batch_layer_norm_batch_stats(kw["x"], feature_axis=kw.get("feature_axis", -1),
                                                batch_stats=kw.get("batch_stats", "position"))
    return sums, 1, 2


def gradient_scale(spec, kw, dy, name):
    """dx: for each branch, ``|w_branch|/sqrt(d) max|gamma dy| rstd (2 + max|xhat|^2)``;
    dweight: ``max_j sum |dy| (|w_F xhat_F| + |w_B xhat_B|)/sqrt(d)``; dbias: ``max_j sum|dy|``."""
    x = np.asarray(kw["x"], dtype=np.float64)
    fa = kw.get("feature_axis", -1) % x.ndim
    d = x.shape[fa]
    B = x.shape[0] if kw.get("batch_size") is None else kw["batch_size"]
    off = kw.get("weight_offset", 1e-4)
    w_F, w_B = 1.0 / B - off, 1.0 - (1.0 / B + off)
    sd = np.sqrt(d) if kw.get("sqrt_d_scale", True) else 1.0
    _, st = spec.forward_with_stats(**kw)
    xh_F = (x - st["feature_mean"]) * st["feature_rstd"]
    xh_B = (x - st["batch_mean"]) * st["batch_rstd"]
    axes = tuple(a for a in range(x.ndim) if a != fa)
    if name == "bias":
        return float(np.max(np.abs(dy).sum(axis=axes)))
    if name == "weight":
        return float(np.max((np.abs(dy) * (abs(w_F) * np.abs(xh_F) + abs(w_B) * np.abs(xh_B))).sum(axis=axes))) / sd
    pshape = tuple(d if a == fa else 1 for a in range(x.ndim))
    gam = np.ones(pshape) if kw.get("weight") is None else np.reshape(kw["weight"], pshape)
    gmax = float(np.max(np.abs(gam * dy))) / sd
    return gmax * sum(abs(wb) * float(np.max(r)) * (2.0 + float(np.max(np.abs(xh))) ** 2)
                      for wb, r, xh in ((w_F, st["feature_rstd"], xh_F), (w_B, st["batch_rstd"], xh_B)))


X = np.random.default_rng(0).standard_normal((4, 3, 5))
C5 = np.ones(5)
MV = refnorm.batch_layer_norm_batch_stats(X)
SUMS = dict(MV)
BS = {"batch_mean": np.zeros((1, 5)), "batch_var": np.ones((1, 5)), "feature_mean": np.zeros((4, 1)),
      "feature_var": np.ones((4, 1))}
ERRORS = [
    ("x-1d", lambda: refnorm.batch_layer_norm(np.ones(5), C5, C5), ValueError, "x must have at least 2 dimensions"),
    ("x-int", lambda: refnorm.batch_layer_norm(np.ones((2, 5), int), C5, C5), TypeError, "x must have a real"),
    ("weight-shape", lambda: refnorm.batch_layer_norm(X, np.ones(3), C5), ValueError, "weight must have shape (5,)"),
    ("bias-shape", lambda: refnorm.batch_layer_norm(X, C5, np.ones(4)), ValueError, "bias must have shape (5,)"),
    ("weight-shape-nchw", lambda: refnorm.batch_layer_norm(X, C5, C5, feature_axis=1), ValueError,
     "weight must have shape (3,)"),
    ("feature-axis-0", lambda: refnorm.batch_layer_norm(X, np.ones(4), None, feature_axis=0), ValueError,
     "must not be the batch axis"),
    ("feature-axis-range", lambda: refnorm.batch_layer_norm(X, C5, C5, feature_axis=3),
     ValueError, "feature_axis must be in"),
    ("feature-axis-type", lambda: refnorm.batch_layer_norm(X, C5, C5, feature_axis=1.0), TypeError,
     "feature_axis must be an int"),
    ("batch-stats", lambda: refnorm.batch_layer_norm(X, C5, C5, batch_stats="per-channel"), ValueError,
     "batch_stats must be 'position' or 'channel'"),
    ("batch-stats-array", lambda: refnorm.batch_layer_norm(X, C5, C5, batch_stats=np.ones(2)), TypeError,
     "batch_stats must be 'position' or 'channel'"),
    ("batch-size-0", lambda: refnorm.batch_layer_norm(X, C5, C5, 0), ValueError, "batch_size must be >= 1"),
    ("batch-size-float", lambda: refnorm.batch_layer_norm(X, C5, C5, 4.0), TypeError, "batch_size must be an int"),
    ("eps-str", lambda: refnorm.batch_layer_norm(X, C5, C5, eps="1e-3"), TypeError, "eps must be a real number"),
    ("training-int", lambda: refnorm.batch_layer_norm(X, C5, C5, training=0), TypeError, "training must be a bool"),
    ("flags-len", lambda: refnorm.batch_layer_norm(X, C5, C5, flags=(True, True)),
     TypeError, "flags must be a tuple of 4"),
    ("flags-int", lambda: refnorm.batch_layer_norm(X, C5, C5, flags=(1, 1, 0, 0)),
     TypeError, "flags[0] (batch_moving_mean)"),
    ("offset-nan", lambda: refnorm.batch_layer_norm(X, C5, C5, weight_offset=float("nan")), ValueError,
     "weight_offset must not be NaN"),
    ("sqrt-d-int", lambda: refnorm.batch_layer_norm(X, C5, C5, sqrt_d_scale=1),
     TypeError, "sqrt_d_scale must be a bool"),
    ("eval-no-moving", lambda: refnorm.batch_layer_norm(X, C5, C5, training=False), ValueError,
     "moving_stats is required when training=False and flags[0] (batch_moving_mean)"),
    ("eval-missing-key", lambda: refnorm.batch_layer_norm(X, C5, C5, training=False,
                                                          moving_stats={"batch_mean": MV["batch_mean"]}),
     ValueError, "moving_stats['batch_var'] is required"),
    ("moving-unknown-key", lambda: refnorm.batch_layer_norm(X, C5, C5, training=False, moving_stats={**MV, "Bmean": 1}),
     ValueError, "unknown keys ['Bmean']"),
    ("moving-shape", lambda: refnorm.batch_layer_norm(X, C5, C5, training=False,
                                                      moving_stats={**MV, "feature_var": np.ones((2, 3, 1))}),
     ValueError, "moving_stats['feature_var'] must have shape (4, 3, 1)"),
    ("moving-type", lambda: refnorm.batch_layer_norm(X, C5, C5, training=False, moving_stats=[1, 2]), TypeError,
     "moving_stats must be a dict"),
    ("dy-shape", lambda: refnorm.batch_layer_norm_backward(np.ones((4, 3)), X, C5, C5), ValueError,
     "dy must have the shape of the forward output (4, 3, 5)"),
    ("dy-int", lambda: refnorm.batch_layer_norm_backward(np.ones(X.shape, int), X, C5, C5),
     TypeError, "dy must have a real"),
    ("bwd-eval-no-moving", lambda: refnorm.batch_layer_norm_backward(np.ones(X.shape), X, C5, C5, training=False),
     ValueError, "moving_stats is required"),
    ("stats-x-1d", lambda: refnorm.batch_layer_norm_batch_stats(np.ones(3)), ValueError, "at least 2 dimensions"),
    ("stats-mode", lambda: refnorm.batch_layer_norm_batch_stats(X, batch_stats="x"), ValueError, "batch_stats must be"),
    ("ms-batch-size-1", lambda: refnorm.batch_layer_norm_moving_stats(SUMS, 3, 1),
     ValueError, "batch_size must be >= 2"),
    ("ms-steps-0", lambda: refnorm.batch_layer_norm_moving_stats(SUMS, 0, 4), ValueError, "steps must be >= 1"),
    ("ms-missing", lambda: refnorm.batch_layer_norm_moving_stats({"batch_mean": 1.0}, 3, 4), ValueError, "missing"),
    ("ms-type", lambda: refnorm.batch_layer_norm_moving_stats([1.0], 3, 4), TypeError, "sums must be a dict"),
    ("ms-int", lambda: refnorm.batch_layer_norm_moving_stats({**SUMS, "batch_var": np.ones(2, int)}, 3, 4), TypeError,
     "sums['batch_var'] must have a real"),
    ("ms-fvc", lambda: refnorm.batch_layer_norm_moving_stats(SUMS, 3, 4, feature_var_correction=None), TypeError,
     "feature_var_correction must be a bool"),
    ("bln-feature-axis-0", lambda: refnorm.batch_layer_norm(X2, None, None, feature_axis=0), ValueError,
     "feature_axis must not be the batch axis 0"),
    ("bln-infer-no-moving", lambda: refnorm.batch_layer_norm(X2, None, None, training=False), ValueError,
     "moving_stats is required"),
    ("bln-moving-shape", lambda: refnorm.batch_layer_norm(X2, None, None, training=False,
                                                          moving_stats={**BS, "batch_mean": np.zeros(5)}),
     ValueError, "moving_stats['batch_mean'] must have shape (1, 5)"),
    ("bln-flags", lambda: refnorm.batch_layer_norm(X2, None, None, flags=(True, True)), TypeError,
     "flags must be a tuple of 4 bools"),
    ("bln-weight-shape", lambda: refnorm.batch_layer_norm(X2, np.ones(4), None), ValueError,
     "weight must have shape (5,)"),
    ("bln-bwd-dy", lambda: refnorm.batch_layer_norm_backward(np.ones((5, 4)), X2, None, None), ValueError,
     "dy must have the shape"),
    ("bln-stats-batch-size", lambda: refnorm.batch_layer_norm_stats(X2, None, None, batch_size=0), ValueError,
     "batch_size must be >= 1"),
    ("bln-batch-stats-mode", lambda: refnorm.batch_layer_norm_batch_stats(X2, batch_stats="instance"), ValueError,
     "batch_stats must be 'position' or 'channel'"),
    ("bln-moving-steps", lambda: refnorm.batch_layer_norm_moving_stats(BS, 0, 8), ValueError,
     "steps must be >= 1"),
    ("bln-moving-batch-size", lambda: refnorm.batch_layer_norm_moving_stats(BS, 3, 1), ValueError,
     "batch_size must be >= 2"),
    ("bln-moving-keys", lambda: refnorm.batch_layer_norm_moving_stats({"batch_mean": 0.0}, 3, 8), ValueError,
     "sums must have exactly the keys"),
]

KERNELS = [(bln_mod, ("_forward", "_branch_dx", "_affine"))]


def threads(rng):
    xb = -2.3 + 0.5 * rng.standard_normal((96, 10, 100))
    wb = rng.standard_normal(100)
    mv = {k: v + 0.1 for k, v in refnorm.batch_layer_norm_batch_stats(xb + 0.1).items()}
    return [dict(x=xb, weight=wb, bias=wb, batch_size=128, **kw)
            for kw in (dict(), dict(training=False, moving_stats=mv, flags=(True, False, True, False)))]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py), a NumPy transcription of the Keras code path and its moving-"
                      "statistics callback (tests/ops/test_batch_layer_norm.py)")
