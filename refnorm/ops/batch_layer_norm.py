"""Batch Layer Normalization (BLN): the fast path.

The definition is :mod:`refnorm.reference.batch_layer_norm`.  ``x`` is moved
to features-last and made contiguous, ``xt`` of shape ``(N, P, d)`` (``P`` =
product of the positions between the batch and the feature axis), and seen
through three reshapes (no copies) in the canonical ``(A, B, S)`` form of
:mod:`refnorm.ops._kernels` (a reduction set is ``x[:, b, :]``):

=======================  =================  ==================================
statistic                view (A, B, S)     one set per
=======================  =================  ==================================
feature (mu_F, s2_F)     (1, N*P, d)        row r = (n, p)
batch "position"         (N, P*d, 1)        (p, j)      index (r % P) * d + j
batch "channel"          (N*P, d, 1)        j           index j
=======================  =================  ==================================

Statistics come from :func:`refnorm.ops._kernels.moments` (double-double,
compensated, ``eps`` inside the square root).

Backward (derived; docs/ops/batch_layer_norm.md#bln-backward):
``y = gamma*(w_F*xhat_F + w_B*xhat_B)/sqrt(d) + beta`` is linear in the two
normalizations, so ``dx`` is the sum of two normalization backwards, each
over its own reduction sets, with the branch cotangent
``g = (gamma * dy) * (w / sqrt(d))``.  For one set of ``n`` elements with
``xhat = (x - mean_use) * r``, ``r = (var_use + eps)^(-1/2)``::

    term 1: r * g                                            (always)
    term 2: -r * c1,        c1 = mean(g)                     (mean_use = current mean)
    term 3: -c3 * (x - mean_cur),  c3 = r^3 * mean(g * (x - mean_use))   (var_use = current var)

where ``mean_cur`` is the current-batch mean about which the current variance
is taken (equal to ``mean_use`` in training, where this is the familiar
``r * (g - c1 - xhat * mean(g * xhat))``).  With a moving mean and variance
the branch is affine: ``dx = r * g``.
``dgamma_j = sum dy * z / sqrt(d)``, ``z = w_F*xhat_F + w_B*xhat_B``; ``dbeta_j = sum dy``
(sums over every non-feature element, compensated, one thread per feature).

Forward mode and second order (``batch_layer_norm_jvp``,
``batch_layer_norm_double_backward``): the section at the end of this module
(docs/ops/batch_layer_norm.md#bln-jvp).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .. import _validate as V
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, sub_dd_round, two_sum
from ._jit import jit, pjit, prange
from ._sets import MEAN, MEAN_LO, RSTD, RSTD_LO, _xhat

STAT_KEYS = ("batch_mean", "batch_var", "feature_mean", "feature_var")
_FLAG_NAMES = ("batch_moving_mean", "batch_moving_var", "feature_moving_mean", "feature_moving_var")


@pjit
def _forward(x2, fstats, bstats, Pm, weight, bias, w_F, w_B, sqrt_d, y2):
    """``y = weight * (w_F * xhat_F + w_B * xhat_B) / sqrt_d + bias`` on ``(R, d)``
    (``weight``, ``bias``: gamma, beta); the feature statistics of row r are
    column r of ``fstats``, the batch statistics of element (r, j) column
    ``(r % Pm) * d + j`` of ``bstats``."""
    R, d = x2.shape
    for r in prange(R):
        base = (r % Pm) * d
        for j in range(d):
            k = base + j
            xhat_f = _xhat(x2[r, j], fstats[MEAN, r], fstats[MEAN_LO, r], fstats[RSTD, r], fstats[RSTD_LO, r])  # (7)
            xhat_b = _xhat(x2[r, j], bstats[MEAN, k], bstats[MEAN_LO, k], bstats[RSTD, k], bstats[RSTD_LO, k])  # (6)
            z = w_F * xhat_f + w_B * xhat_b  # (10)
            y2[r, j] = (weight[j] * z) / sqrt_d + bias[j]  # (11)-(13)


@pjit
def _branch_dx(dy, x, weight, d, coef, use, cur, mean_const, var_const, accumulate, dx):
    """One branch's input gradient on the view ``(A, B, S)`` (see module docstring);
    ``weight`` (gamma) of element (a, b, s) is ``weight[(b * S + s) % d]``; adds
    into ``dx`` when ``accumulate``.  ``use``: the statistics the branch
    normalizes with (``mean_use``, ``rstd``), ``cur``: its current ones
    (``mean_cur``)."""
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        mh = use[MEAN, b]
        ml = use[MEAN_LO, b]
        ch = cur[MEAN, b]
        cl = cur[MEAN_LO, b]
        rh = use[RSTD, b]
        c1 = 0.0
        c3 = 0.0
        if not (mean_const and var_const) and n > 0:
            s1h = 0.0
            s1l = 0.0
            s2h = 0.0
            s2l = 0.0
            for a in range(A):
                for s in range(S):
                    g = coef * (weight[(b * S + s) % d] * dy[a, b, s])
                    xc_use = sub_dd_round(x[a, b, s], mh, ml)
                    s1h, e = two_sum(s1h, g)
                    s1l += e
                    s2h, e = two_sum(s2h, g * xc_use)
                    s2l += e
            if not mean_const:
                c1h, c1l = dd_div_int(s1h, s1l, n)
                c1 = c1h + c1l
            if not var_const:
                # c2 differs from mean(g * xhat): mean(g * xc_use), xc_use = xhat / rstd
                c2h, c2l = dd_div_int(s2h, s2l, n)
                c3 = rh * rh * rh * (c2h + c2l)
        for a in range(A):
            for s in range(S):
                g = coef * (weight[(b * S + s) % d] * dy[a, b, s])
                xc_cur = sub_dd_round(x[a, b, s], ch, cl)
                # term 1: r*g; term 2: -r*c1 (mean path); term 3: -c3*xc_cur (variance path)
                v = rh * (g - c1) - c3 * xc_cur
                if accumulate:
                    dx[a, b, s] += v
                else:
                    dx[a, b, s] = v


@pjit
def _affine(dy2, x2, fstats, bstats, Pm, w_F, w_B, sqrt_d, dweight, dbias):
    """``dweight_j = sum_r dy * z / sqrt_d`` and ``dbias_j = sum_r dy`` (dgamma,
    dbeta), r ascending; statistics as in :func:`_forward`."""
    R, d = x2.shape
    for j in prange(d):
        wh = 0.0
        wl = 0.0
        bh = 0.0
        bl = 0.0
        for r in range(R):
            k = (r % Pm) * d + j
            xhat_f = _xhat(x2[r, j], fstats[MEAN, r], fstats[MEAN_LO, r], fstats[RSTD, r], fstats[RSTD_LO, r])
            xhat_b = _xhat(x2[r, j], bstats[MEAN, k], bstats[MEAN_LO, k], bstats[RSTD, k], bstats[RSTD_LO, k])
            z = w_F * xhat_f + w_B * xhat_b
            wh, e = two_sum(wh, dy2[r, j] * z)
            wl += e
            bh, e = two_sum(bh, dy2[r, j])
            bl += e
        dweight[j] = (wh + wl) / sqrt_d
        dbias[j] = bh + bl


# ----------------------------------------------------------------------------- validation and layout


def _feature_axis(feature_axis, ndim):
    if isinstance(feature_axis, bool) or not isinstance(feature_axis, (int, np.integer)):
        raise TypeError(f"feature_axis must be an int, got {type(feature_axis).__name__} {feature_axis!r}")
    fa = int(feature_axis)
    if not -ndim <= fa < ndim:
        raise ValueError(f"feature_axis must be in [-{ndim}, {ndim - 1}] for x with {ndim} dimensions, got {fa}")
    fa %= ndim
    if fa == 0:
        raise ValueError("feature_axis must not be the batch axis 0")
    return fa


def _batch_stats_mode(batch_stats):
    if not isinstance(batch_stats, str):
        raise TypeError(f"batch_stats must be 'position' or 'channel', got {type(batch_stats).__name__}")
    if batch_stats not in ("position", "channel"):
        raise ValueError(f"batch_stats must be 'position' or 'channel', got {batch_stats!r}")
    return batch_stats


def _stat_shape(shape, fa, mode, which):
    """keepdims shape in x's layout of a batch or feature statistic."""
    shape = tuple(shape)
    if which == "feature":
        return tuple(1 if a == fa else s for a, s in enumerate(shape))
    if mode == "position":
        return (1,) + shape[1:]
    return tuple(s if a == fa else 1 for a, s in enumerate(shape))


def layout(x_shape, feature_axis=-1, batch_stats="position") -> L.Layout:
    """Parameters per feature (``x.shape[feature_axis]``); the four saved
    statistics keepdims in x's layout; no single canonical view (a feature
    view and a batch view, see :class:`_Layout`)."""
    fa = _feature_axis(feature_axis, len(x_shape))
    mode = _batch_stats_mode(batch_stats)
    fs, bs = _stat_shape(x_shape, fa, mode, "feature"), _stat_shape(x_shape, fa, mode, "batch")
    return L.Layout(x_shape, {"batch_mean": bs, "batch_rstd": bs, "feature_mean": fs, "feature_rstd": fs},
                    None, None, (fa,))


class _Layout:
    """x in the features-last contiguous view (N, P, d) and the maps between layouts."""

    def __init__(self, xa, fa, mode):
        self.shape = tuple(xa.shape)
        self.fa = fa
        self.mode = mode
        xt = np.ascontiguousarray(np.moveaxis(V.to_f64(xa), fa, -1))
        self.t_shape = xt.shape
        self.N, self.d = xt.shape[0], xt.shape[-1]
        self.P = V.prod(xt.shape[1:-1])
        self.R = self.N * self.P
        self.xt = xt
        self.Pm = self.P if mode == "position" else 1

    def feature_view(self, a):
        return a.reshape(1, self.R, self.d)

    def batch_view(self, a):
        if self.mode == "position":
            return a.reshape(self.N, self.P * self.d, 1)
        return a.reshape(self.R, self.d, 1)

    def stat_shape(self, which):
        """keepdims shape in x's layout of a batch or feature statistic."""
        return _stat_shape(self.shape, self.fa, self.mode, which)

    def to_x(self, flat, which):
        """Flat canonical statistic -> keepdims array in x's layout."""
        if which == "feature":
            return np.moveaxis(flat.reshape(self.t_shape[:-1] + (1,)), -1, self.fa)
        if self.mode == "position":
            return np.moveaxis(flat.reshape((1,) + self.t_shape[1:]), -1, self.fa)
        return flat.reshape(self.stat_shape("batch"))

    def from_x(self, arr):
        """keepdims array in x's layout -> flat contiguous canonical statistic."""
        return np.ascontiguousarray(np.moveaxis(arr, self.fa, -1).reshape(-1))


def _check_moving(moving_stats, lay, use):
    if moving_stats is None:
        if any(use):
            k = use.index(True)
            raise ValueError(f"moving_stats is required when training=False and flags[{k}] ({_FLAG_NAMES[k]}) "
                             "is True")
        return {}
    if not isinstance(moving_stats, Mapping):
        raise TypeError(f"moving_stats must be a dict with keys {STAT_KEYS} or None, got "
                        f"{type(moving_stats).__name__}")
    unknown = sorted(set(moving_stats) - set(STAT_KEYS))
    if unknown:
        raise ValueError(f"moving_stats has unknown keys {unknown}; allowed keys are {STAT_KEYS}")
    out = {}
    for k, key in enumerate(STAT_KEYS):
        which = "batch" if key.startswith("batch") else "feature"
        if key in moving_stats:
            out[key] = V.check_param(f"moving_stats[{key!r}]", moving_stats[key], lay.stat_shape(which),
                                     f"{which} statistic with keepdims in x's layout")
        elif use[k]:
            raise ValueError(f"moving_stats[{key!r}] is required when training=False and flags[{k}] "
                             f"({_FLAG_NAMES[k]}) is True")
    return out


def _prepare(x, weight, bias, batch_size, eps, training, moving_stats, flags, feature_axis, batch_stats,
             weight_offset, sqrt_d_scale):
    xa = V.check_input("x", x, min_ndim=2, layout="(B, ..., d) features last, or (N, C, *spatial) with "
                                                  "feature_axis=1")
    fa = _feature_axis(feature_axis, xa.ndim)
    mode = _batch_stats_mode(batch_stats)
    d = xa.shape[fa]
    w = V.check_param("weight", weight, (d,), "one value per feature d = x.shape[feature_axis]")
    b = V.check_param("bias", bias, (d,), "one value per feature d = x.shape[feature_axis]")
    B = xa.shape[0] if batch_size is None else V.check_int("batch_size", batch_size, minimum=1)
    if B < 1:
        raise ValueError(f"batch_size is None and x has an empty batch axis: x of shape {tuple(xa.shape)}")
    eps = V.check_real("eps", eps)
    training = V.check_bool("training", training)
    if not isinstance(flags, (tuple, list)) or len(flags) != 4:
        raise TypeError(f"flags must be a tuple of 4 bools {_FLAG_NAMES}, got {flags!r}")
    flags = tuple(V.check_bool(f"flags[{k}] ({_FLAG_NAMES[k]})", f) for k, f in enumerate(flags))
    off = V.check_real("weight_offset", weight_offset)
    sqrt_d_scale = V.check_bool("sqrt_d_scale", sqrt_d_scale)
    use = (False, False, False, False) if training else flags
    lay = _Layout(xa, fa, mode)
    moving = _check_moving(moving_stats, lay, use)
    w_F = 1.0 / B - off  # (8)
    w_B = 1.0 - (1.0 / B + off)  # (9)
    sqrt_d = math.sqrt(float(d)) if sqrt_d_scale else 1.0
    return lay, w, b, eps, use, moving, w_F, w_B, sqrt_d


def _moments(view, eps):
    st = K.empty_stats(view.shape[1])
    K.moments(view, True, float(eps), st)
    return st


def _branch_stats(view, eps, moving_mean, moving_var, use_mean, use_var):
    """``(use, cur)`` of one branch: the statistics arrays it normalizes with
    (the moving mean and variance where flagged) and its current ones."""
    cur = _moments(view, eps)
    use = cur.copy() if use_mean or use_var else cur
    if use_mean:
        use[MEAN] = moving_mean
        use[MEAN_LO] = 0.0
    if use_var:
        K.rstd_of_var(np.ascontiguousarray(moving_var), float(eps), use)
    return use, cur


def _all_stats(lay, eps, use, moving):
    flat = {k: lay.from_x(v) for k, v in moving.items()}
    F = _branch_stats(lay.feature_view(lay.xt), eps, flat.get("feature_mean"), flat.get("feature_var"),
                      use[2], use[3])
    Bs = _branch_stats(lay.batch_view(lay.xt), eps, flat.get("batch_mean"), flat.get("batch_var"), use[0], use[1])
    return F, Bs


def batch_layer_norm_stats(x, weight, bias, batch_size=None, eps=1e-3, *, training=True, moving_stats=None,
                           flags=(True, True, False, False), feature_axis=-1, batch_stats="position",
                           weight_offset=1e-4, sqrt_d_scale=True):
    """``y`` and the statistics used to normalize, keepdims in x's layout:
    ``batch_mean``, ``batch_rstd``, ``feature_mean``, ``feature_rstd``."""
    lay, w, b, eps, use, moving, w_F, w_B, sqrt_d = _prepare(
        x, weight, bias, batch_size, eps, training, moving_stats, flags, feature_axis, batch_stats,
        weight_offset, sqrt_d_scale)
    F, Bs = _all_stats(lay, eps, use, moving)
    gamma = np.ones(lay.d) if w is None else w
    beta = np.zeros(lay.d) if b is None else b
    x2 = lay.xt.reshape(lay.R, lay.d)
    y2 = np.empty_like(x2)
    _forward(x2, F[0], Bs[0], lay.Pm, gamma, beta, w_F, w_B, sqrt_d, y2)
    y = np.ascontiguousarray(np.moveaxis(y2.reshape(lay.t_shape), -1, lay.fa))
    stats = {"batch_mean": lay.to_x(Bs[0][MEAN], "batch"), "batch_rstd": lay.to_x(Bs[0][RSTD], "batch"),
             "feature_mean": lay.to_x(F[0][MEAN], "feature"), "feature_rstd": lay.to_x(F[0][RSTD], "feature")}
    return y, {k: np.ascontiguousarray(v) for k, v in stats.items()}


def batch_layer_norm(x, weight, bias, batch_size=None, eps=1e-3, *, training=True, moving_stats=None,
                     flags=(True, True, False, False), feature_axis=-1, batch_stats="position",
                     weight_offset=1e-4, sqrt_d_scale=True):
    """Batch Layer Normalization as coded by its authors
    (docs/ops/batch_layer_norm.md#bln-defaults); the math,
    shapes and conventions are in :mod:`refnorm.reference.batch_layer_norm`.

    Parameters
    ----------
    x : array ``(B, ..., d)`` (``feature_axis=-1``) or ``(N, C, *spatial)`` (``feature_axis=1``)
    weight, bias : ``(d,)`` or None (gamma = 1, beta = 0)
    batch_size : int >= 1 or None: the constructor constant B in ``w_F = 1/B - o``,
        ``w_B = 1 - (1/B + o)``; None means ``x.shape[0]``.  It may differ from
        ``x.shape[0]`` (only the weights use it).
    eps : float, inside the square root of both branches (Keras "offset" 1e-3)
    training : bool; True: current-batch statistics, differentiated through
    moving_stats : dict or None, keys ``batch_mean, batch_var, feature_mean, feature_var``
        (keepdims shapes in x's layout); read only when ``training=False``
    flags : 4 bools (batch_moving_mean, batch_moving_var, feature_moving_mean, feature_moving_var)
    feature_axis : int, not 0 (-1: Keras; 1: NCHW channels)
    batch_stats : ``"position"`` (axis 0 only, as coded) or ``"channel"`` (all non-feature axes)
    weight_offset : float, the ``o`` in the weights (1e-4)
    sqrt_d_scale : bool, divide by ``sqrt(d)`` (as coded) or not

    Returns
    -------
    float64 array shaped like ``x``.
    """
    return batch_layer_norm_stats(x, weight, bias, batch_size, eps, training=training, moving_stats=moving_stats,
                                  flags=flags, feature_axis=feature_axis, batch_stats=batch_stats,
                                  weight_offset=weight_offset, sqrt_d_scale=sqrt_d_scale)[0]


def batch_layer_norm_backward(dy, x, weight, bias, batch_size=None, eps=1e-3, *, training=True, moving_stats=None,
                              flags=(True, True, False, False), feature_axis=-1, batch_stats="position",
                              weight_offset=1e-4, sqrt_d_scale=True):
    """Gradients of :func:`batch_layer_norm` for the cotangent ``dy``:
    ``{"x": dx, "weight": dgamma, "bias": dbeta}`` (the last two only when
    given), float64.  Moving statistics are constants
    (docs/ops/batch_layer_norm.md#bln-backward)."""
    lay, w, b, eps, use, moving, w_F, w_B, sqrt_d = _prepare(
        x, weight, bias, batch_size, eps, training, moving_stats, flags, feature_axis, batch_stats,
        weight_offset, sqrt_d_scale)
    dya = V.check_dy(dy, lay.shape)
    dyt = np.ascontiguousarray(np.moveaxis(dya, lay.fa, -1))
    F, Bs = _all_stats(lay, eps, use, moving)
    gamma = np.ones(lay.d) if w is None else w
    dxt = np.empty_like(lay.xt)
    d = lay.d
    _branch_dx(lay.feature_view(dyt), lay.feature_view(lay.xt), gamma, d, w_F / sqrt_d, F[0], F[1], use[2], use[3],
               False, lay.feature_view(dxt))
    _branch_dx(lay.batch_view(dyt), lay.batch_view(lay.xt), gamma, d, w_B / sqrt_d, Bs[0], Bs[1], use[0], use[1],
               True, lay.batch_view(dxt))
    out = {"x": np.ascontiguousarray(np.moveaxis(dxt, -1, lay.fa))}
    if w is not None or b is not None:
        dgamma, dbeta = np.empty(d), np.empty(d)
        _affine(dyt.reshape(lay.R, d), lay.xt.reshape(lay.R, d), F[0], Bs[0], lay.Pm, w_F, w_B, sqrt_d, dgamma,
                dbeta)
        if w is not None:
            out["weight"] = dgamma
        if b is not None:
            out["bias"] = dbeta
    return out


def batch_layer_norm_batch_stats(x, *, feature_axis=-1, batch_stats="position"):
    """The current statistics a training step adds to the moving sums
    (docs/ops/batch_layer_norm.md#bln-moving-statistics):
    ``{"batch_mean", "batch_var", "feature_mean", "feature_var"}``, biased
    variances, keepdims shapes in x's layout."""
    xa = V.check_input("x", x, min_ndim=2, layout="(B, ..., d) features last, or (N, C, *spatial) with "
                                                  "feature_axis=1")
    fa = _feature_axis(feature_axis, xa.ndim)
    mode = _batch_stats_mode(batch_stats)
    lay = _Layout(xa, fa, mode)
    out = {}
    for which, view in (("batch", lay.batch_view(lay.xt)), ("feature", lay.feature_view(lay.xt))):
        n = view.shape[0] * view.shape[2]
        st = _moments(view, 0.0)
        mean = st[MEAN]
        var = np.empty(st.shape[1])
        if n > 0:
            K.divide_m2(st, n, var)
        else:
            var[:] = np.nan
        out[f"{which}_mean"] = np.ascontiguousarray(lay.to_x(mean, which))
        out[f"{which}_var"] = np.ascontiguousarray(lay.to_x(var, which))
    return out


def batch_layer_norm_moving_stats(sums, steps, batch_size, *, feature_var_correction=True):
    """The per-epoch moving statistics of the Keras callback
    (docs/ops/batch_layer_norm.md#bln-moving-statistics) from the
    sums of :func:`batch_layer_norm_batch_stats` over the ``steps`` batches of an epoch::

        batch_mean   = S_Bmean / steps
        batch_var    = S_Bvar * B / ((B - 1) * steps)
        feature_mean = S_Fmean / steps
        feature_var  = S_Fvar * B / ((B - 1) * steps)    (S_Fvar / steps if not feature_var_correction)

    ``B = batch_size`` (the constructor constant, >= 2).  Difference from the
    Keras callback: there the update is guarded by ``batch_count > 0``, which is
    only set at batch index 1, so an epoch of ``steps == 1`` leaves the raw sums
    uncorrected; here the formula applies for every ``steps >= 1``.
    """
    if not isinstance(sums, Mapping):
        raise TypeError(f"sums must be a dict with keys {STAT_KEYS}, got {type(sums).__name__}")
    missing = [k for k in STAT_KEYS if k not in sums]
    unknown = sorted(set(sums) - set(STAT_KEYS))
    if missing or unknown:
        raise ValueError(f"sums must have exactly the keys {STAT_KEYS}; missing {missing}, unknown {unknown}")
    S = {k: V.to_f64(V.as_float_array(f"sums[{k!r}]", sums[k])) for k in STAT_KEYS}
    steps = V.check_int("steps", steps, minimum=1)
    B = V.check_int("batch_size", batch_size, minimum=2)
    fvc = V.check_bool("feature_var_correction", feature_var_correction)
    return {
        "batch_mean": S["batch_mean"] / steps,
        "batch_var": S["batch_var"] * B / ((B - 1) * steps),
        "feature_mean": S["feature_mean"] / steps,
        "feature_var": S["feature_var"] * B / ((B - 1) * steps) if fvc else S["feature_var"] / steps,
    }


# ============================================================================= forward mode and second order
#
# Forward mode (docs/ops/batch_layer_norm.md#bln-jvp).  One branch, one set of n elements, along
# the tangent ``tx`` (moving statistics are constants: their tangents are 0)::
#
#     tmean = mean(tx)                                       (always: the current mean's tangent)
#     tmu   = tmean, or 0 with a moving mean                 (tangent of mean_use)
#     tv    = (2/n) sum (x - mean_cur)(tx - tmean), or 0 with a moving variance
#     tr    = -r^3 tv / 2                                    (r = (var_use + eps)^(-1/2))
#     txhat = r (tx - tmu) + (x - mean_use) tr
#
# and ``ty = (tgamma * z + gamma * (w_F txhat_F + w_B txhat_B)) / sqrt_d + tbeta``.
#
# Second order (docs/ops/batch_layer_norm.md#bln-second-order): the VJP of the backward for the
# cotangents ``(cx, cgamma, cbeta)`` of ``(dx, dgamma, dbeta)``.  Its dy part is the JVP along
# ``t = c``; its (x, gamma) part is the derivative of the backward along ``t = c`` (the Hessian of
# ``<dy, y>`` is symmetric), and its beta part is 0.  Per branch, with ``g = coef gamma dy``,
# ``tg = coef tgamma dy``, ``c2 = mean(g (x - mean_use))`` (so ``c3 = r^3 c2``)::
#
#     tc1 = mean(tg)                                   (0 with a moving mean)
#     tc2 = mean(tg (x - mean_use) + g (tx - tmu))
#     tc3 = 3 r^2 tr c2 + r^3 tc2                      (0 with a moving variance)
#     ddx = tr (g - c1) + r (tg - tc1) - tc3 (x - mean_cur) - c3 (tx - tmean)
#     ddgamma_j = sum dy (w_F txhat_F + w_B txhat_B) / sqrt_d,   ddbeta = 0


@pjit
def _branch_tangent(x, tx, use, cur, var_const, tmean, tr):
    """Per set of one branch on the view ``(A, B, S)``: ``tmean = mean(tx)`` and
    ``tr = -r^3 tv / 2`` with ``tv = (2/n) sum (x - mean_cur)(tx - tmean)``
    (``tr = 0`` with a moving variance), two compensated passes, one thread
    per set.  ``use``/``cur`` as in :func:`_branch_dx`."""
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        tmean[b] = 0.0
        tr[b] = 0.0
        if n == 0:
            continue
        th = 0.0
        tl = 0.0
        for a in range(A):
            for s in range(S):
                th, e = two_sum(th, tx[a, b, s])
                tl += e
        mh, ml = dd_div_int(th, tl, n)
        tmean[b] = mh + ml
        if var_const:
            continue
        ch = cur[MEAN, b]
        cl = cur[MEAN_LO, b]
        vh = 0.0
        vl = 0.0
        for a in range(A):
            for s in range(S):
                xc_cur = sub_dd_round(x[a, b, s], ch, cl)
                vh, e = two_sum(vh, xc_cur * sub_dd_round(tx[a, b, s], mh, ml))
                vl += e
        qh, ql = dd_div_int(vh, vl, n)
        rh = use[RSTD, b]
        tr[b] = -(rh * rh * rh) * (qh + ql)  # -r^3/2 * tv, tv = 2 * mean(xc_cur * (tx - tmean))


@jit
def _txhat(xv, txv, mh, ml, rh, tmu, tr):
    """The tangent of one ``xhat = (x - mean_use) r``: ``r (tx - tmu) + (x - mean_use) tr``."""
    return rh * (txv - tmu) + sub_dd_round(xv, mh, ml) * tr


@pjit
def _jvp(x2, tx2, fstats, bstats, ftmu, ftr, btmu, btr, Pm, weight, tweight, tbias, w_F, w_B, sqrt_d, ty2):
    """``ty = (tgamma * z + gamma * tz) / sqrt_d + tbeta`` on ``(R, d)``,
    ``tz = w_F txhat_F + w_B txhat_B``; ``z`` as in :func:`_forward`; the set
    tangents ``tmu``, ``tr`` of :func:`_branch_tangent` (``tmu`` zeroed for a
    moving mean), indexed like the statistics."""
    R, d = x2.shape
    for r in prange(R):
        base = (r % Pm) * d
        for j in range(d):
            k = base + j
            xv = x2[r, j]
            xhat_f = _xhat(xv, fstats[MEAN, r], fstats[MEAN_LO, r], fstats[RSTD, r], fstats[RSTD_LO, r])
            xhat_b = _xhat(xv, bstats[MEAN, k], bstats[MEAN_LO, k], bstats[RSTD, k], bstats[RSTD_LO, k])
            z = w_F * xhat_f + w_B * xhat_b
            tf = _txhat(xv, tx2[r, j], fstats[MEAN, r], fstats[MEAN_LO, r], fstats[RSTD, r], ftmu[r], ftr[r])
            tb = _txhat(xv, tx2[r, j], bstats[MEAN, k], bstats[MEAN_LO, k], bstats[RSTD, k], btmu[k], btr[k])
            tz = w_F * tf + w_B * tb
            ty2[r, j] = (tweight[j] * z + weight[j] * tz) / sqrt_d + tbias[j]


@pjit
def _branch_dx_tangent(dy, x, tx, weight, tweight, d, coef, use, cur, tmean, tr, mean_const, var_const,
                       accumulate, out):
    """One branch's part of ``ddx`` on the view ``(A, B, S)`` (rule above): the
    derivative of :func:`_branch_dx` along ``(tx, tgamma)``; ``tmean``, ``tr``
    from :func:`_branch_tangent`.  Two passes per set: the four compensated
    sums ``sum g``, ``sum tg``, ``sum g xc_use``, ``sum tg xc_use + g (tx - tmu)``,
    then the output (adds into ``out`` when ``accumulate``)."""
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        mh = use[MEAN, b]
        ml = use[MEAN_LO, b]
        ch = cur[MEAN, b]
        cl = cur[MEAN_LO, b]
        rh = use[RSTD, b]
        tm = tmean[b]
        tmu = 0.0 if mean_const else tm
        trb = tr[b]
        c1 = 0.0
        tc1 = 0.0
        c3 = 0.0
        tc3 = 0.0
        if not (mean_const and var_const) and n > 0:
            s1h = 0.0
            s1l = 0.0
            t1h = 0.0
            t1l = 0.0
            s2h = 0.0
            s2l = 0.0
            t2h = 0.0
            t2l = 0.0
            for a in range(A):
                for s in range(S):
                    k = (b * S + s) % d
                    g = coef * (weight[k] * dy[a, b, s])
                    tg = coef * (tweight[k] * dy[a, b, s])
                    xc_use = sub_dd_round(x[a, b, s], mh, ml)
                    s1h, e = two_sum(s1h, g)
                    s1l += e
                    t1h, e = two_sum(t1h, tg)
                    t1l += e
                    s2h, e = two_sum(s2h, g * xc_use)
                    s2l += e
                    t2h, e = two_sum(t2h, tg * xc_use + g * (tx[a, b, s] - tmu))
                    t2l += e
            if not mean_const:
                qh, ql = dd_div_int(s1h, s1l, n)
                c1 = qh + ql
                qh, ql = dd_div_int(t1h, t1l, n)
                tc1 = qh + ql
            if not var_const:
                qh, ql = dd_div_int(s2h, s2l, n)
                c2 = qh + ql
                qh, ql = dd_div_int(t2h, t2l, n)
                tc2 = qh + ql
                r3 = rh * rh * rh
                c3 = r3 * c2
                tc3 = 3.0 * (rh * rh) * trb * c2 + r3 * tc2
        for a in range(A):
            for s in range(S):
                k = (b * S + s) % d
                g = coef * (weight[k] * dy[a, b, s])
                tg = coef * (tweight[k] * dy[a, b, s])
                xc_cur = sub_dd_round(x[a, b, s], ch, cl)
                # t of term 1 + term 2, r (g - c1); t of term 3, -c3 xc_cur
                v = trb * (g - c1) + rh * (tg - tc1) - tc3 * xc_cur - c3 * (tx[a, b, s] - tm)
                if accumulate:
                    out[a, b, s] += v
                else:
                    out[a, b, s] = v


@pjit
def _affine_tangent(dy2, x2, tx2, fstats, bstats, ftmu, ftr, btmu, btr, Pm, w_F, w_B, sqrt_d, ddweight):
    """``ddweight_j = sum_r dy * tz / sqrt_d`` (``tz`` as in :func:`_jvp`), r
    ascending, compensated, one thread per feature."""
    R, d = x2.shape
    for j in prange(d):
        wh = 0.0
        wl = 0.0
        for r in range(R):
            k = (r % Pm) * d + j
            xv = x2[r, j]
            tf = _txhat(xv, tx2[r, j], fstats[MEAN, r], fstats[MEAN_LO, r], fstats[RSTD, r], ftmu[r], ftr[r])
            tb = _txhat(xv, tx2[r, j], bstats[MEAN, k], bstats[MEAN_LO, k], bstats[RSTD, k], btmu[k], btr[k])
            wh, e = two_sum(wh, dy2[r, j] * (w_F * tf + w_B * tb))
            wl += e
        ddweight[j] = (wh + wl) / sqrt_d


def _set_tangents(lay, txt, F, Bs, use):
    """``(tmean, tmu, tr)`` of the feature and the batch branch for the features-last tangent ``txt``."""
    out = []
    for view, st, mean_const, var_const in ((lay.feature_view, F, use[2], use[3]),
                                            (lay.batch_view, Bs, use[0], use[1])):
        B = st[0].shape[1]
        tmean, tr = np.empty(B), np.empty(B)
        _branch_tangent(view(lay.xt), view(txt), st[0], st[1], var_const, tmean, tr)
        out.append((tmean, np.zeros(B) if mean_const else tmean, tr))
    return out


def _directions(kind, value, lay, x, weight, bias):
    """Checked directions: the x direction features last, the parameters' (zeros when absent)."""
    D = V.check_directions(kind, value, {"x": x, "weight": weight, "bias": bias})
    tx = D["x"]
    txt = np.zeros(lay.t_shape) if tx is None else np.ascontiguousarray(np.moveaxis(tx, lay.fa, -1))
    tw = np.zeros(lay.d) if D["weight"] is None else D["weight"]
    tb = np.zeros(lay.d) if D["bias"] is None else D["bias"]
    return txt, tw, tb


def batch_layer_norm_jvp(tangents, x, weight, bias, batch_size=None, eps=1e-3, *, training=True,
                         moving_stats=None, flags=(True, True, False, False), feature_axis=-1,
                         batch_stats="position", weight_offset=1e-4, sqrt_d_scale=True):
    """Forward-mode derivative of :func:`batch_layer_norm`: ``(y, ty)``.

    ``tangents``: dict over ``"x"``, ``"weight"``, ``"bias"`` (each shaped like
    its argument; not for an argument that is None); a missing key is a zero
    tangent.  Other arguments as :func:`batch_layer_norm`; ``y`` is
    bit-identical to its result, ``ty`` float64 shaped like ``x``.  Current
    statistics are differentiated through, moving statistics are constants
    (docs/ops/batch_layer_norm.md#bln-jvp)."""
    lay, w, b, eps, use, moving, w_F, w_B, sqrt_d = _prepare(
        x, weight, bias, batch_size, eps, training, moving_stats, flags, feature_axis, batch_stats,
        weight_offset, sqrt_d_scale)
    txt, tw, tb = _directions("tangents", tangents, lay, x, weight, bias)
    F, Bs = _all_stats(lay, eps, use, moving)
    gamma = np.ones(lay.d) if w is None else w
    beta = np.zeros(lay.d) if b is None else b
    R, d = lay.R, lay.d
    x2 = lay.xt.reshape(R, d)
    y2 = np.empty_like(x2)
    _forward(x2, F[0], Bs[0], lay.Pm, gamma, beta, w_F, w_B, sqrt_d, y2)  # as batch_layer_norm_stats
    y = np.ascontiguousarray(np.moveaxis(y2.reshape(lay.t_shape), -1, lay.fa))
    (_, ftmu, ftr), (_, btmu, btr) = _set_tangents(lay, txt, F, Bs, use)
    ty2 = np.empty_like(x2)
    _jvp(x2, txt.reshape(R, d), F[0], Bs[0], ftmu, ftr, btmu, btr, lay.Pm, gamma, tw, tb, w_F, w_B, sqrt_d, ty2)
    return y, np.ascontiguousarray(np.moveaxis(ty2.reshape(lay.t_shape), -1, lay.fa))


def batch_layer_norm_double_backward(cotangents, dy, x, weight, bias, batch_size=None, eps=1e-3, *,
                                     training=True, moving_stats=None, flags=(True, True, False, False),
                                     feature_axis=-1, batch_stats="position", weight_offset=1e-4,
                                     sqrt_d_scale=True):
    """Second order: the VJP of :func:`batch_layer_norm_backward`.

    For ``L = <cx, dx> + <cweight, dweight> + <cbias, dbias>`` (``cotangents``
    keyed ``"x"``, ``"weight"``, ``"bias"``; missing keys are zero), returns
    ``{"dy", "x", "weight", "bias"}`` (``"weight"``/``"bias"`` only when given;
    ``"bias"`` is identically 0), float64.  Training and inference (moving
    statistics are constants) alike; derivation in
    docs/ops/batch_layer_norm.md#bln-second-order."""
    lay, w, b, eps, use, moving, w_F, w_B, sqrt_d = _prepare(
        x, weight, bias, batch_size, eps, training, moving_stats, flags, feature_axis, batch_stats,
        weight_offset, sqrt_d_scale)
    dya = V.check_dy(dy, lay.shape)
    ctx, cw, cb = _directions("cotangents", cotangents, lay, x, weight, bias)
    dyt = np.ascontiguousarray(np.moveaxis(dya, lay.fa, -1))
    F, Bs = _all_stats(lay, eps, use, moving)
    gamma = np.ones(lay.d) if w is None else w
    R, d = lay.R, lay.d
    x2, cx2 = lay.xt.reshape(R, d), ctx.reshape(R, d)
    (ftm, ftmu, ftr), (btm, btmu, btr) = _set_tangents(lay, ctx, F, Bs, use)
    ddy2 = np.empty_like(x2)  # dL/ddy = J c
    _jvp(x2, cx2, F[0], Bs[0], ftmu, ftr, btmu, btr, lay.Pm, gamma, cw, cb, w_F, w_B, sqrt_d, ddy2)
    ddxt = np.empty_like(lay.xt)
    fv, bv = lay.feature_view, lay.batch_view
    _branch_dx_tangent(fv(dyt), fv(lay.xt), fv(ctx), gamma, cw, d, w_F / sqrt_d, F[0], F[1], ftm, ftr,
                       use[2], use[3], False, fv(ddxt))
    _branch_dx_tangent(bv(dyt), bv(lay.xt), bv(ctx), gamma, cw, d, w_B / sqrt_d, Bs[0], Bs[1], btm, btr,
                       use[0], use[1], True, bv(ddxt))
    out = {"dy": np.ascontiguousarray(np.moveaxis(ddy2.reshape(lay.t_shape), -1, lay.fa)),
           "x": np.ascontiguousarray(np.moveaxis(ddxt, -1, lay.fa))}
    if w is not None:
        ddw = np.empty(d)
        _affine_tangent(dyt.reshape(R, d), x2, cx2, F[0], Bs[0], ftmu, ftr, btmu, btr, lay.Pm, w_F, w_B, sqrt_d,
                        ddw)
        out["weight"] = ddw
    if b is not None:
        out["bias"] = np.zeros(d)  # y is linear in beta and beta meets nothing else
    return out


__all__ = ["batch_layer_norm", "batch_layer_norm_backward", "batch_layer_norm_batch_stats",
           "batch_layer_norm_double_backward", "batch_layer_norm_jvp", "batch_layer_norm_moving_stats",
           "batch_layer_norm_stats"]
