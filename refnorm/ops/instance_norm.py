"""InstanceNorm: the fast path.

``x`` of shape ``(N, C, *spatial)`` is viewed as ``(1, N*C, HW)``: each
(sample, channel) is one reduction set, with a per-channel affine
(``P = C``, ``T = HW``).  With ``use_input_stats=False`` the per-channel
running statistics are constants repeated over the N samples
(statistics period ``C``).
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _layout as L
from . import _derivatives as D
from . import _normalize as nz
from . import _running as R
from . import _saved as SV

#: the saved statistics (``instance_norm_stats``)
STATS = ("mean", "rstd")


def _check_common(x, running_mean, running_var):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    C = xa.shape[1]
    rm = V.check_param("running_mean", running_mean, (C,), "one value per channel C")
    rv = V.check_param("running_var", running_var, (C,), "one value per channel C")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together or both be None")
    return xa, rm, rv


def _check_spatial(shape):
    if V.prod(shape[2:]) == 1:
        raise ValueError("Expected more than 1 spatial element when training (use_input_stats=True), "
                         f"got x of shape {tuple(shape)}")


def layout(x_shape, use_input_stats=True) -> L.Layout:
    """The view ``(1, N*C, HW)`` (each (sample, channel) one set), a
    per-channel affine (``P = C``, ``T = HW``); ``mean``/``rstd`` of shape
    ``(N, C)``, or ``(C,)`` when the running statistics are used."""
    N, C, HW = x_shape[0], x_shape[1], V.prod(x_shape[2:])
    stat = (N, C) if use_input_stats else (C,)
    return L.channels(x_shape, (1, N * C, HW), (C, 1, HW), {"mean": stat, "rstd": stat})


def _prepare(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps):
    xa, rm, rv = _check_common(x, running_mean, running_var)
    N, C = xa.shape[0], xa.shape[1]
    w = V.check_param("weight", weight, (C,), "one value per channel C")
    b = V.check_param("bias", bias, (C,), "one value per channel C")
    use_input_stats = V.check_bool("use_input_stats", use_input_stats)
    V.check_real("momentum", momentum, allow_none=True)
    eps = V.check_real("eps", eps)
    if use_input_stats:
        _check_spatial(xa.shape)
    elif rm is None:
        raise ValueError("running_mean and running_var are required when use_input_stats=False")
    x3 = V.to_f64(xa).reshape(layout(xa.shape, use_input_stats).view)
    return xa.shape, N, C, x3, w, b, eps, (None if use_input_stats else (rm, rv))


def _instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, out, saving=False):
    shape, N, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias,
                                                   use_input_stats, momentum, eps)
    if out is not None:
        nz.check_out(out, shape, ("x", x), ("running_mean", running_mean), ("running_var", running_var),
                     ("weight", weight), ("bias", bias))
    if running is None:  # input statistics
        y3, st = nz.normalize(x3, eps, w, b, P=C, Q=1, out=out)
    else:
        st = nz.const_stats(*running, eps)
        y3 = nz.forward(x3, st, w, b, P=C, Q=1, out=out)
    y = out if out is not None else y3.reshape(shape)
    if not saving:
        return y, None
    lead = (N, C) if running is None else (C,)
    return y, SV.save("instance_norm", SV.BATCH if running is None else SV.CONST, x3, eps, st, STATS,
                      {"mean": lead, "rstd": lead}, running)


def _instance_norm_backward(dy, x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, out,
                            stats):
    shape, N, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias,
                                                   use_input_stats, momentum, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if out is not None:
        nz.check_out(out, shape, ("dy", dy), ("x", x), ("running_mean", running_mean),
                     ("running_var", running_var), ("weight", weight), ("bias", bias))
    saved = None
    if stats is not None:
        lead = (N, C) if running is None else (C,)
        saved = SV.restore(stats, "instance_norm_backward", "instance_norm",
                           SV.BATCH if running is None else SV.CONST, x3, eps, STATS, {"mean": lead, "rstd": lead},
                           running)
    affine = w is not None or b is not None
    if running is None:  # input statistics
        dx3, dw, db = nz.normalize_backward(dy3, x3, eps, w, P=C, Q=1, affine=affine, out=out, saved=saved)
    else:
        st = nz.const_stats(*running, eps) if saved is None else nz.Stats(saved, const=True)
        dx3, dw, db = nz.backward(dy3, x3, st, w, P=C, Q=1, affine=affine, out=out)
    return nz.gradient_dict(dx3, shape, out, w, b, dw, db)


def instance_norm_stats(x, running_mean=None, running_var=None, weight=None, bias=None,
                        use_input_stats=True, momentum=0.1, eps=1e-5):
    """``y`` and the ``mean``, ``rstd`` used to normalize: shape ``(N, C)`` for
    input statistics, ``(C,)`` for running ones.

    The dict is a ``dict`` with exactly those keys that also keeps, privately,
    the low parts of the double-double statistics and a fingerprint of the
    call (:class:`refnorm.ops._saved.SavedStats`): pass it back as
    ``instance_norm_backward(..., stats=...)`` to skip the statistics pass."""
    return _instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, None,
                          saving=True)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5, *, out=None):
    """Instance normalization, as ``torch.nn.functional.instance_norm``.

    With ``use_input_stats=True`` (default) each (sample, channel) is
    normalized over its spatial positions (biased variance, ``eps`` inside
    the square root); with ``False``, by the per-channel ``running_mean`` and
    ``running_var``.  A per-channel affine follows when given.  The running
    statistics are never updated in place: see
    :func:`instance_norm_running_stats`.

    Parameters
    ----------
    x : array, shape ``(N, C, *spatial)``
    running_mean, running_var : array of shape ``(C,)`` or None
    weight, bias : array of shape ``(C,)`` or None
    use_input_stats : bool
    momentum : float (does not affect ``y``)
    eps : float
    out : float64 array shaped like ``x``, C-contiguous, writeable, sharing no memory with an
        input; optional, keyword only: ``y`` is written into it and it is returned (same bits).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return _instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, out)[0]


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                           use_input_stats=True, momentum=0.1, eps=1e-5, *, stats=None, out=None):
    """Gradients of :func:`instance_norm`: ``{"x": dx[, "weight"][, "bias"]}``.

    Input statistics: per (sample, channel) with ``g = weight[c] * dy``,
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``.  Running statistics
    are constants: ``dx = rstd * g``.  ``dweight[c]``, ``dbias[c]`` sum over
    ``(N, *spatial)``.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(N, C, *spatial)``); ``dweight`` and
    ``dbias`` ``(C,)``, returned only when ``weight`` / ``bias`` is given.  All float64.

    ``stats`` (keyword only): the statistics dict :func:`instance_norm_stats`
    returned for the same arguments.  With input statistics these are the
    per-(sample, channel) mean and rstd, which the backward then reads instead
    of recomputing them from ``x``; with running statistics
    (``use_input_stats=False``) they are ``running_mean`` and
    ``1/sqrt(running_var + eps)``, constants the backward uses anyway, so
    ``stats`` only saves the reciprocal square roots.  Either way the result
    has the bits of the backward without ``stats``.  Checked before any kernel
    runs (``TypeError``: not that dict; ``ValueError``: keys, shapes, a dict
    saved in the other mode, for another shape or ``eps``, or for other values
    of ``x`` (input statistics) or of the running statistics, as far as a
    sample of them tells); never modified.

    ``out`` (keyword only): an array as for the forward's ``out``, into which ``dx`` is
    written; the dict then holds ``"x": out`` (same bits).
    """
    return _instance_norm_backward(dy, x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps,
                                   out, stats)


def instance_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, convention="torch"):
    """The running statistics after one ``instance_norm(use_input_stats=True)``
    training step on ``x``, as PyTorch leaves them.

    PyTorch runs BatchNorm on ``x`` reshaped to ``(1, N*C, *spatial)`` with the
    running statistics repeated N times and then averages the N updated
    copies, i.e. ``new = (1 - m) * old + m * mean_n(batch statistic of (n, c))``
    with the unbiased variance over the spatial positions.  Only the torch
    convention exists: neither ONNX nor Flax defines running statistics for
    instance normalization.

    Shapes: ``x`` ``(N, C, *spatial)`` with more than one spatial element;
    ``running_mean``, ``running_var`` and the two returned arrays ``(C,)``.  An
    empty batch (N = 0) leaves the statistics unchanged.
    """
    xa, rm, rv = _check_common(x, running_mean, running_var)
    if rm is None:
        raise TypeError("running_mean and running_var must be arrays of shape (C,), got None")
    if convention != "torch":
        raise ValueError("instance_norm_running_stats supports only convention='torch' "
                         f"(ONNX and Flax have no InstanceNorm running statistics), got {convention!r}")
    if momentum is None:
        raise TypeError("momentum must be a real number for instance norm (PyTorch's InstanceNorm "
                        "passes 0.0 when its momentum is None), got None")
    factor = V.check_real("momentum", momentum)
    _check_spatial(xa.shape)
    N, C = xa.shape[0], xa.shape[1]
    if N == 0:
        return rm.copy(), rv.copy()
    st = nz.batch_stats(V.to_f64(xa).reshape(1, N * C, -1), 0.0)
    mean_nc = st.mean.reshape(N, C)
    var_nc = st.var(correction=1).reshape(N, C)
    batch_mean = np.mean(mean_nc, axis=0)
    batch_var = np.mean(var_nc, axis=0)
    return R.update(rm, batch_mean, factor), R.update(rv, batch_var, factor)


def instance_norm_jvp(tangents, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
    """Forward mode of :func:`instance_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"`` (missing = zero;
    the running statistics are buffers, not differentiable).  Per channel set,
    ``ty = weight_c * rstd * P(tx) + tweight_c * xhat + tbias_c`` with
    ``P(v) = v - mean(v) - xhat * mean(xhat * v)`` for batch statistics and
    ``P(v) = v`` for running ones (docs/ops/batch_norm.md#batch-norm-jvp).
    ``y`` has the bits of :func:`instance_norm`.
    """
    shape, N, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, use_input_stats,
                                                   momentum, eps)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias})
    y3, ty3 = D.normalize_jvp(x3, eps, w, b, C, 1, t, running=running)
    return y3.reshape(shape), ty3.reshape(shape)


def instance_norm_double_backward(cotangents, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Second order of :func:`instance_norm`: the VJP of :func:`instance_norm_backward`
    (``cotangents`` over ``"x"``, ``"weight"``, ``"bias"``; result ``"dy"``,
    ``"x"`` and the given parameters, ``"bias"`` zeros), for batch and for
    running statistics (docs/ops/batch_norm.md#batch-norm-second-order).
    """
    shape, N, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, use_input_stats,
                                                   momentum, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias})
    d2dy, d2x, d2w = D.normalize_double_backward(dy3, x3, eps, w, C, 1, c, running=running)
    return D.second_order_dict(shape, d2dy, d2x, d2w, weight, bias)
