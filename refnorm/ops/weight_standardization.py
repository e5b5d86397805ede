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
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..reference.weight_standardization import STYLES, resolve_options
from . import _kernels as K
from . import _layout as L
from ._dd import dd_div_int, dd_mul_round, renormalize, rsqrt_dd, two_prod, two_sum
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
            d, de = two_sum(x[i, j], -mh)
            wc = d + (de - ml)  # (3) W - mean
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
            d, de = two_sum(x[i, j], -mh)
            wc = d + (de - ml)
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


__all__ = ["weight_standardization", "weight_standardization_backward", "weight_standardization_stats"]
