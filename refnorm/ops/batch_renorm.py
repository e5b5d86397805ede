"""Batch Renormalization: the fast path.

The definition and every convention are documented in
:mod:`refnorm.reference.batch_renorm`.  ``x`` of shape ``(N, C, *spatial)`` is
viewed as ``(N, C, HW)`` exactly as BatchNorm's (:mod:`refnorm.ops.batch_norm`):
each channel one reduction set, a per-channel affine.

With ``r`` and ``d`` constants (the paper's ``stop_gradient``), training is
BatchNorm's training on the same batch statistics with the *effective* affine
(:func:`_effective`)::

    y = weight (xhat0 r + d) + bias = (weight r) xhat0 + (weight d + bias),   xhat0 = (x - mu_B) / sigma_B

so the forward, the input gradient, forward mode and second order are the
shared BatchNorm kernels (:mod:`refnorm.ops._normalize`,
:mod:`refnorm.ops._derivatives`) with ``w_eff = weight r`` and
``b_eff = weight d + bias``; only the parameter gradients are mapped back
(docs/ops/batch_renorm.md#brn-backward)::

    dx      = w_eff / sigma_B (dy - mean(dy) - xhat0 mean(dy xhat0))   (BN's training backward, times r)
    dweight = r sum dy xhat0 + d sum dy = sum dy xhat,    dbias = sum dy

Eval is BatchNorm's eval path unchanged.  ``r`` and ``d`` are not saved: they
are recomputed from the saved ``mean``/``rstd`` and the running statistics.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _derivatives as D
from . import _normalize as nz
from . import batch_norm as bn


def layout(x_shape):
    """BatchNorm's view ``(N, C, HW)``, per-channel affine, ``mean``/``rstd`` of shape ``(C,)``."""
    return bn.layout(x_shape)


def _check_clip(r_max, d_max):
    r_max = V.check_real("r_max", r_max)
    d_max = V.check_real("d_max", d_max)
    if not r_max >= 1.0:
        raise ValueError(f"r_max must be >= 1 (r is clipped to [1/r_max, r_max]), got {r_max}")
    if not d_max >= 0.0:
        raise ValueError(f"d_max must be >= 0 (d is clipped to [-d_max, d_max]), got {d_max}")
    return r_max, d_max


def _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max):
    xa, rm, rv = bn._check_common(x, running_mean, running_var)
    if rm is None:
        raise TypeError("running_mean and running_var are required: arrays of shape (C,) (Batch Renormalization "
                        "corrects the batch statistics toward them in training and uses them in eval), got None")
    r_max, d_max = _check_clip(r_max, d_max)
    shape, C, x3, w, b, eps, running = bn._prepare(x, running_mean, running_var, weight, bias, training, momentum,
                                                   eps)
    return shape, C, x3, w, b, eps, running, rm, rv, r_max, d_max


def _correction(st: nz.Stats, rm, rv, eps, r_max, d_max):
    """``(r, d)`` per channel from the batch statistics ``st`` (``sigma_B = 1/rstd``)
    and the running ones: ``r = clip(sigma_B / sigma, 1/r_max, r_max)``,
    ``d = clip((mu_B - running_mean) / sigma, -d_max, d_max)``, ``sigma = sqrt(running_var + eps)``
    (NaN propagates through the clip)."""
    with np.errstate(all="ignore"):
        sigma = np.sqrt(rv + eps)
        sigma_b = 1.0 / st.rstd
        r = np.clip(sigma_b / sigma, 1.0 / r_max, r_max)
        d = np.clip((st.mean - rm) / sigma, -d_max, d_max)
    return r, d


def _effective(w, b, r, d):
    """The affine BatchNorm applies to ``xhat0``: ``w_eff = weight r``, ``b_eff = weight d + bias``
    (weight 1 and bias 0 when absent)."""
    with np.errstate(all="ignore"):
        w_eff = r if w is None else w * r
        b_eff = d if w is None else w * d
        if b is not None:
            b_eff = b_eff + b
    return w_eff, b_eff


def _train_stats(x3, rm, rv, eps, r_max, d_max):
    st = nz.batch_stats(x3, eps)
    r, d = _correction(st, rm, rv, eps, r_max, d_max)
    return st, r, d


def batch_renorm_stats(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
                       r_max=3.0, d_max=5.0):
    """``y`` and the per-channel ``mean`` and ``rstd`` that normalize ``x``.

    Training: the batch mean ``mu_B`` and ``rstd = 1/sigma_B = 1/sqrt(var_B + eps)``
    (biased ``var_B``), as :func:`refnorm.batch_norm_stats`; ``r`` and ``d`` are not
    saved (recompute them from these and the running statistics).  Eval:
    ``running_mean`` and ``1/sqrt(running_var + eps)``.  ``mean``, ``rstd``: ``(C,)``."""
    shape, C, x3, w, b, eps, running, rm, rv, r_max, d_max = _prepare(
        x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max)
    if running is not None:
        return bn.batch_norm_stats(x, running_mean, running_var, weight, bias, training, momentum, eps)
    st, r, d = _train_stats(x3, rm, rv, eps, r_max, d_max)
    w_eff, b_eff = _effective(w, b, r, d)
    y3 = nz.forward(x3, st, w_eff, b_eff, P=C, Q=1)
    return y3.reshape(shape), {"mean": st.mean.copy(), "rstd": st.rstd.copy()}


def batch_renorm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
                 r_max=3.0, d_max=5.0):
    """Batch Renormalization (Ioffe 2017, Algorithm 1), channels on dim 1 like BatchNorm.

    Training (``training=True``), per channel over ``(N, *spatial)``::

        sigma_B = sqrt(var_B + eps),  sigma = sqrt(running_var + eps)
        r = clip(sigma_B / sigma, 1/r_max, r_max),  d = clip((mu_B - running_mean) / sigma, -d_max, d_max)
        y = weight ((x - mu_B) / sigma_B * r + d) + bias

    (biased ``var_B``; ``r`` and ``d`` constants for the derivatives).  Eval:
    BatchNorm's inference, ``y = weight (x - running_mean) / sigma + bias``.
    ``r_max = 1``, ``d_max = 0`` is BatchNorm's training.

    Like :func:`refnorm.batch_norm` this never updates the running statistics
    in place: the update is :func:`batch_renorm_running_stats`.  ``momentum``
    is accepted for signature compatibility and does not affect ``y``.

    Parameters
    ----------
    x : array ``(N, C, *spatial)``
    running_mean, running_var : arrays ``(C,)``, required (also in training)
    weight, bias : arrays ``(C,)`` or None
    training : bool
    momentum : float or None
    eps : float, inside both square roots
    r_max : float >= 1;  d_max : float >= 0 (the paper's defaults 3 and 5; inf: no clipping)

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return batch_renorm_stats(x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max)[0]


def batch_renorm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                          eps=1e-5, r_max=3.0, d_max=5.0):
    """Gradients of :func:`batch_renorm`: ``{"x": dx[, "weight"][, "bias"]}``, float64.

    Training, with ``r``, ``d`` constants and ``xhat0 = (x - mu_B) / sigma_B``,
    ``xhat = xhat0 r + d`` per channel::

        dx      = weight r / sigma_B (dy - mean(dy) - xhat0 mean(dy xhat0))
        dweight = sum dy xhat,    dbias = sum dy

    (BatchNorm's training backward scaled by ``r``; the sums and means over
    ``(N, *spatial)``).  Eval: BatchNorm's eval backward.  Shapes: ``dx`` like
    ``x``; ``dweight``, ``dbias`` ``(C,)``, only for a given parameter.
    """
    shape, C, x3, w, b, eps, running, rm, rv, r_max, d_max = _prepare(
        x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if running is not None:
        return bn.batch_norm_backward(dy, x, running_mean, running_var, weight, bias, training, momentum, eps)
    st, r, d = _train_stats(x3, rm, rv, eps, r_max, d_max)
    w_eff, _ = _effective(w, None, r, d)
    dx3, s1, s0 = nz.backward(dy3, x3, st, w_eff, P=C, Q=1, affine=True)  # s1 = sum dy xhat0, s0 = sum dy
    out = {"x": dx3.reshape(shape)}
    if w is not None:
        with np.errstate(all="ignore"):
            out["weight"] = r * s1 + d * s0
    if b is not None:
        out["bias"] = s0
    return out


def batch_renorm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                               convention="torch"):
    """The running statistics after one training step of :func:`batch_renorm` on ``x``.

    The update is BatchNorm's (:func:`refnorm.batch_norm_running_stats`, same
    arguments, conventions and errors): with ``convention="torch"``,
    ``running_mean + momentum (mu_B - running_mean)`` and
    ``running_var + momentum (var_B' - running_var)`` with the *unbiased* batch
    variance ``var_B'``.  The paper (Algorithm 1) moves ``sigma`` itself toward
    ``sigma_B``; refnorm keeps PyTorch's variance buffer, so that a model
    converted from BatchNorm keeps its buffers' meaning
    (docs/ops/batch_renorm.md#brn-defaults).  New arrays ``(C,)``, float64; the
    inputs are not modified.
    """
    return bn.batch_norm_running_stats(x, running_mean, running_var, momentum,
                                       num_batches_tracked=num_batches_tracked, convention=convention)


def batch_renorm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                     eps=1e-5, r_max=3.0, d_max=5.0):
    """Forward mode of :func:`batch_renorm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"`` (missing = zero).
    Training, with ``r``, ``d`` constants and ``P(v) = v - mean(v) - xhat0 mean(xhat0 v)``::

        ty = weight r / sigma_B P(tx) + tweight xhat + tbias

    (BatchNorm's JVP with ``w_eff = weight r`` and the tangents ``tw_eff = tweight r``,
    ``tb_eff = tweight d + tbias``).  Eval: BatchNorm's.  ``y`` has the bits of
    :func:`batch_renorm`.
    """
    shape, C, x3, w, b, eps, running, rm, rv, r_max, d_max = _prepare(
        x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias})
    if running is not None:
        return bn.batch_norm_jvp(tangents, x, running_mean, running_var, weight, bias, training, momentum, eps)
    st, r, d = _train_stats(x3, rm, rv, eps, r_max, d_max)
    w_eff, b_eff = _effective(w, b, r, d)
    tw_eff, tb_eff = (None, t["bias"]) if t["weight"] is None else _effective(t["weight"], t["bias"], r, d)
    y3 = nz.forward(x3, st, w_eff, b_eff, P=C, Q=1)
    ty3 = D.jvp(x3, st, w_eff, {"x": t["x"], "weight": tw_eff, "bias": tb_eff}, C, 1, D.MODE_BATCH_STATS)
    return y3.reshape(shape), ty3.reshape(shape)


def batch_renorm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None,
                                 training=False, momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0):
    """Second order of :func:`batch_renorm`: the VJP of :func:`batch_renorm_backward`
    with ``r``, ``d`` constants (as autograd through ``.detach()``-ed ``r``, ``d``).

    ``cotangents`` ``(a, gw, gb)`` over ``"x"``, ``"weight"``, ``"bias"`` (missing =
    zero).  Training: BatchNorm's double backward with ``w_eff = weight r`` and the
    cotangents ``(a, r gw, gb + d gw)`` of its ``(dx, dw_eff, db_eff)``;
    ``d2weight = r d2w_eff``, ``d2bias = 0`` (docs/ops/batch_renorm.md#brn-second-order).
    Eval: BatchNorm's.  Returns ``"dy"``, ``"x"`` and the given parameters.
    """
    shape, C, x3, w, b, eps, running, rm, rv, r_max, d_max = _prepare(
        x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias})
    if running is not None:
        return bn.batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight, bias, training,
                                             momentum, eps)
    st, r, d = _train_stats(x3, rm, rv, eps, r_max, d_max)
    w_eff, _ = _effective(w, None, r, d)
    gw, gb = c["weight"], c["bias"]
    with np.errstate(all="ignore"):
        gw_eff = None if gw is None else r * gw
        gb_eff = gb if gw is None else (d * gw if gb is None else gb + d * gw)
    d2dy3, d2x3, d2w = D.double_backward(dy3, x3, st, w_eff, {"x": c["x"], "weight": gw_eff, "bias": gb_eff}, C, 1,
                                         D.MODE_BATCH_STATS)
    with np.errstate(all="ignore"):
        d2w = r * d2w
    return D.second_order_dict(shape, d2dy3, d2x3, d2w, weight, bias)


__all__ = ["batch_renorm", "batch_renorm_backward", "batch_renorm_double_backward", "batch_renorm_jvp",
           "batch_renorm_running_stats", "batch_renorm_stats"]
