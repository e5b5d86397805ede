"""BatchNorm: the fast path.

``x`` of shape ``(N, C, *spatial)`` is viewed as ``(N, C, HW)``: each channel
is one reduction set of ``N * HW`` elements (``A = N``, ``B = C``,
``S = HW``), with a per-channel affine (``P = C``, ``T = HW``).
"""

from __future__ import annotations

from .. import _validate as V
from . import _layout as L
from . import _derivatives as D
from . import _normalize as nz
from . import _running as R
from . import _saved as SV

#: the saved statistics (``batch_norm_stats``)
STATS = ("mean", "rstd")


def _check_common(x, running_mean, running_var):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    C = xa.shape[1]
    rm = V.check_param("running_mean", running_mean, (C,), "one value per channel C")
    rv = V.check_param("running_var", running_var, (C,), "one value per channel C")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together or both be None, got "
                         f"running_mean={'None' if rm is None else 'array'}, "
                         f"running_var={'None' if rv is None else 'array'}")
    return xa, rm, rv


def _values_per_channel(shape) -> int:
    return shape[0] * V.prod(shape[2:])


def layout(x_shape) -> L.Layout:
    """The view ``(N, C, HW)`` (each channel one set), a per-channel affine
    (``P = C``, ``T = HW``), ``mean``/``rstd`` of shape ``(C,)``."""
    N, C, HW = x_shape[0], x_shape[1], V.prod(x_shape[2:])
    return L.channels(x_shape, (N, C, HW), (C, 1, HW), {"mean": (C,), "rstd": (C,)})


def _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps):
    xa, rm, rv = _check_common(x, running_mean, running_var)
    C = xa.shape[1]
    w = V.check_param("weight", weight, (C,), "one value per channel C")
    b = V.check_param("bias", bias, (C,), "one value per channel C")
    training = V.check_bool("training", training)
    V.check_real("momentum", momentum, allow_none=True)
    eps = V.check_real("eps", eps)
    if not training and rm is None:
        raise ValueError("running_mean and running_var are required when training=False "
                         "(eval mode normalizes with the running statistics)")
    if training and _values_per_channel(xa.shape) == 1:
        raise ValueError("Expected more than 1 value per channel when training, "
                         f"got x of shape {tuple(xa.shape)}")
    x3 = V.to_f64(xa).reshape(layout(xa.shape).view)
    return xa.shape, C, x3, w, b, eps, (None if training else (rm, rv))


def _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, out, saving=False):
    shape, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if out is not None:
        nz.check_out(out, shape, ("x", x), ("running_mean", running_mean), ("running_var", running_var),
                     ("weight", weight), ("bias", bias))
    if running is None:  # training: batch statistics
        y3, st = nz.normalize(x3, eps, w, b, P=C, Q=1, out=out)
    else:
        st = nz.const_stats(*running, eps)
        y3 = nz.forward(x3, st, w, b, P=C, Q=1, out=out)
    y = out if out is not None else y3.reshape(shape)
    if not saving:
        return y, None
    return y, SV.save("batch_norm", SV.BATCH if running is None else SV.CONST, x3, eps, st, STATS,
                      {"mean": (C,), "rstd": (C,)}, running)


def _batch_norm_backward(dy, x, running_mean, running_var, weight, bias, training, momentum, eps, out, stats):
    shape, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if out is not None:
        nz.check_out(out, shape, ("dy", dy), ("x", x), ("running_mean", running_mean),
                     ("running_var", running_var), ("weight", weight), ("bias", bias))
    saved = None
    if stats is not None:
        saved = SV.restore(stats, "batch_norm_backward", "batch_norm", SV.BATCH if running is None else SV.CONST,
                           x3, eps, STATS, {"mean": (C,), "rstd": (C,)}, running)
    affine = w is not None or b is not None
    if running is None:  # training: batch statistics
        dx3, dw, db = nz.normalize_backward(dy3, x3, eps, w, P=C, Q=1, affine=affine, out=out, saved=saved)
    else:
        st = nz.const_stats(*running, eps) if saved is None else nz.Stats(saved, const=True)
        dx3, dw, db = nz.backward(dy3, x3, st, w, P=C, Q=1, affine=affine, out=out)
    return nz.gradient_dict(dx3, shape, out, w, b, dw, db)


def batch_norm_stats(x, running_mean, running_var, weight=None, bias=None, training=False,
                     momentum=0.1, eps=1e-5):
    """``y`` and the per-channel ``mean`` and ``rstd`` used to normalize (the
    batch statistics in training, the running ones in eval).

    Arguments as :func:`batch_norm`.  Returns ``(y, {"mean": mean, "rstd": rstd})``:
    ``y`` float64 shaped like ``x`` (``(N, C, *spatial)``); ``mean`` and ``rstd``
    of shape ``(C,)``, ``rstd = 1/sqrt(var + eps)`` with the biased batch
    variance in training, ``running_mean`` and ``1/sqrt(running_var + eps)`` in eval.

    The dict is a ``dict`` with exactly those keys that also keeps, privately,
    the low parts of the double-double statistics and a fingerprint of the
    call (:class:`refnorm.ops._saved.SavedStats`): pass it back as
    ``batch_norm_backward(..., stats=...)`` to skip the statistics pass."""
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, None, saving=True)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               *, out=None):
    """Batch normalization, as ``torch.nn.functional.batch_norm``.

    Training (``training=True``): each channel is normalized with the mean and
    biased variance of ``x`` over ``(N, *spatial)``; eval: with
    ``running_mean`` and ``running_var``.  ``eps`` is inside the square root.

    Unlike PyTorch, this never updates ``running_mean``/``running_var`` in
    place (refnorm mutates no input): the update PyTorch performs in training
    is :func:`batch_norm_running_stats`.  ``momentum`` is accepted for
    signature compatibility and does not affect ``y``.

    Parameters
    ----------
    x : array, shape ``(N, C, *spatial)``
    running_mean, running_var : array of shape ``(C,)``, or None (training only)
    weight, bias : array of shape ``(C,)`` or None
    training : bool
    momentum : float or None
    eps : float
    out : float64 array shaped like ``x``, C-contiguous, writeable, sharing no memory with an
        input; optional, keyword only: ``y`` is written into it and it is returned (same bits).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return _batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps, out)[0]


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                        momentum=0.1, eps=1e-5, *, stats=None, out=None):
    """Gradients of :func:`batch_norm`: ``{"x": dx[, "weight"][, "bias"]}``.

    Training differentiates through the batch statistics
    (``dx = weight * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` per
    channel); eval treats the running statistics as constants
    (``dx = weight * rstd * dy``).  ``dweight = sum dy * xhat``,
    ``dbias = sum dy`` over ``(N, *spatial)``.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(N, C, *spatial)``); ``dweight`` and
    ``dbias`` ``(C,)``, returned only when ``weight`` / ``bias`` is given.  All float64.

    ``stats`` (keyword only): the statistics dict :func:`batch_norm_stats`
    returned for the same arguments.  In training these are the batch mean
    and rstd, which the backward then reads instead of recomputing them from
    ``x`` (what PyTorch's backward does with the ``save_mean``/``save_invstd``
    of its forward); in eval they are ``running_mean`` and
    ``1/sqrt(running_var + eps)``, the constants the eval backward uses
    anyway (PyTorch's eval backward reads the running statistics), so
    ``stats`` only saves the reciprocal square roots there.  Either way the
    result has the bits of the backward without ``stats``.  Checked before any
    kernel runs (``TypeError``: not that dict; ``ValueError``: keys, shapes, a
    dict saved in the other mode, for another shape or ``eps``, or for other
    values of ``x`` (training) or of the running statistics (eval), as far as
    a sample of them tells); never modified.

    ``out`` (keyword only): an array as for the forward's ``out``, into which ``dx`` is
    written; the dict then holds ``"x": out`` (same bits).
    """
    return _batch_norm_backward(dy, x, running_mean, running_var, weight, bias, training, momentum, eps, out,
                                stats)


def batch_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                             convention="torch"):
    """The running statistics after one training step on ``x``.

    Returns new ``(running_mean, running_var)`` arrays (float64; the inputs are
    not modified).  ``convention="torch"`` (default) reproduces
    ``torch.nn.functional.batch_norm(training=True)``: unbiased batch
    variance, ``momentum`` weighting the new value, ``momentum=None`` a
    cumulative average with ``num_batches_tracked`` the counter *before* this
    step.  ``"onnx"`` and ``"flax"``: biased variance, ``momentum`` weighting
    the old value (see :mod:`refnorm.ops._running`).  An empty batch leaves
    the statistics unchanged, as in PyTorch.

    Shapes: ``x`` ``(N, C, *spatial)``; ``running_mean``, ``running_var`` and the
    two returned arrays ``(C,)``.  The batch statistics are over ``(N, *spatial)``
    per channel; more than one value per channel is required (``ValueError``).
    """
    xa, rm, rv = _check_common(x, running_mean, running_var)
    if rm is None:
        raise TypeError("running_mean and running_var must be arrays of shape (C,), got None")
    convention = R.check_convention(convention)
    factor = R.momentum_factor(momentum, num_batches_tracked, convention)
    n = _values_per_channel(xa.shape)
    if n == 0:
        return rm.copy(), rv.copy()
    if n == 1:
        raise ValueError("Expected more than 1 value per channel when training, "
                         f"got x of shape {tuple(xa.shape)}")
    N, C = xa.shape[0], xa.shape[1]
    st = nz.batch_stats(V.to_f64(xa).reshape(N, C, -1), 0.0)
    var = st.var(correction=1 if convention == "torch" else 0)
    return R.update(rm, st.mean, factor), R.update(rv, var, factor)


def batch_norm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
    """Forward mode of :func:`batch_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"`` (missing = zero;
    the running statistics are buffers, not differentiable).  Per channel set,
    ``ty = weight_c * rstd * P(tx) + tweight_c * xhat + tbias_c`` with
    ``P(v) = v - mean(v) - xhat * mean(xhat * v)`` for batch statistics and
    ``P(v) = v`` for running ones (docs/ops/batch_norm.md#batch-norm-jvp).
    ``y`` has the bits of :func:`batch_norm`.
    """
    shape, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias})
    y3, ty3 = D.normalize_jvp(x3, eps, w, b, C, 1, t, running=running)
    return y3.reshape(shape), ty3.reshape(shape)


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    """Second order of :func:`batch_norm`: the VJP of :func:`batch_norm_backward`
    (``cotangents`` over ``"x"``, ``"weight"``, ``"bias"``; result ``"dy"``,
    ``"x"`` and the given parameters, ``"bias"`` zeros), for batch and for
    running statistics (docs/ops/batch_norm.md#batch-norm-second-order).
    """
    shape, C, x3, w, b, eps, running = _prepare(x, running_mean, running_var, weight, bias, training, momentum, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias})
    d2dy, d2x, d2w = D.normalize_double_backward(dy3, x3, eps, w, C, 1, c, running=running)
    return D.second_order_dict(shape, d2dy, d2x, d2w, weight, bias)
