"""ada_layer_norm's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and the
other public functions of the op)."""

from __future__ import annotations

import numpy as np

import refnorm

from ..._util import noncentred, standard_gradient_scale
from . import NoExactOracle


def _modulation(rng, shape, loc=0.0, spread=0.3):
    """A per-sample (scale, shift) pair of ``shape = (N, *normalized_shape)``."""
    return loc + spread * rng.standard_normal(shape), 0.5 * rng.standard_normal(shape)


def battery(rng):
    """mid empty, of one and of two dimensions; normalized_shape of one and two
    dimensions; odd sizes; a gain 1 + scale near 0 and a large one; DiT's and
    LayerNorm's eps."""
    out = []
    for shape, ns in [((3, 7), (7,)), ((2, 5, 6), (6,)), ((2, 3, 2, 5), (5,)), ((2, 3, 4), (3, 4)),
                      ((2, 2, 3, 2, 3), (2, 3)), ((3, 2, 1), (1,))]:
        s, t = _modulation(rng, (shape[0],) + ns)
        out.append((f"{shape}-{ns}", dict(x=noncentred(rng, shape, loc=0.4, scale=1.3), normalized_shape=ns,
                                          scale=s, shift=t, eps=1e-6)))
    for label, loc, spread in (("gain~0", -1.0, 0.02), ("gain-large", 0.0, 30.0)):
        s, t = _modulation(rng, (2, 5), loc, spread)
        out.append((label, dict(x=noncentred(rng, (2, 3, 5), loc=0.4, scale=1.3), normalized_shape=5, scale=s,
                                shift=t, eps=1e-6)))
    s, t = _modulation(rng, (2, 6))
    out.append(("eps1e-5", dict(x=noncentred(rng, (2, 4, 6)), normalized_shape=[6], scale=s, shift=t, eps=1e-5)))
    return out


def gradient_scale(spec, kw, dy, name):
    """The standard scale (tests/_util.standard_gradient_scale), times the largest gain
    ``|1 + scale|`` for ``dx`` (the gain is dx's weight)."""
    base = standard_gradient_scale(spec, kw, dy)
    gain = float(np.max(np.abs(1.0 + np.asarray(kw["scale"], dtype=np.float64))))
    return base * max(1.0, gain) if name == "x" else base


X = np.random.default_rng(3).standard_normal((2, 3, 4))
P = np.zeros((2, 4))
ERRORS = [
    ("adaln-scale-unsqueezed", lambda: refnorm.ada_layer_norm(X, 4, np.zeros((2, 1, 4)), P), ValueError,
     "scale must have shape (2, 4)"),
    ("adaln-shift-batch", lambda: refnorm.ada_layer_norm(X, 4, P, np.zeros((1, 4))), ValueError,
     "shift must have shape (2, 4)"),
    ("adaln-scale-per-row", lambda: refnorm.ada_layer_norm(X, 4, np.zeros((2, 3, 4)), P), ValueError,
     "scale must have shape (2, 4)"),
    ("adaln-scale-none", lambda: refnorm.ada_layer_norm(X, 4, None, P), TypeError, "scale is required"),
    ("adaln-shift-none", lambda: refnorm.ada_layer_norm(X, 4, P, None), TypeError, "shift is required"),
    ("adaln-scale-int", lambda: refnorm.ada_layer_norm(X, 4, np.zeros((2, 4), int), P), TypeError,
     "scale must have a real"),
    ("adaln-no-batch", lambda: refnorm.ada_layer_norm(X, (2, 3, 4), np.zeros((2, 3, 4)), np.zeros((2, 3, 4))),
     ValueError, "x must have a batch dimension"),
    ("adaln-x-1d", lambda: refnorm.ada_layer_norm(np.ones(4), 4, P, P), ValueError, "x must have at least 2"),
    ("adaln-x-int", lambda: refnorm.ada_layer_norm(np.ones((2, 4), int), 4, P, P), TypeError, "x must have a real"),
    ("adaln-shape-mismatch", lambda: refnorm.ada_layer_norm(X, (5,), P, P), ValueError,
     "trailing dimensions of x"),
    ("adaln-shape-empty", lambda: refnorm.ada_layer_norm(X, (), P, P), ValueError, "at least one dimension"),
    ("adaln-shape-type", lambda: refnorm.ada_layer_norm(X, "4", P, P), TypeError, "normalized_shape must be"),
    ("adaln-eps-str", lambda: refnorm.ada_layer_norm(X, 4, P, P, eps="1e-6"), TypeError,
     "eps must be a real number"),
    ("adaln-eps-nan", lambda: refnorm.ada_layer_norm(X, 4, P, P, eps=float("nan")), ValueError,
     "eps must not be NaN"),
    ("adaln-stats-scale-shape", lambda: refnorm.ada_layer_norm_stats(X, 4, np.zeros(4), P), ValueError,
     "scale must have shape (2, 4)"),
    ("adaln-bwd-dy-shape", lambda: refnorm.ada_layer_norm_backward(np.ones((2, 4)), X, 4, P, P), ValueError,
     "dy must have the shape of the forward output"),
    ("adaln-bwd-shift-shape", lambda: refnorm.ada_layer_norm_backward(np.ones(X.shape), X, 4, P, np.zeros(4)),
     ValueError, "shift must have shape (2, 4)"),
    ("adaln-jvp-key", lambda: refnorm.ada_layer_norm_jvp({"weight": P}, X, 4, P, P), ValueError,
     "not a differentiable argument"),
    ("adaln-jvp-scale-shape", lambda: refnorm.ada_layer_norm_jvp({"scale": np.zeros((2, 1, 4))}, X, 4, P, P),
     ValueError, "must have the shape of scale"),
    ("adaln-2nd-dy-shape", lambda: refnorm.ada_layer_norm_double_backward({}, np.ones(3), X, 4, P, P), ValueError,
     "dy must have the shape of the forward output"),
    ("adaln-2nd-x-shape", lambda: refnorm.ada_layer_norm_double_backward({"x": np.ones(3)}, np.ones(X.shape), X, 4,
                                                                         P, P), ValueError,
     "must have the shape of x"),
]

KERNELS = []


def threads(rng):
    x = 0.7 + 1.3 * rng.standard_normal((4, 48, 384))
    s, t = _modulation(rng, (4, 384))
    return [dict(x=x, normalized_shape=384, scale=s, shift=t), dict(x=x[:, 0], normalized_shape=384, scale=s,
                                                                        shift=t)]


EXACT = NoExactOracle("no exact oracle (a research layer): checked against "
                      "the autograd reference and finite differences (tests/test_registry.py) and a PyTorch "
                      "transcription of DiT's modulate(norm(x), shift, scale) (tests/ops/test_ada_layer_norm.py)")
