"""EvoNorm-B0: the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.evo_norm_b0`.  ``x`` of shape ``(N, C, H, W)`` is
viewed as ``(N, C, S)`` (``S = H W``).  Two sets of statistics, both from the
shared two-pass compensated kernels (:func:`refnorm.ops._normalize.batch_stats`):

* per channel over ``(N, H, W)`` (view ``(N, C, S)``): the biased batch
  variance ``var`` (training; ``running_var`` in evaluation), ``left = sqrt(var + eps)``;
* per (sample, channel) over ``(H, W)`` (view ``(1, N C, S)``): the mean ``mu``
  and biased variance ``s2``, ``istd = sqrt(s2 + eps)``.

Then, elementwise, ``right = x v + istd``, ``d = max(left, right)``,
``xn = x / d``, ``y = xn weight + bias``.

Backward (derivation: docs/ops/evo_norm_b0.md#evo-b0-backward), with the
masks of ``torch.maximum``'s backward ``ml`` (for ``left``) and ``mr`` (for
``right``): 1 for the larger, 0 for the smaller, 1/2 each at a tie ``left ==
right``, 1 for both where either is NaN::

    g     = weight dy
    dd    = -g xn / d                        (the gradient of d)
    dr    = mr dd,   dl = ml dd
    gi    = sum_{h,w} dr            per (n, c)   (the gradient of istd)
    gl    = sum_{n,h,w} dl          per c        (the gradient of left; training only)
    dx    = g / d + v dr + (gi / istd) (x - mu) / S + (gl / left) (x - m) / (N S)
    dweight = sum_{n,h,w} dy xn,  dbias = sum_{n,h,w} dy,  dv = sum_{n,h,w} dr x

Every sum is a compensated sum (:func:`_sums`, one thread per set: the same
bits for any thread count).  In evaluation ``left`` is a constant and the
``gl`` term is absent.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _layout as L
from . import _normalize as nz
from ._dd import two_sum
from ._jit import pjit, prange


@pjit
def _sums(a, out):
    """``out[b] = sum_{i, s} a[i, b, s]`` for the ``(A, B, S)`` array ``a``: a compensated
    (TwoSum) sum per set ``b``, in a fixed order, one thread per set."""
    A, B, S = a.shape
    for b in prange(B):
        hi = 0.0
        lo = 0.0
        for i in range(A):
            for s in range(S):
                hi, e = two_sum(hi, a[i, b, s])
                lo += e
        out[b] = hi + lo


def _set_sums(a3):
    """Sums over the sets ``b`` of an ``(A, B, S)`` float64 array (C-contiguous copy if needed)."""
    a3 = np.ascontiguousarray(a3, dtype=np.float64)
    out = np.empty(a3.shape[1])
    _sums(a3, out)
    return out


def layout(x_shape) -> L.Layout:
    """The view ``(N, C, S)``: channel ``c`` is the batch set over ``(N, H, W)``; a per-channel
    weight, bias and v (``P = C``, ``T = S``); no saved statistics."""
    N, C, S = x_shape[0], x_shape[1], V.prod(x_shape[2:])
    return L.channels(x_shape, (N, C, S), (C, 1, S), {})


def _required(name, value, C):
    if value is None:
        raise TypeError(f"{name} is required: an array of shape ({C},) (one value per channel C), got None")
    return V.check_param(name, value, (C,), "one value per channel C")


def _check_x(x):
    xa = V.check_input("x", x, min_ndim=4, layout="(N, C, H, W)")
    if xa.ndim != 4:
        raise ValueError(f"x must have exactly 4 dimensions (N, C, H, W), got shape {tuple(xa.shape)}")
    return xa


def _prepare(x, weight, bias, v, running_var, training, eps):
    xa = _check_x(x)
    C = xa.shape[1]
    w = _required("weight", weight, C)
    b = _required("bias", bias, C)
    vv = _required("v", v, C)
    rv = V.check_param("running_var", running_var, (C,), "one value per channel C")
    training = V.check_bool("training", training)
    if not training and rv is None:
        raise ValueError("running_var is required when training=False: the evaluation mode normalizes with it "
                         f"(an array of shape ({C},))")
    eps = V.check_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x3 = V.to_f64(xa).reshape(layout(xa.shape).view)
    return xa.shape, C, x3, w, b, vv, rv, training, eps


class _Fwd:
    """The forward's intermediates on the view ``(N, C, S)`` (kernel names of the module docstring)."""

    def __init__(self, x3, w, b, vv, rv, training, eps):
        N, C, S = x3.shape
        self.training = training
        if training:
            bst = nz.batch_stats(x3, 0.0)  # per channel over (N, S)
            self.m = bst.mean.copy().reshape(1, C, 1)
            var = bst.var(0)
        else:
            self.m = None
            var = rv
        self.left = np.sqrt(var + eps).reshape(1, C, 1)  # (2)
        ist = nz.batch_stats(x3.reshape(1, N * C, S), 0.0)  # per (n, c) over S
        self.mu = ist.mean.copy().reshape(N, C, 1)
        self.istd = np.sqrt(ist.var(0) + eps).reshape(N, C, 1)  # (3)
        self.vv = vv.reshape(1, C, 1)
        self.right = x3 * self.vv + self.istd  # (4)
        with np.errstate(invalid="ignore"):
            self.d = np.maximum(self.left, self.right)  # (5) NaN propagates
        with np.errstate(all="ignore"):
            self.xn = x3 / self.d  # (6)
            self.y = self.xn * w.reshape(1, C, 1) + b.reshape(1, C, 1)  # (7)

    def masks(self):
        """``(ml, mr)``: torch.maximum's backward masks for ``left`` (self) and ``right`` (other)."""
        left = np.broadcast_to(self.left, self.right.shape)
        with np.errstate(invalid="ignore"):
            ml = np.where(left < self.right, 0.0, np.where(left == self.right, 0.5, 1.0))
            mr = np.where(left > self.right, 0.0, np.where(left == self.right, 0.5, 1.0))
        return ml, mr


def _masked(m, a):
    """``m * a`` with an exact 0 where ``m == 0`` (an infinite ``a`` gives 0, as masked_fill)."""
    with np.errstate(invalid="ignore"):
        return np.where(m == 0.0, 0.0, m * a)


def evo_norm_b0(x, weight, bias, v, running_var=None, training=True, eps=1e-3):
    """EvoNorm-B0 (Liu et al. 2020), as timm's ``EvoNorm2dB0`` computes it.

    .. math:: y = \\frac{x}{\\max\\big(\\sqrt{\\sigma^2_{c} + \\epsilon},\\ v_c x + \\sqrt{s^2_{nc} + \\epsilon}\\big)}
              \\gamma_c + \\beta_c

    with ``sigma^2_c`` the biased variance of channel ``c`` over ``(N, H, W)`` in
    training (``running_var`` in evaluation) and ``s^2_nc`` the biased variance of
    ``x[n, c]`` over ``(H, W)``.

    Parameters
    ----------
    x : array ``(N, C, H, W)``, float16/bfloat16/float32/float64
    weight, bias, v : arrays ``(C,)``, required (gamma, beta and the B0 slope v)
    running_var : array ``(C,)`` or None; required when ``training=False``, not read in training
        (its update is :func:`evo_norm_b0_running_stats`)
    training : bool, batch variance (True) or ``running_var`` (False)
    eps : float >= 0, inside both square roots (timm's default 1e-3)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    shape, C, x3, w, b, vv, rv, training, eps = _prepare(x, weight, bias, v, running_var, training, eps)
    return _Fwd(x3, w, b, vv, rv, training, eps).y.reshape(shape)


def evo_norm_b0_backward(dy, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
    """Gradients of :func:`evo_norm_b0`: ``{"x", "weight", "bias", "v"}``, float64.

    With ``d = max(left, right)``, ``xn = x / d`` and torch.maximum's masks
    ``ml``, ``mr`` (1/2 each at a tie): ``g = weight dy``, ``dd = -g xn / d``,
    ``dr = mr dd``, ``gi = sum_{h,w} dr``, ``gl = sum_{n,h,w} ml dd``;
    ``dx = g/d + v dr + (gi/istd)(x - mu)/S + (gl/left)(x - m)/(N S)`` (the last
    term in training only: the batch variance is differentiated, the running
    one is a constant); ``dweight = sum dy xn``, ``dbias = sum dy``, ``dv = sum dr x``
    over ``(N, H, W)``.  Shapes: ``dy``, ``dx`` like ``x``; the others ``(C,)``.
    """
    shape, C, x3, w, b, vv, rv, training, eps = _prepare(x, weight, bias, v, running_var, training, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    f = _Fwd(x3, w, b, vv, rv, training, eps)
    N, _, S = x3.shape
    ml, mr = f.masks()
    with np.errstate(all="ignore"):
        g = dy3 * w.reshape(1, C, 1)
        dd = -(g * f.xn) / f.d
        dr = _masked(mr, dd)
        gi = _set_sums(dr.reshape(1, N * C, S)).reshape(N, C, 1)
        dx = g / f.d + dr * f.vv + (gi / f.istd) * ((x3 - f.mu) / S)
        if training:
            gl = _set_sums(_masked(ml, dd)).reshape(1, C, 1)
            dx = dx + (gl / f.left) * ((x3 - f.m) / (N * S))
        dweight = _set_sums(dy3 * f.xn)
        dbias = _set_sums(dy3)
        dv = _set_sums(dr * x3)
    return {"x": dx.reshape(shape), "weight": dweight, "bias": dbias, "v": dv}


def evo_norm_b0_running_stats(x, running_var, momentum=0.1):
    """The running variance after one training step on ``x``, as timm's ``EvoNorm2dB0``
    updates its buffer: ``running_var (1 - momentum) + var momentum n / (n - 1)``,
    ``var`` the biased batch variance per channel over ``(N, H, W)`` and ``n = N H W``
    (i.e. the unbiased variance weighted by ``momentum``).

    Returns a new float64 array ``(C,)``; the inputs are not modified.  ``n < 2``
    is refused (``ValueError``: timm divides by ``n - 1``).
    """
    xa = _check_x(x)
    C = xa.shape[1]
    rv = _required("running_var", running_var, C)
    momentum = V.check_real("momentum", momentum)
    n = V.prod(xa.shape) // C if C else 0
    if n < 2:
        raise ValueError(f"x must hold more than 1 value per channel to update running_var, got shape {xa.shape}")
    x3 = V.to_f64(xa).reshape(layout(xa.shape).view)
    var = nz.batch_stats(x3, 0.0).var(0)
    return rv * (1.0 - momentum) + var * (momentum * (n / (n - 1)))


# ============================================================================= forward mode
#
# Forward mode (docs/ops/evo_norm_b0.md#evo-b0-jvp): per channel and (n, c)
#     tleft  = mean_{n,h,w}((x - m) tx) / left          (training; 0 in evaluation)
#     tistd  = mean_{h,w}((x - mu) tx) / istd
#     tright = v tx + tv x + tistd
#     td     = ml tleft + mr tright                       (torch.maximum's forward AD: the mean at a tie)
#     ty     = weight (tx - xn td) / d + tweight xn + tbias


def evo_norm_b0_jvp(tangents, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
    """Forward mode of :func:`evo_norm_b0`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"v"`` (missing = zero).
    ``td = ml tleft + mr tright`` with the backward's masks (at a tie the mean of
    the two), ``tleft = mean((x - m) tx)/left`` in training (0 in evaluation),
    ``tright = v tx + tv x + mean_{h,w}((x - mu) tx)/istd``; ``ty = weight (tx -
    xn td)/d + tweight xn + tbias``.  float64, shaped like ``x``.
    """
    shape, C, x3, w, b, vv, rv, training, eps = _prepare(x, weight, bias, v, running_var, training, eps)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias, "v": v})
    f = _Fwd(x3, w, b, vv, rv, training, eps)
    N, _, S = x3.shape
    ml, mr = f.masks()
    z = np.zeros_like(x3)
    with np.errstate(all="ignore"):
        tx = z if t["x"] is None else t["x"].reshape(x3.shape)
        tright = tx * f.vv
        if t["v"] is not None:
            tright = tright + x3 * t["v"].reshape(1, C, 1)
        tistd = _set_sums(((x3 - f.mu) * tx).reshape(1, N * C, S)).reshape(N, C, 1) / S / f.istd
        tright = tright + tistd
        td = _masked(mr, tright)
        if training:
            tleft = _set_sums((x3 - f.m) * tx).reshape(1, C, 1) / (N * S) / f.left
            td = td + _masked(ml, np.broadcast_to(tleft, x3.shape))
        ty = ((tx - f.xn * td) / f.d) * w.reshape(1, C, 1)
        if t["weight"] is not None:
            ty = ty + f.xn * t["weight"].reshape(1, C, 1)
        if t["bias"] is not None:
            ty = ty + t["bias"].reshape(1, C, 1)
    return f.y.reshape(shape), ty.reshape(shape)


# ============================================================================= second order
#
# Second order (docs/ops/evo_norm_b0.md#evo-b0-second-order): the masks ml, mr are piecewise constant, so
# the VJP of the backward along the cotangents (cx, cweight, cbias, cv) of (dx, dweight, dbias, dv) is
# the forward-mode derivative of the backward's chain along them (the Hessian of <dy, y> is symmetric),
# step by step with dy fixed (t<name> the tangent of <name>):
#     tg = dy cweight;  tdd = -(tg xn + g txn + dd td) / d;  tdr = mr tdd;  tdl = ml tdd
#     tgi = sum_{h,w} tdr;  tgl = sum_{n,h,w} tdl
#     d2x = (tg - g td / d) / d + tdr v + dr cv + ((tgi - gi tistd / istd) / istd) (x - mu) / S
#           + (gi / istd) txi / S [+ ((tgl - gl tleft / left) / left) (x - m) / M + (gl / left) txc / M]
#     d2weight = sum dy txn,  d2bias = 0 (the backward does not read bias),  d2v = sum (tdr x + dr cx)
#     d2dy = the JVP of y along the cotangents (the backward is linear in dy)
# with txn, td, tistd, tleft, txi = cx - mean_{h,w} cx and txc = cx - mean_{n,h,w} cx those of the JVP.


def evo_norm_b0_double_backward(cotangents, dy, x, weight, bias, v, running_var=None, training=True, eps=1e-3):
    """Second order of :func:`evo_norm_b0`: the VJP of :func:`evo_norm_b0_backward`.

    ``cotangents``: a dict over ``"x"``, ``"weight"``, ``"bias"``, ``"v"`` (missing = zero).
    Returns ``{"dy", "x", "weight", "bias", "v"}``: the gradients of ``L = sum_k
    <cotangents[k], backward(dy, ...)[k]>``; ``"bias"`` is zeros (the backward does not
    read it).  The masks of the maximum are constants (1/2 each at a tie).  float64,
    shaped like the arguments.
    """
    shape, C, x3, w, b, vv, rv, training, eps = _prepare(x, weight, bias, v, running_var, training, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias, "v": v})
    f = _Fwd(x3, w, b, vv, rv, training, eps)
    N, _, S = x3.shape
    M = N * S
    ml, mr = f.masks()
    p = (1, C, 1)
    z = np.zeros_like(x3)
    with np.errstate(all="ignore"):
        cx = z if c["x"] is None else c["x"].reshape(x3.shape)
        cw = np.zeros(p) if c["weight"] is None else c["weight"].reshape(p)
        cv = np.zeros(p) if c["v"] is None else c["v"].reshape(p)
        xi = x3 - f.mu
        # the JVP of the forward along (cx, cv) (cweight, cbias do not reach d)
        txi = cx - _set_sums(cx.reshape(1, N * C, S)).reshape(N, C, 1) / S
        tistd = _set_sums((xi * cx).reshape(1, N * C, S)).reshape(N, C, 1) / S / f.istd
        td = _masked(mr, cx * f.vv + x3 * cv + tistd)
        if training:
            xc = x3 - f.m
            txc = cx - _set_sums(cx).reshape(p) / M
            tleft = _set_sums(xc * cx).reshape(p) / M / f.left
            td = td + _masked(ml, np.broadcast_to(tleft, x3.shape))
        txn = (cx - f.xn * td) / f.d
        # the backward's chain and its tangent
        g = dy3 * w.reshape(p)
        tg = dy3 * cw
        dd = -(g * f.xn) / f.d
        tdd = -(tg * f.xn + g * txn + dd * td) / f.d
        dr, tdr = _masked(mr, dd), _masked(mr, tdd)
        gi = _set_sums(dr.reshape(1, N * C, S)).reshape(N, C, 1)
        tgi = _set_sums(tdr.reshape(1, N * C, S)).reshape(N, C, 1)
        d2x = ((tg - g * td / f.d) / f.d + tdr * f.vv + dr * cv + ((tgi - gi * tistd / f.istd) / f.istd) * (xi / S)
               + (gi / f.istd) * (txi / S))
        if training:
            gl = _set_sums(_masked(ml, dd)).reshape(p)
            tgl = _set_sums(_masked(ml, tdd)).reshape(p)
            d2x = d2x + ((tgl - gl * tleft / f.left) / f.left) * (xc / M) + (gl / f.left) * (txc / M)
        d2w = _set_sums(dy3 * txn)
        d2v = _set_sums(tdr * x3 + dr * cx)
    _, ty = evo_norm_b0_jvp({k: val for k, val in c.items() if val is not None}, x, weight, bias, v, running_var,
                            training, eps)
    return {"dy": ty, "x": d2x.reshape(shape), "weight": d2w, "bias": np.zeros(C), "v": d2v}


__all__ = ["evo_norm_b0", "evo_norm_b0_backward", "evo_norm_b0_double_backward", "evo_norm_b0_jvp",
           "evo_norm_b0_running_stats"]
