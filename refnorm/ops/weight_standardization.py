"""Weight Standardization / Scaled WS: the fast path.

The definition, the styles and every option are documented in
:mod:`refnorm.reference.weight_standardization`.  Here the weight
``(C_out, *rest)`` is viewed as ``(1, C_out, n)`` (``n = fan_in``): each output
channel is one reduction set.  Its mean and centred sum of squares ``m2`` come
from :func:`refnorm.ops._kernels.moments` (double-double, compensated), the
per-channel scale ``r`` (and its derivative ``dr/dv``) from :func:`_scale`,
and ``W_hat = gain * ((W - mean) * r)`` from :func:`refnorm.ops._kernels.forward`
(per-channel affine ``gain``, zero bias).

Backward (derivation, per channel, ``gd = gain * dy``, ``wc = W - mean``,
``v = m2 / (n - delta)``)::

    W_hat_j = gain * wc_j * r(v)
    dL/dwc_j (direct)  = gd_j * r
    dL/dr              = c2 = sum_j gd_j * wc_j
    dL/dv              = c2 * kv,   kv = dr/dv           (by eps_mode, below)
    dv/dW_j            = 2 wc_j / (n - delta)            (sum_j wc_j = 0)
    dW_j = r * (gd_j - c1) + c3 * wc_j,   c1 = mean(gd),  c3 = 2 kv c2 / (n - delta)
    dgain = r * sum_j dy_j * wc_j

    kv: floor     -r^3 s / 2 * ind,  ind = 1 (s v > eps), 0.5 (s v == eps, tie), 0 (floor active)
        variance  -r^3 s / 2
        std       -r^2 sqrt(s) / (2 sqrt(v)), and 0 when m2 == 0 (constant channel: the
                  std term is second order there, c2 == 0; PyTorch's std backward
                  masks it to 0 too, whereas autograd's VJP of the reference gives NaN)

The tie is decided on the double-double value of ``s * v`` (exactly equal to
``eps``), the floor's comparison is exact.

Forward mode and second order (``weight_standardization_jvp``,
``weight_standardization_double_backward``): the section at the end of this
module (docs/ops/weight_standardization.md#ws-jvp).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..reference.weight_standardization import STYLES, resolve_options
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, dd_mul_round, renormalize, rsqrt_dd, sub_dd_round, two_prod, two_sum
from ._jit import pjit, prange
from ._sets import M2, M2_LO, MEAN, MEAN_LO, RSTD, RSTD_LO

MODE_FLOOR = 0
MODE_VARIANCE = 1
MODE_STD = 2
_MODES = {"floor": MODE_FLOOR, "variance": MODE_VARIANCE, "std": MODE_STD}
_ESTIMATORS = ("biased", "unbiased")


@pjit
def _scale(stats, n_div, s, eps, mode, kv):
    """Per channel: ``r`` (double-double) and ``kv = dr/dv`` (see module docstring),
    from the ``m2`` of the statistics array ``stats``.  ``r`` is written into its
    rows ``RSTD``, ``RSTD_LO``: it takes rstd's place in ``W_hat = gain * (wc * r)``
    (but differs from ``1/sqrt(var + eps)``: by ``eps_mode``, below)."""
    for i in prange(stats.shape[1]):
        vh, vl = dd_div_int(stats[M2, i], stats[M2_LO, i], n_div)  # (5) v = m2 / (n - delta)
        if mode == MODE_FLOOR:
            p, pe = two_prod(s, vh)  # (6) t = s * v, double-double
            th, tl = renormalize(p, pe + s * vl)
            if th > eps or (th == eps and tl > 0.0):
                ind = 1.0  # variance branch of max
                rh, rl = rsqrt_dd(th, tl)
            else:
                ind = 0.5 if (th == eps and tl == 0.0) else 0.0  # exact tie: jnp.maximum's 0.5/0.5
                rh, rl = rsqrt_dd(eps, 0.0)  # (7) r = rsqrt(max(s v, eps))
            r3 = rh * rh * rh
            kv[i] = -0.5 * r3 * s * ind
        elif mode == MODE_VARIANCE:
            ah, al = two_sum(vh, eps)  # v + eps
            ah, al = renormalize(ah, al + vl)
            p, pe = two_prod(s, ah)  # s * (v + eps)
            th, tl = renormalize(p, pe + s * al)
            rh, rl = rsqrt_dd(th, tl)  # (7) r = 1 / sqrt(s (v + eps))
            kv[i] = -0.5 * rh * rh * rh * s
        else:
            std = math.sqrt(vh + vl)
            rh = 1.0 / (math.sqrt(s) * (std + eps))  # (7) r = 1 / (sqrt(s) (std + eps))
            rl = 0.0
            if stats[M2, i] == 0.0:
                kv[i] = 0.0  # constant channel: c2 == 0 and the std term is second order
            else:
                kv[i] = -0.5 * rh * rh * math.sqrt(s) / std
        stats[RSTD, i] = rh
        stats[RSTD_LO, i] = rl


@pjit
def _backward(dy, x, stats, kv, gain, n_div, dx, dgain):
    """``dx = dW`` and the raw ``dgain`` on the view ``(C_out, n)``, one thread
    per channel.  ``x`` is the weight ``W`` being standardized (the input of
    this normalization); ``gain`` is its output scale, the ``weight`` of the
    other kernels, so ``g = gain * dy`` (``gd`` in the docstring); the scale
    ``r`` is in the rstd rows of ``stats`` (see :func:`_scale`)."""
    C, n = x.shape
    for i in prange(C):
        mh = stats[MEAN, i]
        ml = stats[MEAN_LO, i]
        w = gain[i]
        # pass 1: c1 = mean(g), c2 = sum(g * wc), c4 = sum(dy * wc), compensated
        s1h = 0.0
        s1l = 0.0
        s2h = 0.0
        s2l = 0.0
        s4h = 0.0
        s4l = 0.0
        for j in range(n):
            wc = sub_dd_round(x[i, j], mh, ml)  # (3) W - mean
            g = w * dy[i, j]
            s1h, e = two_sum(s1h, g)
            s1l += e
            s2h, e = two_sum(s2h, g * wc)
            s2l += e
            s4h, e = two_sum(s4h, dy[i, j] * wc)
            s4l += e
        c1h, c1l = dd_div_int(s1h, s1l, n)
        c1 = c1h + c1l
        c2 = s2h + s2l  # dL/dr; differs from mean(g * xhat): the sum of g * wc
        c3 = 2.0 * kv[i] * c2 / n_div  # dL/dv * dv/dwc / wc
        rh = stats[RSTD, i]  # r
        # pass 2: term 1 r*g, term 2 -r*c1 (mean path), term 3 c3*wc (variance path)
        for j in range(n):
            wc = sub_dd_round(x[i, j], mh, ml)
            g = w * dy[i, j]
            dx[i, j] = rh * (g - c1) + c3 * wc
        dgain[i] = dd_mul_round(s4h, s4l, rh, stats[RSTD_LO, i])  # r * sum(dy * wc)


def layout(weight_shape) -> L.Layout:
    """The weight viewed as ``(1, C_out, fan_in)``: each output channel is one
    set; ``gain``, ``mean`` and ``scale`` are per output channel."""
    C, n = weight_shape[0], V.prod(weight_shape[1:])
    return L.Layout(weight_shape, {"mean": (C,), "scale": (C,)}, (1, C, n), (C, 1, n), (0,))


def _prepare(weight, gain, eps, style, estimator, eps_mode, fan_in_scaling):
    wa = V.check_input("weight", weight, min_ndim=2, layout="(C_out, C_in/groups, *kernel)")
    C, n = wa.shape[0], V.prod(wa.shape[1:])
    g = V.check_param("gain", gain, (C,), "one value per output channel C_out")
    if not isinstance(style, str):
        raise TypeError(f"style must be a str, got {type(style).__name__} {style!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
    if estimator is not None and not isinstance(estimator, str):
        raise TypeError(f"estimator must be None, 'biased' or 'unbiased', got {type(estimator).__name__}")
    if eps_mode is not None and not isinstance(eps_mode, str):
        raise TypeError(f"eps_mode must be None, 'floor', 'variance' or 'std', got {type(eps_mode).__name__}")
    if estimator is not None and estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be None, 'biased' or 'unbiased', got {estimator!r}")
    if eps_mode is not None and eps_mode not in _MODES:
        raise ValueError(f"eps_mode must be None, 'floor', 'variance' or 'std', got {eps_mode!r}")
    if fan_in_scaling is not None:
        V.check_bool("fan_in_scaling", fan_in_scaling)
    eps = V.check_real("eps", eps, allow_none=True)
    if eps is not None and eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    est, mode, eps, fan = resolve_options(style, estimator, eps_mode, eps, fan_in_scaling)
    if n == 0:
        raise ValueError(f"weight must have at least one element per output channel, got shape {tuple(wa.shape)}")
    n_div = n - 1 if est == "unbiased" else n
    if n_div == 0:
        raise ValueError("estimator 'unbiased' needs fan_in = prod(weight.shape[1:]) >= 2, got weight of shape "
                         f"{tuple(wa.shape)}")
    w3 = V.to_f64(wa).reshape(layout(wa.shape).view)
    opts = dict(n_div=n_div, s=float(n) if fan else 1.0, eps=float(eps), mode=_MODES[mode])
    return wa.shape, w3, g, opts


def _stats(w3, opts):
    C = w3.shape[1]
    st = K.empty_stats(C)
    K.moments(w3, True, 0.0, st)  # (2)-(4); its rstd rows are then replaced by the scale r
    kv = np.empty(C)
    _scale(st, opts["n_div"], opts["s"], opts["eps"], opts["mode"], kv)
    return st, kv


def weight_standardization_stats(weight, gain=None, eps=None, style="deepmind", *, estimator=None,
                                 eps_mode=None, fan_in_scaling=None):
    """``W_hat`` and the per-output-channel ``mean`` and ``scale`` (``r``, without the gain).

    Arguments as :func:`weight_standardization`.  Returns ``(W_hat, {"mean": mean,
    "scale": r})``: ``W_hat`` float64 shaped like ``weight``
    (``(C_out, C_in/groups, *kernel)``), ``mean`` and ``scale`` of shape ``(C_out,)``."""
    shape, w3, g, opts = _prepare(weight, gain, eps, style, estimator, eps_mode, fan_in_scaling)
    C, n = w3.shape[1], w3.shape[2]
    st, _ = _stats(w3, opts)
    gv = np.ones(C) if g is None else g
    y3 = np.empty_like(w3)
    K.forward(w3, st, gv, np.zeros(C), C, 1, n, y3)  # (8)-(9) gain*(wc*r)
    return y3.reshape(shape), {"mean": st[MEAN], "scale": st[RSTD]}


def weight_standardization(weight, gain=None, eps=None, style="deepmind", *, estimator=None, eps_mode=None,
                           fan_in_scaling=None):
    """Standardize a conv/linear weight per output channel (see the reference module for the math).

    Parameters
    ----------
    weight : array ``(C_out, C_in/groups, *kernel)`` (OIHW) or ``(out, in)``
    gain : array ``(C_out,)`` or None (= 1)
    eps : float >= 0 or None (the style's default: deepmind 1e-4, timm 1e-6, qiao 1e-5)
    style : ``"deepmind"`` (biased, floor ``max(N var, eps)``, fan-in scaled),
        ``"timm"`` (biased, ``N (var + eps)``), ``"qiao"`` (unbiased, ``std + eps``, not fan-in scaled)
    estimator : None, ``"biased"`` or ``"unbiased"`` (overrides the style)
    eps_mode : None, ``"floor"``, ``"variance"`` or ``"std"`` (overrides the style)
    fan_in_scaling : None or bool (overrides the style; divides the variance term by fan_in)

    Returns
    -------
    float64 array shaped like ``weight``.
    """
    return weight_standardization_stats(weight, gain, eps, style, estimator=estimator, eps_mode=eps_mode,
                                        fan_in_scaling=fan_in_scaling)[0]


def weight_standardization_backward(dy, weight, gain=None, eps=None, style="deepmind", *, estimator=None,
                                    eps_mode=None, fan_in_scaling=None):
    """Gradients of :func:`weight_standardization` for the cotangent ``dy``:
    ``{"weight": dW, "gain": dgain}`` (``"gain"`` only when given), float64.

    Gradients flow through the mean and the variance.  DeepMind floor: zero
    gradient w.r.t. the variance while the floor is active; at an exact tie
    ``N var == eps`` half of it (``jnp.maximum`` convention).  ``eps_mode="std"``
    on a constant channel: the std term is taken as 0 (as PyTorch's std backward).

    Shapes: ``dy`` and ``dW`` like ``weight`` (``(C_out, C_in/groups, *kernel)``);
    ``dgain`` ``(C_out,)``.
    """
    shape, w3, g, opts = _prepare(weight, gain, eps, style, estimator, eps_mode, fan_in_scaling)
    C, n = w3.shape[1], w3.shape[2]
    dy2 = V.check_dy(dy, shape).reshape(C, n)
    st, kv = _stats(w3, opts)
    gv = np.ones(C) if g is None else g
    dw = np.empty((C, n))
    dgain = np.empty(C)
    _backward(dy2, w3.reshape(C, n), st, kv, gv, opts["n_div"], dw, dgain)
    out = {"weight": dw.reshape(shape)}
    if g is not None:
        out["gain"] = dgain
    return out


# ============================================================================= forward mode and second order
#
# Forward mode (derivation: docs/ops/weight_standardization.md#ws-jvp), per channel, for the
# tangents ``tW`` of the weight and ``tg`` of the gain::
#
#     twc_j = tW_j - mean(tW)                              (the centring is linear)
#     tv    = (2 / (n - delta)) * sum_j wc_j * twc_j        (v = m2 / (n - delta))
#     tr    = kv * tv                                      (kv = dr/dv, as the backward's)
#     tW_hat_j = tg * (wc_j * r) + gain * (r * twc_j + wc_j * tr)
#
# Second order (docs/ops/weight_standardization.md#ws-second-order): the VJP of the backward for
# the cotangents ``(cW, cg)`` of ``(dW, dgain)``.  Because ``backward(dy) = J^T dy``,
# ``L = <c, J^T dy> = <J c, dy>``: its gradient w.r.t. dy is the JVP along ``t = c``, and its
# gradient w.r.t. (W, gain) is the derivative of the backward along ``t = c`` (the Hessian of
# ``<dy, W_hat>`` is symmetric).  With ``kv2 = d kv / dv`` (:func:`_scale_curvature`)::
#
#     tgd_j = tg * dy_j,   tc1 = tg * mean(dy),   tc2 = sum_j (tgd_j wc_j + gd_j twc_j)
#     tkv   = kv2 * tv,    tc3 = 2 (tkv c2 + kv tc2) / (n - delta)
#     ddW_j = tr (gd_j - c1) + r (tgd_j - tc1) + tc3 wc_j + c3 twc_j
#     ddgain = tr * sum_j dy_j wc_j + r * sum_j dy_j twc_j


@pjit
def _scale_curvature(stats, kv, n_div, mode, kv2):
    """``kv2 = d^2 r / dv^2`` per channel, from ``r`` (rows ``RSTD`` of ``stats``)
    and ``kv = dr/dv`` of :func:`_scale`.

    ``floor`` and ``variance``: ``r = a^(-1/2)`` with ``a`` affine in ``v``
    (``s v`` or ``s (v + eps)``), so ``dr/da = -r^3/2``, ``d2r/da2 = 3 r^5/4
    = 3 (dr/da)^2 / r`` and ``kv2 = 3 kv^2 / r`` (``da/dv = s * ind`` enters
    squared: at the floor's exact tie ``ind^2 = 1/4``, as autograd's
    reverse-over-reverse of ``maximum``; 0 while the floor is active).
    ``std``: ``r = 1 / (sqrt(s) (sqrt(v) + eps))``, ``kv = -r^2 sqrt(s) / (2 sqrt(v))``;
    differentiating ``r^2`` and ``v^(-1/2)`` gives ``kv2 = 2 kv^2 / r - kv / (2 v)``,
    and 0 on a constant channel (``m2 == 0``, where ``kv`` is 0 by convention)."""
    for i in prange(stats.shape[1]):
        r = stats[RSTD, i]
        k = kv[i]
        if mode == MODE_STD:
            if stats[M2, i] == 0.0:
                kv2[i] = 0.0
            else:
                vh, vl = dd_div_int(stats[M2, i], stats[M2_LO, i], n_div)
                kv2[i] = 2.0 * k * k / r - k / (2.0 * (vh + vl))
        else:
            kv2[i] = 3.0 * k * k / r


@pjit
def _jvp(x, tx, stats, kv, gain, tgain, n_div, ty):
    """``ty = tW_hat`` on the view ``(C_out, n)``, one thread per channel (rule
    above).  ``x`` is the weight ``W``, ``tx`` its tangent; ``gain``/``tgain``
    the gain (ones without one) and its tangent (zeros).  Three passes over the
    channel: the mean of ``tW``; ``sum wc * twc`` (compensated) for ``tv``; the
    output, whose ``wc * r`` is the forward's ``xhat`` (same rounding)."""
    C, n = x.shape
    for i in prange(C):
        mh = stats[MEAN, i]
        ml = stats[MEAN_LO, i]
        rh = stats[RSTD, i]
        rl = stats[RSTD_LO, i]
        # pass 1: mean(tW)
        th = 0.0
        tl = 0.0
        for j in range(n):
            th, e = two_sum(th, tx[i, j])
            tl += e
        mth, mtl = dd_div_int(th, tl, n)
        # pass 2: tv = 2 sum(wc * twc) / n_div
        sh = 0.0
        sl = 0.0
        for j in range(n):
            wc = sub_dd_round(x[i, j], mh, ml)  # W - mean
            twc = sub_dd_round(tx[i, j], mth, mtl)  # tW - mean(tW)
            sh, e = two_sum(sh, wc * twc)
            sl += e
        tv = 2.0 * (sh + sl) / n_div
        tr = kv[i] * tv  # dr = kv dv
        w = gain[i]
        tw = tgain[i]
        # pass 3: term 1 tg*xhat (the gain), term 2 gain*r*twc (direct), term 3 gain*wc*tr (scale)
        for j in range(n):
            d, de = two_sum(x[i, j], -mh)
            wc = d + (de - ml)
            xhat = dd_mul_round(d, de - ml, rh, rl)  # the forward's wc * r
            twc = sub_dd_round(tx[i, j], mth, mtl)
            ty[i, j] = tw * xhat + w * (rh * twc + wc * tr)


@pjit
def _double_backward(dy, x, tx, stats, kv, kv2, gain, tgain, n_div, ddx, ddgain):
    """The parameter part of the second order on the view ``(C_out, n)``, one
    thread per channel: ``ddx = ddW`` and ``ddgain`` (rule above) for the
    cotangent ``dy`` of the forward and the cotangents ``tx = cW``, ``tgain = cg``
    of the backward's outputs, which act as the direction ``t``."""
    C, n = x.shape
    for i in prange(C):
        mh = stats[MEAN, i]
        ml = stats[MEAN_LO, i]
        rh = stats[RSTD, i]  # r
        w = gain[i]
        tw = tgain[i]
        # pass 1: mean(tW), c1 = mean(gd), mean(dy)
        th = 0.0
        tl = 0.0
        s1h = 0.0
        s1l = 0.0
        s0h = 0.0
        s0l = 0.0
        for j in range(n):
            th, e = two_sum(th, tx[i, j])
            tl += e
            s1h, e = two_sum(s1h, w * dy[i, j])
            s1l += e
            s0h, e = two_sum(s0h, dy[i, j])
            s0l += e
        mth, mtl = dd_div_int(th, tl, n)
        c1h, c1l = dd_div_int(s1h, s1l, n)
        c1 = c1h + c1l  # mean(gd)
        m0h, m0l = dd_div_int(s0h, s0l, n)
        tc1 = tw * (m0h + m0l)  # t mean(gd) = tg mean(dy)
        # pass 2: sum wc twc (tv), c2 = sum gd wc, sum dy wc, sum gd twc, sum dy twc
        svh = 0.0
        svl = 0.0
        s2h = 0.0
        s2l = 0.0
        s4h = 0.0
        s4l = 0.0
        s5h = 0.0
        s5l = 0.0
        s6h = 0.0
        s6l = 0.0
        for j in range(n):
            wc = sub_dd_round(x[i, j], mh, ml)
            twc = sub_dd_round(tx[i, j], mth, mtl)
            g = w * dy[i, j]
            svh, e = two_sum(svh, wc * twc)
            svl += e
            s2h, e = two_sum(s2h, g * wc)
            s2l += e
            s4h, e = two_sum(s4h, dy[i, j] * wc)
            s4l += e
            s5h, e = two_sum(s5h, g * twc)
            s5l += e
            s6h, e = two_sum(s6h, dy[i, j] * twc)
            s6l += e
        tv = 2.0 * (svh + svl) / n_div
        tr = kv[i] * tv  # t r
        tkv = kv2[i] * tv  # t kv
        c2 = s2h + s2l
        c3 = 2.0 * kv[i] * c2 / n_div
        tc2 = tw * (s4h + s4l) + (s5h + s5l)  # sum tgd wc + gd twc
        tc3 = 2.0 * (tkv * c2 + kv[i] * tc2) / n_div
        # pass 3: t of r (gd - c1) + c3 wc
        for j in range(n):
            wc = sub_dd_round(x[i, j], mh, ml)
            twc = sub_dd_round(tx[i, j], mth, mtl)
            g = w * dy[i, j]
            ddx[i, j] = tr * (g - c1) + rh * (tw * dy[i, j] - tc1) + tc3 * wc + c3 * twc
        ddgain[i] = tr * (s4h + s4l) + rh * (s6h + s6l)


def _directions(kind, value, weight, gain, C, n):
    """The checked directions as ``(C, n)`` and ``(C,)`` float64 arrays (zeros when absent)."""
    D = V.check_directions(kind, value, {"weight": weight, "gain": gain})
    tw = np.zeros((C, n)) if D["weight"] is None else D["weight"].reshape(C, n)
    tg = np.zeros(C) if D["gain"] is None else D["gain"]
    return tw, tg


def weight_standardization_jvp(tangents, weight, gain=None, eps=None, style="deepmind", *, estimator=None,
                               eps_mode=None, fan_in_scaling=None):
    """Forward-mode derivative of :func:`weight_standardization`:
    ``(W_hat, tW_hat)``.

    ``tangents``: dict over ``"weight"`` (shaped like ``weight``) and ``"gain"``
    (``(C_out,)``, only when ``gain`` is given); a missing key is a zero
    tangent.  The other arguments as :func:`weight_standardization`; ``W_hat``
    is bit-identical to its result, ``tW_hat`` float64 shaped like ``weight``.
    Rule (docs/ops/weight_standardization.md#ws-jvp)::

        tW_hat = tg * wc * r + gain * (r * twc + wc * kv * tv),
        twc = tW - mean(tW),  tv = 2 sum(wc * twc) / (n - delta)

    with the backward's conventions for ``kv = dr/dv`` (floor active: 0; exact
    tie: half; ``std`` on a constant channel: 0).
    """
    shape, w3, g, opts = _prepare(weight, gain, eps, style, estimator, eps_mode, fan_in_scaling)
    C, n = w3.shape[1], w3.shape[2]
    tw, tg = _directions("tangents", tangents, weight, gain, C, n)
    st, kv = _stats(w3, opts)
    gv = np.ones(C) if g is None else g
    y3 = np.empty_like(w3)
    K.forward(w3, st, gv, np.zeros(C), C, 1, n, y3)  # as weight_standardization_stats
    ty = np.empty((C, n))
    _jvp(w3.reshape(C, n), tw, st, kv, gv, tg, opts["n_div"], ty)
    return y3.reshape(shape), ty.reshape(shape)


def weight_standardization_double_backward(cotangents, dy, weight, gain=None, eps=None, style="deepmind", *,
                                           estimator=None, eps_mode=None, fan_in_scaling=None):
    """Second order: the VJP of :func:`weight_standardization_backward`.

    For ``L = <cotangents["weight"], dW> + <cotangents["gain"], dgain>`` (missing
    keys are zero; ``"gain"`` only when ``gain`` is given), returns
    ``{"dy": dL/ddy, "weight": dL/dW, "gain": dL/dgain}`` (``"gain"`` only when
    given), float64, shaped like ``dy``, ``weight``, ``gain``.
    ``dL/ddy`` is the JVP along the cotangents; the rest is the derivative of
    the backward along them (docs/ops/weight_standardization.md#ws-second-order).
    Second-order conventions: ``d kv/dv`` carries the floor's indicator squared
    (1/4 at an exact tie, as autograd's reverse-over-reverse); ``eps_mode="std"``
    on a constant channel takes the terms through the std as 0 (the backward is
    not differentiable there).
    """
    shape, w3, g, opts = _prepare(weight, gain, eps, style, estimator, eps_mode, fan_in_scaling)
    C, n = w3.shape[1], w3.shape[2]
    dy2 = V.check_dy(dy, shape).reshape(C, n)
    cw, cg = _directions("cotangents", cotangents, weight, gain, C, n)
    st, kv = _stats(w3, opts)
    kv2 = np.empty(C)
    _scale_curvature(st, kv, opts["n_div"], opts["mode"], kv2)
    gv = np.ones(C) if g is None else g
    ddy = np.empty((C, n))
    _jvp(w3.reshape(C, n), cw, st, kv, gv, cg, opts["n_div"], ddy)  # dL/ddy = J c
    ddw = np.empty((C, n))
    ddgain = np.empty(C)
    _double_backward(dy2, w3.reshape(C, n), cw, st, kv, kv2, gv, cg, opts["n_div"], ddw, ddgain)
    out = {"dy": ddy.reshape(shape), "weight": ddw.reshape(shape)}
    if g is not None:
        out["gain"] = ddgain
    return out


__all__ = ["weight_standardization", "weight_standardization_backward", "weight_standardization_double_backward",
           "weight_standardization_jvp", "weight_standardization_stats"]
