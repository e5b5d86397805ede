"""weight_standardization's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.weight_standardization as ws_mod

from ..._util import noncentred, random_affine
from . import NoExactOracle


def battery(rng):
    out = []
    options = [dict(style="deepmind", eps=1e-4), dict(style="timm", eps=1e-6), dict(style="qiao", eps=1e-5),
               dict(style="timm", eps=1e-5), dict(style="deepmind", eps=None)]
    for shape in [(5, 3, 3, 2), (4, 7), (3, 2, 1, 1)]:
        for k, opt in enumerate(options):
            for gain in (True, False):
                if k >= 3 and (gain or shape != (4, 7)):
                    continue
                kw = dict(weight=noncentred(rng, shape, loc=-0.3, scale=0.5),
                          gain=random_affine(rng, (shape[0],))[0] if gain else None, **opt)
                out.append((f"{shape}-{opt['style']}-eps{opt['eps']}-gain{gain}", kw))
    # the keyword-only overrides: BiT StdConv2d (no fan-in scaling), the WS
    # paper's biased form, DeepMind's floor with the unbiased estimator
    for over in (dict(style="timm", fan_in_scaling=False), dict(style="qiao", estimator="biased"),
                 dict(style="deepmind", estimator="unbiased", eps_mode="variance")):
        kw = dict(weight=noncentred(rng, (4, 3, 3), loc=0.2, scale=0.4), gain=random_affine(rng, (4,))[0],
                  eps=None, **over)
        out.append((f"override-{'-'.join(f'{k}={v}' for k, v in over.items())}", kw))
    return out


def gradient_scale(spec, kw, dy, name):
    """Per output channel, ``dW = r (gd - mean gd) + c3 wc`` with ``gd = gain dy``:
    ``r max|gd| (2 + n/(n - delta) max(wc^2)/v)`` (every eps mode has
    ``|c3 wc| <= r max|gd| n/(n - delta) wc^2/v``); ``dgain = r sum dy wc``: ``r sum|dy wc|``."""
    from refnorm.reference.weight_standardization import resolve_options

    w = np.asarray(kw["weight"], dtype=np.float64)
    C = w.shape[0]
    w2 = w.reshape(C, -1)
    n = w2.shape[1]
    _, st = spec.forward_with_stats(**kw)
    r = st["scale"]
    est = resolve_options(kw.get("style", "deepmind"), kw.get("estimator"), kw.get("eps_mode"), kw.get("eps"),
                          kw.get("fan_in_scaling"))[0]
    delta = 1 if est == "unbiased" else 0
    wc = w2 - w2.mean(axis=1, keepdims=True)
    v = (wc * wc).sum(axis=1) / (n - delta)
    d2 = np.asarray(dy, dtype=np.float64).reshape(C, n)
    g = np.ones(C) if kw.get("gain") is None else np.asarray(kw["gain"], dtype=np.float64)
    if name == "gain":
        return float(np.max(r * np.abs(d2 * wc).sum(axis=1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t3 = np.where(v > 0, n / (n - delta) * np.max(wc * wc, axis=1) / v, 0.0)
    return float(np.max(r * np.abs(g) * np.max(np.abs(d2), axis=1) * (2.0 + t3)))


W4 = np.random.default_rng(3).standard_normal((4, 3, 3, 3))
ERRORS = [
    ("weight-1d", lambda: refnorm.weight_standardization(np.ones(4)),
     ValueError, "weight must have at least 2 dimensions"),
    ("weight-int", lambda: refnorm.weight_standardization(np.ones((2, 3), int)), TypeError, "weight must have a real"),
    ("weight-none", lambda: refnorm.weight_standardization(None), TypeError, "weight must be an array"),
    ("weight-empty-fan", lambda: refnorm.weight_standardization(np.ones((2, 0))), ValueError, "at least one element"),
    ("unbiased-fan1", lambda: refnorm.weight_standardization(np.ones((3, 1, 1, 1)), style="qiao"), ValueError,
     "fan_in = prod(weight.shape[1:]) >= 2"),
    ("gain-shape", lambda: refnorm.weight_standardization(W4, np.ones(3)), ValueError, "gain must have shape (4,)"),
    ("gain-int", lambda: refnorm.weight_standardization(W4, np.ones(4, int)), TypeError, "gain must have a real"),
    ("style", lambda: refnorm.weight_standardization(W4, style="keras"), ValueError, "style must be one of"),
    ("style-type", lambda: refnorm.weight_standardization(W4, style=1), TypeError, "style must be a str"),
    ("estimator", lambda: refnorm.weight_standardization(W4, estimator="ddof1"), ValueError, "estimator must be"),
    ("eps-mode", lambda: refnorm.weight_standardization(W4, eps_mode="inside"), ValueError, "eps_mode must be"),
    ("estimator-array", lambda: refnorm.weight_standardization(W4, estimator=np.ones(2)),
     TypeError, "estimator must be"),
    ("eps-mode-dict", lambda: refnorm.weight_standardization(W4, eps_mode={}), TypeError, "eps_mode must be"),
    ("fan-in-type", lambda: refnorm.weight_standardization(W4, fan_in_scaling=1),
     TypeError, "fan_in_scaling must be a bool"),
    ("eps-negative", lambda: refnorm.weight_standardization(W4, eps=-1e-4), ValueError, "eps must be >= 0"),
    ("eps-str", lambda: refnorm.weight_standardization(W4, eps="1e-4"), TypeError, "eps must be a real number"),
    ("eps-nan", lambda: refnorm.weight_standardization(W4, eps=float("nan")), ValueError, "eps must not be NaN"),
    ("dy-shape", lambda: refnorm.weight_standardization_backward(np.ones((4, 3)), W4), ValueError,
     "dy must have the shape of the forward output"),
    ("dy-int", lambda: refnorm.weight_standardization_backward(np.ones(W4.shape, int), W4),
     TypeError, "dy must have a real"),
    ("bwd-style", lambda: refnorm.weight_standardization_backward(np.ones(W4.shape), W4, style="x"), ValueError,
     "style must be one of"),
    ("ws-1d", lambda: refnorm.weight_standardization(np.ones(5)), ValueError,
     "weight must have at least 2 dimensions"),
    ("ws-style", lambda: refnorm.weight_standardization(W4, style="bit"), ValueError, "style must be one of"),
    ("ws-eps-negative", lambda: refnorm.weight_standardization(W4, eps=-1e-4), ValueError, "eps must be >= 0"),
    ("ws-unbiased-fan-in-1", lambda: refnorm.weight_standardization(np.ones((3, 1)), style="qiao"), ValueError,
     "needs fan_in"),
    ("ws-bwd-gain-shape", lambda: refnorm.weight_standardization_backward(np.ones(W4.shape), W4, np.ones(3)),
     ValueError, "gain must have shape (4,)"),
    ("ws-stats-estimator", lambda: refnorm.weight_standardization_stats(W4, estimator="welford"), ValueError,
     "estimator must be"),
]

KERNELS = [(ws_mod, ("_scale", "_backward"))]


def threads(rng):
    wt = -0.3 + 0.5 * rng.standard_normal((64, 32, 3, 3))
    g = np.abs(rng.standard_normal(64))
    return [dict(weight=wt, gain=g, style=style) for style in ("deepmind", "timm", "qiao")]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py) and PyTorch transcriptions of each style "
                      "(tests/ops/test_weight_standardization.py)")
