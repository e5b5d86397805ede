"""RMSNorm: the fast path.

Viewed like LayerNorm (``(1, rows, D)``, per-element weight) but without
centring: ``mean`` is identically zero and the backward has no ``c1`` term.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _layout as L
from . import _derivatives as D
from . import _normalize as nz
from . import _saved as SV

#: the saved statistics (``rms_norm_stats``)
STATS = ("rstd",)


def default_eps(dtype) -> float:
    """The epsilon PyTorch's ``rms_norm(eps=None)`` really uses for ``dtype``.

    The docs say ``torch.finfo(x.dtype).eps``, but the CPU composite
    (``rms_norm_composite``) upcasts float16/bfloat16 to float32 and uses the
    float32 epsilon: float64 -> 2**-52, everything else -> 2**-23
    (checked against torch 2.13 in ``tests/ops/test_rms_norm.py``).
    """
    return float(np.finfo(np.float64).eps) if np.dtype(dtype) == np.float64 else float(np.finfo(np.float32).eps)


def layout(x_shape, normalized_shape) -> L.Layout:
    """As LayerNorm's (``(1, rows, D)``, per-element weight); the only saved
    statistic is ``rstd``."""
    return L.trailing(x_shape, V.check_normalized_shape(normalized_shape, x_shape), ("rstd",))


def _prepare(x, normalized_shape, weight, eps, offset):
    xa = V.check_input("x", x, min_ndim=1, layout="(*, *normalized_shape)")
    ns = V.check_normalized_shape(normalized_shape, xa.shape)
    w = V.offset_scale(V.check_param("weight", weight, ns, "normalized_shape"), V.check_real("offset", offset))
    eps = default_eps(xa.dtype) if eps is None else V.check_real("eps", eps)
    return xa.shape, ns, V.to_f64(xa).reshape(layout(xa.shape, ns).view), w, eps


def _rms_norm(x, normalized_shape, weight, eps, offset, out, saving=False):
    shape, ns, x3, w, eps = _prepare(x, normalized_shape, weight, eps, offset)
    if out is not None:
        nz.check_out(out, shape, ("x", x), ("weight", weight))
    y3, st = nz.normalize(x3, eps, w, None, P=1, Q=x3.shape[2], center=False, out=out)
    y = out if out is not None else y3.reshape(shape)
    if not saving:
        return y, None
    return y, SV.save("rms_norm", SV.RMS, x3, eps, st, STATS, {"rstd": shape[: len(shape) - len(ns)]})


def _rms_norm_backward(dy, x, normalized_shape, weight, eps, offset, out, stats=None, fn="rms_norm_backward"):
    shape, ns, x3, w, eps = _prepare(x, normalized_shape, weight, eps, offset)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if out is not None:
        nz.check_out(out, shape, ("dy", dy), ("x", x), ("weight", weight))
    saved = None
    if stats is not None:
        saved = SV.restore(stats, fn, "rms_norm", SV.RMS, x3, eps, STATS, {"rstd": shape[: len(shape) - len(ns)]})
    dx3, dw, _ = nz.normalize_backward(dy3, x3, eps, w, P=1, Q=x3.shape[2], rms=True, affine=w is not None,
                                       out=out, saved=saved)
    return nz.gradient_dict(dx3, shape, out, w, None, dw, None, param_shape=ns)


def rms_norm_stats(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    """``y`` and the saved statistic ``rstd`` (shape ``x.shape[:-len(normalized_shape)]``).

    The dict is a ``dict`` with exactly that key that also keeps, privately,
    the low part of the double-double rstd and a fingerprint of the call
    (:class:`refnorm.ops._saved.SavedStats`): pass it back as
    ``rms_norm_backward(..., stats=...)`` to skip the statistics pass."""
    return _rms_norm(x, normalized_shape, weight, eps, offset, None, saving=True)


def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0, out=None):
    """Root-mean-square normalization, as ``torch.nn.functional.rms_norm``.

    .. math:: y = \\frac{x}{\\sqrt{\\mathrm{E}[x^2] + \\epsilon}} \\cdot \\gamma

    over the last ``len(normalized_shape)`` dimensions; no mean subtraction,
    no bias.  ``eps=None`` is what PyTorch actually does: the float64 machine
    epsilon for float64 input and the float32 one for every other dtype
    (float16/bfloat16 included), see :func:`default_eps`.

    Parameters
    ----------
    x : array, shape ``(*, *normalized_shape)``, float16/bfloat16/float32/float64
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    weight : array of shape ``normalized_shape`` or None (per element; no bias)
    eps : float or None, added to the mean square inside the square root
    out : float64 array shaped like ``x``, C-contiguous, writeable, sharing no memory with an
        input; optional, keyword only: ``y`` is written into it and it is returned (same bits).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return _rms_norm(x, normalized_shape, weight, eps, offset, out)[0]


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0, stats=None, out=None):
    """Gradients of :func:`rms_norm`: ``{"x": dx[, "weight": dweight]}``.

    With ``r = rstd``, ``xhat = x * r`` and ``g = weight * dy`` per row:
    ``dx = r * (g - xhat * mean(g * xhat))``; ``dweight = sum_rows dy * xhat``.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(*, *normalized_shape)``); ``dweight``
    ``normalized_shape``, returned only when ``weight`` is given.  All float64.

    ``stats`` (keyword only): the statistics dict :func:`rms_norm_stats`
    returned for the same ``x``, ``normalized_shape`` and ``eps``; the backward
    then reads the saved rstd instead of recomputing it (same bits).  Checked
    before any kernel runs (``TypeError``: not that dict; ``ValueError``: keys,
    shapes, or saved for another shape, ``eps`` or input values, as far as a
    sample of ``x`` tells); never modified.

    ``out`` (keyword only): an array as for the forward's ``out``, into which ``dx`` is
    written; the dict then holds ``"x": out`` (same bits).
    """
    return _rms_norm_backward(dy, x, normalized_shape, weight, eps, offset, out, stats)


def rms_norm_jvp(tangents, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    """Forward mode of :func:`rms_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"`` (missing = zero).  Per row,
    with ``P(v) = v - xhat * mean(xhat * v)`` (no centring):
    ``ty = (offset + weight) * rstd * P(tx) + tweight * xhat``.  ``y`` has the
    bits of :func:`rms_norm`; float64, shaped like ``x``.
    """
    shape, ns, x3, w, eps = _prepare(x, normalized_shape, weight, eps, offset)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight})
    y3, ty3 = D.normalize_jvp(x3, eps, w, None, 1, x3.shape[2], t, center=False)
    return y3.reshape(shape), ty3.reshape(shape)


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    """Second order of :func:`rms_norm`: the VJP of :func:`rms_norm_backward`.

    ``cotangents``: a dict over ``"x"``, ``"weight"`` (missing = zero).  Returns
    ``{"dy": ..., "x": ...}`` plus ``"weight"`` when given, the gradients of
    ``L = sum_k <cotangents[k], rms_norm_backward(dy, ...)[k]>``; float64.
    """
    shape, ns, x3, w, eps = _prepare(x, normalized_shape, weight, eps, offset)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight})
    d2dy, d2x, d2w = D.normalize_double_backward(dy3, x3, eps, w, 1, x3.shape[2], c, center=False)
    return D.second_order_dict(shape, d2dy, d2x, d2w, weight, None, ns)
