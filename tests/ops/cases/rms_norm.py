"""rms_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py)."""

from __future__ import annotations

import numpy as np

import refnorm
from refnorm.ops.rms_norm import default_eps

from ..._util import noncentred, random_affine
from . import X2, ExactOracle
from .layer_norm import draw_trailing, trailing_layout, trailing_view


def battery(rng):
    out = []
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6)), ((2, 3, 4, 5), (3, 4, 5)), ((5,), (5,)),
                      ((3, 1), (1,))]:
        for affine in (True, False):
            w, _ = random_affine(rng, ns)
            for eps in (1e-6, None):
                kw = dict(x=noncentred(rng, shape), normalized_shape=ns, weight=w if affine else None, eps=eps)
                out.append((f"{shape}-{ns}-affine{affine}-eps{eps}", kw))
    # zero-centred weights (Gemma: offset=1.0), drawn after the cases above, which keep their values
    for shape, ns in [((4, 7), (7,)), ((3, 5, 6), (5, 6))]:
        for affine, offset in ((True, 1.0), (True, -0.5), (False, 1.0)):
            w, _ = random_affine(rng, ns)
            kw = dict(x=noncentred(rng, shape), normalized_shape=ns, weight=0.1 * (w - 1.0) if affine else None,
                      eps=1e-6, offset=offset)
            out.append((f"{shape}-{ns}-affine{affine}-offset{offset}", kw))
    return out


def reference_kwargs(kw):
    """The reference receives a resolved eps (eps=None is dtype-dependent)."""
    kw = dict(kw)
    if kw.get("eps") is None:
        kw["eps"] = default_eps(np.asarray(kw["x"]).dtype)
    return kw


ERRORS = [
    ("rms-weight-shape", lambda: refnorm.rms_norm(X2, 5, np.ones((1, 5))), ValueError, "weight must have shape"),
    ("rms-eps-str", lambda: refnorm.rms_norm(X2, 5, eps="1e-6"), TypeError, "eps must be a real number"),
    ("rms-offset-str", lambda: refnorm.rms_norm(X2, 5, np.ones(5), offset="1"), TypeError,
     "offset must be a real number"),
    ("rms-bwd-offset-nan", lambda: refnorm.rms_norm_backward(np.ones((4, 5)), X2, 5, np.ones(5), offset=float("nan")),
     ValueError, "offset must not be NaN"),
    ("rms-bwd-dy-shape", lambda: refnorm.rms_norm_backward(np.ones((4, 4)), X2, 5), ValueError,
     "dy must have the shape of the forward output (4, 5)"),
    # the <op>_stats variant validates exactly as the forward
    ("rms-stats-eps", lambda: refnorm.rms_norm_stats(X2, 5, eps="1e-6"), TypeError, "eps must be a real number"),
]

KERNELS = []


def threads(rng):
    x = -2.3 + 0.5 * rng.standard_normal((96, 1000))
    return [dict(x=x, normalized_shape=1000, weight=rng.standard_normal(1000))]


EXACT = ExactOracle(
    variants=[((3, 10), {"normalized_shape": (10,)}), ((2, 3, 4, 5), {"normalized_shape": (3, 4, 5)})],
    exact_tier=((3, 16), {"normalized_shape": (16,)}),
    single_element=((4, 1), {"normalized_shape": (1,)}),
    layout=trailing_layout, affine="trailing", has_bias=False, complete=lambda kw, rng: None,
    mode=lambda kw: "rms", view=trailing_view, draw=draw_trailing,
)
