"""gn_plus's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.gn_plus as gp_mod

from ..._util import noncentred, random_affine
from . import C6, X4, NoExactOracle


def battery(rng):
    out = []
    # every GN set has >= 3 elements: with 2, GN's output is +-s/(sqrt2 (s + eps))
    # whatever x is, and BN0 of it (gn_first) is ill-conditioned (tests/ops/test_gn_plus.py)
    geoms = [((3, 6, 5), 3, np.array([1.0])), ((4, 4, 2, 3), 2, np.array(-0.4)), ((3, 6), 2, np.array([0.3])),
             ((5, 3, 1, 3), 1, np.array([2.0]))]
    for i, (shape, G, mix) in enumerate(geoms):
        for variant in ("gn_first", "bn_first", "parallel"):
            for bs in ("position", "channel"):
                if i >= 2 and (variant, bs) not in (("gn_first", "position"), ("parallel", "channel")):
                    continue
                w, b = random_affine(rng, (shape[1],))
                kw = dict(x=noncentred(rng, shape), num_groups=G, weight=w, bias=b, mix=mix.copy(), eps=1e-5,
                          variant=variant, batch_stats=bs)
                out.append((f"{shape}-G{G}-{variant}-{bs}", kw))
    return out


def gradient_scale(spec, kw, dy, name):
    """dx ~ max|dy| max|w| / min(std) over the sets of x and of both branches;
    dweight ~ sum|dy| max(|a|, |b|); dbias = sum|dy|; dmix ~ lam(1-lam) sum|w dy|(|a| + |b|)."""
    from refnorm.reference.gn_plus import batch_branch, group_branch

    x = np.asarray(kw["x"], dtype=np.float64)
    G, eps, bs, variant = kw["num_groups"], kw["eps"], kw["batch_stats"], kw["variant"]
    if variant == "gn_first":
        a = group_branch(x, G, eps)
        b = batch_branch(a, eps, bs)
    elif variant == "bn_first":
        b = batch_branch(x, eps, bs)
        a = group_branch(b, G, eps)
    else:
        a, b = group_branch(x, G, eps), batch_branch(x, eps, bs)
    N, C = x.shape[:2]
    stds = []
    for t in (x, a, b):
        stds.append(np.std(t.reshape(N, G, -1), axis=2, ddof=1))
        tt = t.reshape(N, C, -1)
        stds.append(np.std(tt, axis=0, ddof=1) if bs == "position"
                    else np.std(np.moveaxis(tt, 1, 0).reshape(C, -1), axis=1, ddof=1))
    inv = 1.0 / (min(float(np.min(s)) for s in stds) + eps)
    w = np.asarray(kw["weight"], dtype=np.float64)
    lam = 1.0 / (1.0 + np.exp(-float(np.reshape(kw["mix"], ()))))
    wb = w.reshape((1, C) + (1,) * (x.ndim - 2))
    return {"x": float(np.max(np.abs(dy))) * max(1.0, float(np.max(np.abs(w)))) * inv,
            "weight": float(np.sum(np.abs(dy)) * max(np.max(np.abs(a)), np.max(np.abs(b)))),
            "bias": float(np.sum(np.abs(dy))),
            "mix": float(lam * (1 - lam) * np.sum(np.abs(wb * dy) * (np.abs(a) + np.abs(b))))}[name]


X = np.random.default_rng(0).standard_normal((2, 6, 3))
M1 = np.array([1.0])


def _fwd(**over):
    kw = dict(x=X, num_groups=3, weight=C6, bias=C6, mix=M1)
    kw.update(over)
    return lambda: refnorm.gn_plus(**kw)


ERRORS = [
    ("n1", _fwd(x=np.ones((1, 6, 3))), ValueError, "N >= 2"),
    ("n0", _fwd(x=np.ones((0, 6, 3))), ValueError, "N >= 2"),
    ("group-of-one", _fwd(x=np.ones((2, 6)), num_groups=6), ValueError, "at least 2 elements per group"),
    ("empty-spatial", _fwd(x=np.ones((2, 6, 0))), ValueError, "at least 2 elements per group"),
    ("groups-not-dividing", _fwd(num_groups=4), ValueError, "num_groups must divide"),
    ("groups-zero", _fwd(num_groups=0), ValueError, "num_groups must be >= 1"),
    ("groups-float", _fwd(num_groups=3.0), TypeError, "num_groups must be an int"),
    ("x-1d", _fwd(x=np.ones(6)), ValueError, "x must have at least 2 dimensions"),
    ("x-int", _fwd(x=np.ones((2, 6, 3), int)), TypeError, "x must have a real floating dtype"),
    ("weight-shape", _fwd(weight=np.ones(3)), ValueError, "weight must have shape (6,)"),
    ("weight-none", _fwd(weight=None), TypeError, "weight must be an array"),
    ("bias-shape", _fwd(bias=np.ones((6, 1))), ValueError, "bias must have shape (6,)"),
    ("mix-shape", _fwd(mix=np.ones(2)), ValueError, "mix must have shape (1,) or ()"),
    ("mix-2d", _fwd(mix=np.ones((1, 1))), ValueError, "mix must have shape (1,) or ()"),
    ("mix-int", _fwd(mix=np.array([1])), TypeError, "mix must have a real floating dtype"),
    ("mix-none", _fwd(mix=None), TypeError, "mix must be an array"),
    ("eps-str", _fwd(eps="1e-5"), TypeError, "eps must be a real number"),
    ("eps-negative", _fwd(eps=-1e-5), ValueError, "eps must be >= 0"),
    ("eps-nan", _fwd(eps=float("nan")), ValueError, "eps must not be NaN"),
    ("variant-unknown", _fwd(variant="sequential"), ValueError, "variant must be one of"),
    ("variant-type", _fwd(variant=1), TypeError, "variant must be a str"),
    ("batch-stats-unknown", _fwd(batch_stats="sample"), ValueError, "batch_stats must be one of"),
    ("batch-stats-none", _fwd(batch_stats=None), TypeError, "batch_stats must be a str"),
    ("dy-shape", lambda: refnorm.gn_plus_backward(np.ones((2, 6)), X, 3, C6, C6, M1), ValueError,
     "dy must have the shape of the forward output (2, 6, 3)"),
    ("dy-int", lambda: refnorm.gn_plus_backward(np.ones(X.shape, int), X, 3, C6, C6, M1), TypeError,
     "dy must have a real floating dtype"),
    ("bwd-n1", lambda: refnorm.gn_plus_backward(np.ones((1, 6, 3)), np.ones((1, 6, 3)), 3, C6, C6, M1), ValueError,
     "N >= 2"),
    ("gnp-batch-of-one", lambda: refnorm.gn_plus(X4[:1], 2, C6, C6, np.ones(1)), ValueError,
     "needs a batch of N >= 2"),
    ("gnp-groups", lambda: refnorm.gn_plus(X4, 4, C6, C6, np.ones(1)), ValueError, "num_groups must divide"),
    ("gnp-variant", lambda: refnorm.gn_plus(X4, 2, C6, C6, np.ones(1), variant="bn"), ValueError,
     "variant must be one of"),
    ("gnp-batch-stats", lambda: refnorm.gn_plus(X4, 2, C6, C6, np.ones(1), batch_stats=0), TypeError,
     "batch_stats must be a str"),
    ("gnp-weight-none", lambda: refnorm.gn_plus(X4, 2, None, C6, np.ones(1)), TypeError, "weight must be an array"),
    ("gnp-bwd-mix-shape", lambda: refnorm.gn_plus_backward(np.ones(X4.shape), X4, 2, C6, C6, np.ones(2)),
     ValueError, "mix must have shape (1,) or ()"),
]

KERNELS = [(gp_mod, ("_std_eps", "_normalize", "_norm_backward", "_mix_forward", "_mix_backward"))]


def threads(rng):
    """Every variant and batch-statistics mode (one reduction set or channel per thread)."""
    x = -2.3 + 0.5 * rng.standard_normal((8, 32, 7, 9))
    w, b = rng.standard_normal(32), rng.standard_normal(32)
    return [dict(x=x, num_groups=8, weight=w, bias=b, mix=np.array([1.0]), variant=v, batch_stats=s)
            for v in ("gn_first", "bn_first", "parallel") for s in ("position", "channel")]


EXACT = NoExactOracle("no exact oracle: checked against the autograd reference and finite differences "
                      "(tests/test_registry.py), a PyTorch transcription and a 50-digit mpmath forward "
                      "(tests/ops/test_gn_plus.py)")
