"""An exact oracle for the five normalizers: the specification in exact arithmetic.

Used only by tests (``tests/ops/test_accuracy.py``) and by the accuracy table in
``docs/numerics.md``.  It is slow on purpose: every quantity is computed
*exactly*, so it measures refnorm's float64 rounding errors rather than
comparing two roundings with each other.

How it is exact
---------------
* Inputs (float16/bfloat16/float32/float64) are upcast exactly to float64 and
  then converted exactly to :class:`fractions.Fraction` (``Fraction(float)`` is
  exact).  Arrays are NumPy ``object`` arrays of Fractions, so the formulas
  below read like the math.
* mean, biased/unbiased variance, ``xc = x - mean`` and ``inv = 1 / (var + eps)``
  are rational and computed exactly.  Note ``inv == rstd**2``.
* The only irrational quantity is ``rstd = sqrt(inv)``, evaluated with mpmath
  at :data:`PREC` bits (relative error 2^-PREC, ~2^-200 below float64's
  half-ulp).  Everything downstream of rstd is written as *rational x rstd*:

      xhat    = xc * rstd
      y       = weight * xc * rstd + bias
      dx      = rstd * R,  R = g - mean(g) - xc * mean(g * xc) * inv   (rational)
      dweight = sum(dy * xc * rstd)
      dbias   = sum(dy)                                                   (rational)

  so an mpf result carries one rounding at PREC bits and no cancellation in
  working precision (R is cancelled exactly before rstd multiplies it).

Every public function here has the signature and semantics of the refnorm
function of the same name and returns a dict of object arrays (Fraction where
the value is rational, ``mpmath.mpf`` otherwise):

* forward ``<op>(...)`` -> ``{"y", "mean", "var", "rstd"}`` (statistics shaped
  as refnorm's ``<op>_stats`` returns them; RMSNorm: ``"var"`` is the mean
  square, no ``"mean"``; for running statistics ``"var"`` is ``running_var``);
* ``<op>_backward(dy, ...)`` -> ``{"x", "weight", "bias"}`` (those given);
* ``batch_norm_running_stats`` / ``instance_norm_running_stats`` -> (mean, var).

Measuring errors: :func:`abs_error` and :func:`ulps`.

``python -m tests.oracle`` runs a small self-check (the worked example of E28,
docs/edge-cases.md#e28: pairs around mean 2 with F = 6; rstd exactly 2, 1, 1/2).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np

#: mpmath working precision (bits) for rstd and everything downstream of it.
PREC = 256
mpmath.mp.prec = PREC

#: The float64 unit roundoff, u = 2^-53 (half an ulp of 1).
U = 2.0 ** -53


# ----------------------------------------------------------------------------
# conversions


def exact(a) -> np.ndarray:
    """Exact Fraction copy (object array) of a float16/bfloat16/float32/float64 array."""
    a64 = np.asarray(a).astype(np.float64)  # exact upcast
    out = np.empty(a64.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(a64.reshape(-1)):
        flat[i] = Fraction(float(v))
    return out


def _frac(v) -> Fraction:
    return v if isinstance(v, Fraction) else Fraction(float(v))


def mp(v):
    """mpf of a Fraction / mpf / float / int (exact conversion where possible, else PREC bits)."""
    if isinstance(v, Fraction):
        return mpmath.mpf(v.numerator) / v.denominator
    return mpmath.mpf(v)


_mp = np.frompyfunc(mp, 1, 1)


def _sqrt(q):
    return mpmath.sqrt(mp(q))


_sqrt_arr = np.frompyfunc(_sqrt, 1, 1)


def to_float(a) -> np.ndarray:
    """Round an exact object array to float64 (round-to-nearest via mpmath/Fraction)."""
    return np.asarray(np.frompyfunc(lambda v: float(mp(v)), 1, 1)(np.asarray(a, dtype=object)), dtype=np.float64)


def abs_error(got, expected) -> np.ndarray:
    """``|got - expected|`` evaluated at PREC bits, rounded to float64.

    ``got`` is a float array (converted exactly), ``expected`` an exact object
    array (broadcastable)."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.broadcast_to(np.asarray(expected, dtype=object), got.shape)
    out = np.empty(got.shape)
    fo, fg, fe = out.reshape(-1), got.reshape(-1), expected.reshape(-1)
    for i in range(fo.size):
        if math.isnan(fg[i]):
            fo[i] = math.nan
        else:
            fo[i] = float(abs(mpmath.mpf(float(fg[i])) - mp(fe[i])))
    return out


def ulps(got, expected, magnitude=None) -> np.ndarray:
    """The error of ``got`` in units in the last place.

    Definition: ``ulps = |got - expected| / ulp(M)`` where ``|got - expected|``
    is computed exactly (at PREC bits), ``M = |expected|`` rounded to float64
    unless an explicit ``magnitude`` is given (e.g. the size of the terms an
    output is computed from, when the output itself can cancel), and
    ``ulp(M) = np.spacing(M)``: the gap from M to the next larger double
    (2^(e-52) for 2^e <= M < 2^(e+1); the smallest subnormal for M = 0).
    A correctly rounded result has ``ulps <= 0.5``; ``u * M <= ulp(M) <= 2u * M``
    with u = 2^-53.
    """
    err = abs_error(got, expected)
    if magnitude is None:
        magnitude = np.abs(to_float(np.broadcast_to(np.asarray(expected, dtype=object), err.shape)))
    return err / np.spacing(np.abs(np.asarray(magnitude, dtype=np.float64)))


# ----------------------------------------------------------------------------
# the one normalizer everything is built from


def _sum(a, axes):
    return np.sum(a, axis=axes, keepdims=True) if len(axes) else a


def _count(shape, axes) -> int:
    return math.prod(shape[a] for a in axes)


def _bcast(p, shape, axes_kept):
    """A per-channel (or per-element) parameter as an exact array broadcastable
    to ``shape``: ``p`` spans the dimensions ``axes_kept`` of x, in order."""
    if p is None:
        return None
    pe = exact(p)
    target = [1] * len(shape)
    for a in axes_kept:
        target[a] = shape[a]
    return pe.reshape(target)


def _statistics(x, axes, eps, *, center=True, running=None):
    """Exact statistics of x (Fraction array) over the reduced ``axes``.

    Batch statistics (``running=None``): mean = sum(x)/n (0 without centring),
    var = sum((x - mean)^2)/n (biased).  Running statistics: (mean, var) given,
    broadcastable.  Returns mean, var, xc = x - mean, inv = 1/(var + eps),
    rstd = sqrt(inv) (mpf)."""
    eps = _frac(eps)
    if running is None:
        n = _count(x.shape, axes)
        mean = _sum(x, axes) / n if center else np.zeros(_sum(x, axes).shape, dtype=object) + Fraction(0)
        xc = x - mean
        var = _sum(xc * xc, axes) / n
    else:
        mean, var = running
        xc = x - mean
    inv = 1 / (var + eps)  # == rstd ** 2, rational
    rstd = _sqrt_arr(inv)
    return mean, var, xc, inv, rstd


def _absf(a, shape):
    """|a| rounded to float64, broadcast to ``shape`` (for error-bound magnitudes)."""
    return np.broadcast_to(np.abs(to_float(a)), shape).copy()


def _forward(x, axes, w, b, eps, **kw):
    mean, var, xc, inv, rstd = _statistics(x, axes, eps, **kw)
    xhat = _mp(xc) * rstd
    wxhat = xhat if w is None else xhat * _mp(w)
    y = wxhat if b is None else wxhat + _mp(b)
    # magnitudes the error bounds of a float64 evaluation are stated in (floats, shaped like x)
    absw = 1.0 if w is None else _absf(w, x.shape)
    mag = {"|w xhat|": _absf(wxhat, x.shape),
           "|b|": np.zeros(x.shape) if b is None else _absf(b, x.shape),
           "|w| (|xc| + |mean|) rstd": absw * (_absf(xc, x.shape) + _absf(mean, x.shape)) * _absf(rstd, x.shape),
           "n": _count(x.shape, axes)}
    return {"y": y, "mean": mean, "var": var, "rstd": rstd, "xhat": xhat, "wxhat": wxhat, "mag": mag}


def _backward(dy, x, axes, w, b, eps, affine_axes, mode="batch", **kw):
    """Gradients of _forward for the cotangent dy.

    mode "batch": statistics depend on x (mean and rstd paths);
    "rms": no centring (only the rstd path); "const": running statistics
    (constants: dx = rstd * g).  ``affine_axes``: the axes of x the weight
    does NOT vary along (dweight and dbias sum over them)."""
    mean, var, xc, inv, rstd = _statistics(x, axes, eps, center=(mode != "rms"), **kw)
    n = _count(x.shape, axes)
    g = dy if w is None else dy * w
    if mode == "batch":
        R = g - _sum(g, axes) / n - xc * (_sum(g * xc, axes) / n) * inv
    elif mode == "rms":
        R = g - xc * (_sum(g * xc, axes) / n) * inv
    else:
        R = g
    out = {"x": _mp(R) * rstd}
    if w is not None:
        out["weight"] = np.sum(_mp(dy * xc) * rstd, axis=affine_axes)
    if b is not None:
        out["bias"] = np.sum(dy, axis=affine_axes)
    # magnitudes for the error bounds (floats): per element of x, and per affine parameter
    sh = x.shape
    absg, absxhat = _absf(g, sh), _absf(xc, sh) * _absf(rstd, sh)
    absdy = _absf(dy, sh)
    red = tuple(a for a in range(len(sh)) if a in axes)
    out["mag"] = {
        "rstd": _absf(rstd, sh), "|g|": absg,
        "mean|g|": np.broadcast_to(np.mean(absg, axis=red, keepdims=True), sh).copy(),
        "|xhat|": absxhat,
        "mean|g xhat|": np.broadcast_to(np.mean(absg * absxhat, axis=red, keepdims=True), sh).copy(),
        "(|xc| + |mean|) rstd": (_absf(xc, sh) + _absf(mean, sh)) * _absf(rstd, sh),
        "n": _count(sh, axes),
        "sum|dy xhat|": np.sum(absdy * absxhat, axis=affine_axes),
        "sum|dy|": np.sum(absdy, axis=affine_axes),
        "n_affine": _count(sh, affine_axes),
    }
    return out


def _project(v, xc, inv, axes, n, mode):
    """``R`` with ``P(v) = rstd * R`` exactly (rational): the projection of the
    derivatives (refnorm/ops/_derivatives.py) with ``xhat = xc * rstd``."""
    if mode == "const":
        return v
    R = v - xc * (_sum(v * xc, axes) / n) * inv
    return R - _sum(v, axes) / n if mode == "batch" else R


def _zero_or(v, shape):
    return np.full(shape, Fraction(0), dtype=object) if v is None else v


def _directions_exact(directions, names, shape, param_axes):
    """Tangents / cotangents as exact arrays: ``"x"`` shaped like x, a
    parameter broadcast along ``param_axes`` (None where absent)."""
    return {a: None if directions.get(a) is None else
            (exact(directions[a]) if a == "x" else _bcast(directions[a], shape, param_axes)) for a in names}


def _jvp(x, axes, w, eps, tx, tw, tb, mode="batch", **kw):
    """Forward mode of _forward: ``ty = rstd (w R(tx) + tw xc) + tb`` (mpf),
    and the magnitude of its terms (float, for error bounds)."""
    mean, var, xc, inv, rstd = _statistics(x, axes, eps, center=(mode != "rms"), **kw)
    n = _count(x.shape, axes)
    tx = _zero_or(tx, x.shape)
    wv = 1 if w is None else w
    inner = wv * _project(tx, xc, inv, axes, n, mode) + (0 if tw is None else tw * xc)
    ty = _mp(inner) * rstd + (0 if tb is None else _mp(tb))
    sh = x.shape
    r, axc = _absf(rstd, sh), _absf(xc, sh) * _absf(rstd, sh)
    at = _absf(tx, sh)
    red = tuple(axes)
    proj = at if mode == "const" else (at + np.mean(at, axis=red, keepdims=True)
                                       + axc * np.mean(axc * at, axis=red, keepdims=True))
    mag = (1.0 if w is None else _absf(w, sh)) * r * proj + (0 if tw is None else _absf(tw, sh) * axc) \
        + (0 if tb is None else _absf(tb, sh))
    return {"t": ty, "mag": mag}


def _double_backward(dy, x, axes, w, eps, ca, gw, gb, affine_axes, mode="batch", **kw):
    """The VJP of _backward (exact bracket times rstd; see the module
    refnorm/ops/_derivatives.py): ``{"dy", "x", "weight"}`` (mpf; "weight"
    when ``w`` is given) and per-output magnitudes ``"mag"`` (floats)."""
    mean, var, xc, inv, rstd = _statistics(x, axes, eps, center=(mode != "rms"), **kw)
    n = _count(x.shape, axes)
    sh = x.shape
    a = _zero_or(ca, sh)
    g = dy if w is None else dy * w
    c = _zero_or(None if gw is None else dy * gw, sh)
    Ra = _project(a, xc, inv, axes, n, mode)
    if mode == "const":
        bracket = c
    else:
        A1, B1 = _sum(xc * a, axes) / n, _sum(xc * g, axes) / n
        mag_ = _sum(a * g, axes) / n
        if mode == "batch":
            abar, gbar = _sum(a, axes) / n, _sum(g, axes) / n
            mag_ = mag_ - abar * gbar
        else:
            abar = gbar = 0
        bracket = (_project(c, xc, inv, axes, n, mode)
                   - inv * (B1 * (a - abar) + A1 * (g - gbar) + mag_ * xc) + 3 * inv * inv * A1 * B1 * xc)
    out = {"x": _mp(bracket) * rstd,
           "dy": _mp((1 if w is None else w) * Ra + (0 if gw is None else gw * xc)) * rstd
           + (0 if gb is None else _mp(gb))}
    if w is not None:
        out["weight"] = np.sum(_mp(dy * Ra) * rstd, axis=affine_axes)
    # magnitudes: every term of the formulas above in absolute value (floats)
    r, axh = _absf(rstd, sh), _absf(xc, sh) * _absf(rstd, sh)
    aa, ag, ac, ady = _absf(a, sh), _absf(g, sh), _absf(c, sh), _absf(dy, sh)
    red = tuple(axes)

    def m(v):
        return np.broadcast_to(np.mean(v, axis=red, keepdims=True), sh)

    if mode == "const":
        pa, pc, quad = aa, ac, 0.0
    else:
        pa = aa + m(aa) + axh * m(axh * aa)
        pc = ac + m(ac) + axh * m(axh * ac)
        quad = r * (m(axh * ag) * (aa + m(aa)) + m(axh * aa) * (ag + m(ag)) + (m(aa * ag) + m(aa) * m(ag)
                                                                                + 3 * m(axh * aa) * m(axh * ag)) * axh)
    out["mag"] = {"x": r * pc + r * quad,
                  "dy": (1.0 if w is None else _absf(w, sh)) * r * pa + (0 if gw is None else _absf(gw, sh) * axh)
                  + (0 if gb is None else _absf(gb, sh)),
                  "weight": np.sum(ady * r * pa, axis=affine_axes)}
    return out


def layer_norm_jvp(tangents, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xe = exact(x)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    t = _directions_exact(tangents, ("x", "weight", "bias"), xe.shape, axes)
    return _jvp(xe, axes, _bcast(weight, xe.shape, axes), eps, t["x"], t["weight"], t["bias"])


def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xe, dye = exact(x), exact(dy)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    c = _directions_exact(cotangents, ("x", "weight", "bias"), xe.shape, axes)
    return _double_backward(dye, xe, axes, _bcast(weight, xe.shape, axes), eps, c["x"], c["weight"], c["bias"],
                            affine_axes=tuple(range(xe.ndim - k)))


def batch_norm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
    xe = exact(x)
    axes = (0,) + tuple(range(2, xe.ndim))
    t = _directions_exact(tangents, ("x", "weight", "bias"), xe.shape, (1,))
    running = None if training else _running_pair(running_mean, running_var, xe.shape[1], xe.ndim)
    return _jvp(xe, axes, _bcast(weight, xe.shape, (1,)), eps, t["x"], t["weight"], t["bias"],
                mode="batch" if training else "const", running=running)


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    xe, dye = exact(x), exact(dy)
    axes = (0,) + tuple(range(2, xe.ndim))
    c = _directions_exact(cotangents, ("x", "weight", "bias"), xe.shape, (1,))
    running = None if training else _running_pair(running_mean, running_var, xe.shape[1], xe.ndim)
    return _double_backward(dye, xe, axes, _bcast(weight, xe.shape, (1,)), eps, c["x"], c["weight"], c["bias"],
                            affine_axes=axes, mode="batch" if training else "const", running=running)


def rms_norm_jvp(tangents, x, normalized_shape, weight=None, eps=None):
    xa = np.asarray(x)
    eps = default_rms_eps(xa.dtype) if eps is None else eps
    xe = exact(xa)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    t = _directions_exact(tangents, ("x", "weight"), xe.shape, axes)
    return _jvp(xe, axes, _bcast(weight, xe.shape, axes), eps, t["x"], t["weight"], None, mode="rms")


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None):
    xa = np.asarray(x)
    eps = default_rms_eps(xa.dtype) if eps is None else eps
    xe, dye = exact(xa), exact(dy)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    c = _directions_exact(cotangents, ("x", "weight"), xe.shape, axes)
    return _double_backward(dye, xe, axes, _bcast(weight, xe.shape, axes), eps, c["x"], c["weight"], None,
                            affine_axes=tuple(range(xe.ndim - k)), mode="rms")


def _with_stats(res, shape_of_stats, keys=("mean", "var", "rstd")):
    return {"y": res["y"], **{k: np.asarray(res[k]).reshape(shape_of_stats) for k in keys},
            "xhat": res["xhat"], "wxhat": res["wxhat"], "mag": res["mag"]}


# ----------------------------------------------------------------------------
# the five ops (same signatures as refnorm's public functions)


def _running_pair(running_mean, running_var, C, ndim):
    shape = [1] * ndim
    shape[1] = C
    return exact(running_mean).reshape(shape), exact(running_var).reshape(shape)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Per channel over (N, *spatial); training: batch statistics (biased var); eval: running ones."""
    xe = exact(x)
    axes = (0,) + tuple(range(2, xe.ndim))
    C = xe.shape[1]
    w, b = _bcast(weight, xe.shape, (1,)), _bcast(bias, xe.shape, (1,))
    running = None if training else _running_pair(running_mean, running_var, C, xe.ndim)
    return _with_stats(_forward(xe, axes, w, b, eps, running=running), (C,))


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                        momentum=0.1, eps=1e-5):
    xe, dye = exact(x), exact(dy)
    axes = (0,) + tuple(range(2, xe.ndim))
    w, b = _bcast(weight, xe.shape, (1,)), _bcast(bias, xe.shape, (1,))
    running = None if training else _running_pair(running_mean, running_var, xe.shape[1], xe.ndim)
    return _backward(dye, xe, axes, w, b, eps, affine_axes=axes, mode="batch" if training else "const",
                     running=running)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Over the last len(normalized_shape) axes; per-element affine."""
    xe = exact(x)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    w, b = _bcast(weight, xe.shape, axes), _bcast(bias, xe.shape, axes)
    return _with_stats(_forward(xe, axes, w, b, eps), xe.shape[: xe.ndim - k])


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    xe, dye = exact(x), exact(dy)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    w, b = _bcast(weight, xe.shape, axes), _bcast(bias, xe.shape, axes)
    return _backward(dye, xe, axes, w, b, eps, affine_axes=tuple(range(xe.ndim - k)))


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Per (sample, channel) over the spatial axes, or with per-channel running statistics."""
    xe = exact(x)
    N, C = xe.shape[:2]
    axes = tuple(range(2, xe.ndim))
    w, b = _bcast(weight, xe.shape, (1,)), _bcast(bias, xe.shape, (1,))
    running = None if use_input_stats else _running_pair(running_mean, running_var, C, xe.ndim)
    return _with_stats(_forward(xe, axes, w, b, eps, running=running), (N, C) if use_input_stats else (C,))


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                           use_input_stats=True, momentum=0.1, eps=1e-5):
    xe, dye = exact(x), exact(dy)
    axes = tuple(range(2, xe.ndim))
    w, b = _bcast(weight, xe.shape, (1,)), _bcast(bias, xe.shape, (1,))
    running = None if use_input_stats else _running_pair(running_mean, running_var, xe.shape[1], xe.ndim)
    return _backward(dye, xe, axes, w, b, eps, affine_axes=(0,) + axes,
                     mode="batch" if use_input_stats else "const", running=running)


def _groups(xe, num_groups):
    """x (N, C, *spatial) viewed as (N, G, C/G, *spatial): each (n, g) is one set."""
    N, C = xe.shape[:2]
    return xe.reshape((N, num_groups, C // num_groups) + xe.shape[2:])


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Per (sample, group of C/G channels) over (C/G, *spatial); per-channel affine."""
    xe = exact(x)
    xg = _groups(xe, num_groups)
    axes = tuple(range(2, xg.ndim))
    w = None if weight is None else exact(weight).reshape((1, num_groups, -1) + (1,) * (xg.ndim - 3))
    b = None if bias is None else exact(bias).reshape((1, num_groups, -1) + (1,) * (xg.ndim - 3))
    res = _forward(xg, axes, w, b, eps)
    res = {k: (v.reshape(xe.shape) if k in ("y", "xhat", "wxhat") else v) for k, v in res.items()}
    res["mag"] = {k: (v.reshape(xe.shape) if isinstance(v, np.ndarray) else v) for k, v in res["mag"].items()}
    return _with_stats(res, (xe.shape[0], num_groups))


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    xe = exact(x)
    xg, dyg = _groups(xe, num_groups), _groups(exact(dy), num_groups)
    axes = tuple(range(2, xg.ndim))
    w = None if weight is None else exact(weight).reshape((1, num_groups, -1) + (1,) * (xg.ndim - 3))
    b = None if bias is None else exact(bias).reshape((1, num_groups, -1) + (1,) * (xg.ndim - 3))
    out = _backward(dyg, xg, axes, w, b, eps, affine_axes=(0,) + tuple(range(3, xg.ndim)))
    out["x"] = out["x"].reshape(xe.shape)
    for k in ("weight", "bias"):
        if k in out:
            out[k] = out[k].reshape(-1)
    out["mag"] = {k: (v.reshape(xe.shape) if isinstance(v, np.ndarray) and v.size == xe.size and k[0] != "s"
                      else v.reshape(-1) if isinstance(v, np.ndarray) else v) for k, v in out["mag"].items()}
    return out


def default_rms_eps(dtype) -> float:
    """RMSNorm's eps=None, as PyTorch's CPU kernel uses it: float64 -> 2^-52, others -> 2^-23."""
    return 2.0 ** -52 if np.dtype(dtype) == np.float64 else 2.0 ** -23


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) * weight over the trailing axes; "var" is the mean square."""
    xa = np.asarray(x)
    eps = default_rms_eps(xa.dtype) if eps is None else eps
    xe = exact(xa)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    w = _bcast(weight, xe.shape, axes)
    return _with_stats(_forward(xe, axes, w, None, eps, center=False), xe.shape[: xe.ndim - k],
                       keys=("var", "rstd"))


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None):
    xa = np.asarray(x)
    eps = default_rms_eps(xa.dtype) if eps is None else eps
    xe, dye = exact(xa), exact(dy)
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(xe.ndim - k, xe.ndim))
    w = _bcast(weight, xe.shape, axes)
    return _backward(dye, xe, axes, w, None, eps, affine_axes=tuple(range(xe.ndim - k)), mode="rms")


# ----------------------------------------------------------------------------
# running statistics


def _set_moments(xe, axes):
    n = _count(xe.shape, axes)
    mean = _sum(xe, axes) / n
    m2 = _sum((xe - mean) ** 2, axes)
    return mean, m2, n


def batch_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                             convention="torch"):
    """new = f * batch + (1 - f) * old, exactly.

    torch: f = momentum (or 1/(num_batches_tracked + 1) when momentum is None),
    unbiased batch variance m2/(n-1).  onnx / flax: f = 1 - momentum, biased
    variance m2/n.  ``momentum`` is taken as the exact value of the double."""
    xe = exact(x)
    axes = (0,) + tuple(range(2, xe.ndim))
    mean, m2, n = _set_moments(xe, axes)
    if convention == "torch":
        f = Fraction(1, num_batches_tracked + 1) if momentum is None else _frac(momentum)
        var = m2 / (n - 1)
    elif convention in ("onnx", "flax"):
        f = 1 - _frac(momentum)
        var = m2 / n
    else:
        raise ValueError(convention)
    old_m, old_v = exact(running_mean), exact(running_var)
    return f * mean.reshape(-1) + (1 - f) * old_m, f * var.reshape(-1) + (1 - f) * old_v


def instance_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, convention="torch"):
    """new = (1 - m) * old + m * mean over samples of the per-(n, c) statistic
    (unbiased variance over the spatial positions), exactly."""
    assert convention == "torch"
    xe = exact(x)
    N, C = xe.shape[:2]
    axes = tuple(range(2, xe.ndim))
    mean, m2, n = _set_moments(xe, axes)
    batch_mean = np.sum(mean.reshape(N, C), axis=0) / N
    batch_var = np.sum((m2 / (n - 1)).reshape(N, C), axis=0) / N
    f = _frac(momentum)
    old_m, old_v = exact(running_mean), exact(running_var)
    return f * batch_mean + (1 - f) * old_m, f * batch_var + (1 - f) * old_v


#: name -> (forward, backward): every op whose tests/ops/cases/<op>.py declares
#: ``EXACT = ExactOracle(...)`` (tests/ops/test_accuracy.py checks it).
OPS = {
    "batch_norm": (batch_norm, batch_norm_backward),
    "layer_norm": (layer_norm, layer_norm_backward),
    "instance_norm": (instance_norm, instance_norm_backward),
    "group_norm": (group_norm, group_norm_backward),
    "rms_norm": (rms_norm, rms_norm_backward),
}


def _self_check() -> None:
    """E28-style checks: pairs m(1 +- j/2^F) with m = 2, F = 6 (512 values) have
    mean exactly 2; var + eps in {1/4, 1, 4} gives rstd exactly 2, 1, 1/2."""
    rng = np.random.default_rng(0)
    m, F = 2.0, 6
    j = rng.integers(0, 2 ** F, 256)
    x = np.concatenate([m * (1 + j / 2 ** F), m * (1 - j / 2 ** F)])
    r = layer_norm(x[None, :], (512,), eps=1 / 16)
    print("mean", r["mean"][0], " var", float(r["var"][0]), " rstd", float(mpmath.nstr(r["rstd"][0], 30)))
    assert r["mean"][0] == 2
    for s, want in [(0.25, 2), (0.5, 1), (1.0, 0.5)]:
        xs = np.array([[m + s, m - s] * 4])
        rr = layer_norm(xs, (8,), eps=3 * s * s)
        assert rr["rstd"][0] == want, (s, rr["rstd"][0])
    # ulps: 1 + 2^-52 vs exact 1 is one ulp; the ulp of 1 is the gap above 1
    assert ulps(np.array([1 + 2 ** -52]), np.array([Fraction(1)], dtype=object))[0] == 1.0
    print("oracle self-check ok")


if __name__ == "__main__":
    _self_check()
