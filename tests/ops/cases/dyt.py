"""dyt's inputs for the cross-cutting tests (the protocol: tests/ops/cases/__init__.py).
ERRORS holds the full list of its bad inputs (the forward, backward and forward mode)."""

from __future__ import annotations

import numpy as np

import refnorm
import refnorm.ops.dyt as dyt_mod

from . import NoExactOracle


def battery(rng):
    """Every form of alpha (Python float, 0-d, (1,)), the affine present/absent, 1-d to 4-d x,
    values from the linear region of tanh to its saturation (|alpha x| up to ~8)."""
    out = []
    geoms = [((7,), 0.5), ((3, 5), np.array(0.8)), ((2, 3, 4), np.array([-1.2])), ((2, 3, 2, 3), 0.5),
             ((4, 1), np.array([2.0]))]
    for i, (shape, alpha) in enumerate(geoms):
        C = shape[-1]
        x = 2.5 * rng.standard_normal(shape) + 0.3
        w = 1.0 + 0.5 * rng.standard_normal(C)
        b = 0.3 * rng.standard_normal(C)
        a = alpha.copy() if isinstance(alpha, np.ndarray) else alpha
        out.append((f"{shape}-affine", dict(x=x, alpha=a, weight=w, bias=b)))
        if i in (1, 2):
            out.append((f"{shape}-weight-only", dict(x=x.copy(), alpha=a, weight=w.copy())))
            out.append((f"{shape}-no-affine", dict(x=x.copy(), alpha=a)))
        if i == 3:
            out.append((f"{shape}-bias-only", dict(x=x.copy(), alpha=a, bias=b.copy())))
    return out


def gradient_scale(spec, kw, dy, name):
    """dx ~ max|dy w alpha|; dalpha ~ sum|dy w x|; dweight, dbias ~ sum|dy| over the rows (|t| <= 1)."""
    x = np.asarray(kw["x"], dtype=np.float64)
    w = kw.get("weight")
    wa = np.ones(x.shape[-1]) if w is None else np.abs(np.asarray(w, dtype=np.float64))
    a = abs(float(np.reshape(kw["alpha"], ())))
    dy = np.abs(np.asarray(dy, dtype=np.float64))
    rows = dy.reshape(-1, x.shape[-1])
    return {"x": float(np.max(dy * wa)) * max(a, 1.0),
            "alpha": float(np.sum(dy * wa * np.abs(x))) + 1.0,
            "weight": float(np.max(rows.sum(0))) + 1.0,
            "bias": float(np.max(rows.sum(0))) + 1.0}[name]


X = np.random.default_rng(0).standard_normal((2, 3, 4))
C4 = np.ones(4)


def _fwd(**over):
    kw = dict(x=X, alpha=0.5, weight=C4, bias=C4)
    kw.update(over)
    return lambda: refnorm.dyt(**kw)


ERRORS = [
    ("x-0d", _fwd(x=np.array(1.0)), ValueError, "x must have at least 1 dimensions"),
    ("x-int", _fwd(x=np.ones((2, 4), int)), TypeError, "x must have a real floating dtype"),
    ("x-none", _fwd(x=None), TypeError, "x must be an array"),
    ("alpha-shape", _fwd(alpha=np.ones(2)), ValueError, "alpha must be a real number or an array of shape (1,)"),
    ("alpha-2d", _fwd(alpha=np.ones((1, 1))), ValueError, "alpha must be a real number or an array of shape"),
    ("alpha-int-array", _fwd(alpha=np.array([1])), TypeError, "alpha must have a real floating dtype"),
    ("alpha-bool", _fwd(alpha=True), TypeError, "alpha must have a real floating dtype"),
    ("alpha-none", _fwd(alpha=None), TypeError, "alpha must be an array"),
    ("alpha-str", _fwd(alpha="0.5"), TypeError, "alpha must be an array"),
    ("weight-shape", _fwd(weight=np.ones(3)), ValueError, "weight must have shape (4,)"),
    ("weight-channels-first", _fwd(weight=np.ones(3), x=np.ones((2, 3, 4))), ValueError,
     "weight must have shape (4,) (one value per element of the last dimension"),
    ("bias-shape", _fwd(bias=np.ones((4, 1))), ValueError, "bias must have shape (4,)"),
    ("bias-int", _fwd(bias=np.ones(4, int)), TypeError, "bias must have a real floating dtype"),
    ("dy-shape", lambda: refnorm.dyt_backward(np.ones((2, 4)), X, 0.5), ValueError,
     "dy must have the shape of the forward output (2, 3, 4)"),
    ("dy-int", lambda: refnorm.dyt_backward(np.ones(X.shape, int), X, 0.5), TypeError,
     "dy must have a real floating dtype"),
    ("bwd-alpha-shape", lambda: refnorm.dyt_backward(np.ones(X.shape), X, np.ones(3)), ValueError,
     "alpha must be a real number or an array of shape"),
    ("jvp-unknown-key", lambda: refnorm.dyt_jvp({"beta": np.ones(1)}, X, 0.5), ValueError, "beta"),
    ("jvp-weight-not-given", lambda: refnorm.dyt_jvp({"weight": np.ones(4)}, X, 0.5), ValueError, "weight"),
    ("jvp-alpha-shape", lambda: refnorm.dyt_jvp({"alpha": np.ones(1)}, X, 0.5), ValueError, "alpha"),
    ("dbw-x-shape", lambda: refnorm.dyt_double_backward({"x": np.ones(3)}, np.ones(X.shape), X, 0.5), ValueError,
     "x"),
]

KERNELS = [(dyt_mod, ("_forward", "_backward_rows", "_param_sums", "_jvp", "_double_rows", "_double_cols"))]


def threads(rng):
    """Rows spread over threads (forward, dx, dalpha's row partials) and columns (dweight, dbias)."""
    x = 0.3 + 2.0 * rng.standard_normal((64, 9, 33))
    w, b = 1.0 + 0.5 * rng.standard_normal(33), rng.standard_normal(33)
    return [dict(x=x, alpha=np.array([0.7]), weight=w, bias=b), dict(x=x, alpha=-1.5)]


EXACT = NoExactOracle("no exact oracle (tanh is transcendental): checked against the autograd reference and finite "
                      "differences (tests/test_registry.py), the authors' DynamicTanh module run by PyTorch in "
                      "float64, and a 50-digit mpmath tanh / sech^2 (tests/ops/test_dyt.py)")
