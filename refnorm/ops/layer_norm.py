"""LayerNorm: the fast path (validation, canonical view, kernels).

The definition is :mod:`refnorm.reference.layer_norm`.  Here ``x`` of shape
``(*, *normalized_shape)`` is viewed as ``(1, rows, D)`` with
``D = prod(normalized_shape)``: each row is one reduction set, and the affine
parameters are per element of the row (``P = 1, T = 1``).
"""

from __future__ import annotations


from .. import _validate as V
from . import _layout as L
from . import _derivatives as D
from . import _normalize as nz
from . import _saved as SV

#: the saved statistics (``layer_norm_stats``)
STATS = ("mean", "rstd")


def layout(x_shape, normalized_shape) -> L.Layout:
    """Each row of the trailing ``normalized_shape`` is a reduction set: the
    view ``(1, rows, D)``, a per-element affine, ``mean``/``rstd`` shaped like
    the leading dimensions."""
    return L.trailing(x_shape, V.check_normalized_shape(normalized_shape, x_shape), ("mean", "rstd"))


def _prepare(x, normalized_shape, weight, bias, eps, offset):
    xa = V.check_input("x", x, min_ndim=1, layout="(*, *normalized_shape)")
    ns = V.check_normalized_shape(normalized_shape, xa.shape)
    w = V.offset_scale(V.check_param("weight", weight, ns, "normalized_shape"), V.check_real("offset", offset))
    b = V.check_param("bias", bias, ns, "normalized_shape")
    eps = V.check_real("eps", eps)
    x3 = V.to_f64(xa).reshape(layout(xa.shape, ns).view)
    return xa.shape, ns, x3, w, b, eps


def _layer_norm(x, normalized_shape, weight, bias, eps, offset, out, saving=False):
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps, offset)
    if out is not None:
        nz.check_out(out, shape, ("x", x), ("weight", weight), ("bias", bias))
    y3, st = nz.normalize(x3, eps, w, b, P=1, Q=x3.shape[2], out=out)
    y = out if out is not None else y3.reshape(shape)
    if not saving:
        return y, None
    lead = shape[: len(shape) - len(ns)]
    return y, SV.save("layer_norm", SV.BATCH, x3, eps, st, STATS, {"mean": lead, "rstd": lead})


def _layer_norm_backward(dy, x, normalized_shape, weight, bias, eps, offset, out, stats=None,
                         fn="layer_norm_backward"):
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps, offset)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if out is not None:
        nz.check_out(out, shape, ("dy", dy), ("x", x), ("weight", weight), ("bias", bias))
    saved = None
    if stats is not None:
        lead = shape[: len(shape) - len(ns)]
        saved = SV.restore(stats, fn, "layer_norm", SV.BATCH, x3, eps, STATS, {"mean": lead, "rstd": lead})
    dx3, dw, db = nz.normalize_backward(dy3, x3, eps, w, P=1, Q=x3.shape[2], affine=w is not None or b is not None,
                                        out=out, saved=saved)
    return nz.gradient_dict(dx3, shape, out, w, b, dw, db, param_shape=ns)


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    """``y`` together with the saved statistics ``mean`` and ``rstd``, each of
    shape ``x.shape[:-len(normalized_shape)]``.

    The dict is a ``dict`` with exactly those keys that also keeps, privately,
    the low parts of the double-double statistics and a fingerprint of the
    call (:class:`refnorm.ops._saved.SavedStats`): pass it back as
    ``layer_norm_backward(..., stats=...)`` to skip the statistics pass."""
    return _layer_norm(x, normalized_shape, weight, bias, eps, offset, None, saving=True)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0, out=None):
    """Layer normalization, as ``torch.nn.functional.layer_norm``.

    .. math:: y = \\frac{x - \\mathrm{E}[x]}{\\sqrt{\\mathrm{Var}[x] + \\epsilon}} \\cdot \\gamma + \\beta

    over the last ``len(normalized_shape)`` dimensions, with the biased
    variance and ``eps`` inside the square root.

    Parameters
    ----------
    x : array, shape ``(*, *normalized_shape)``, float16/bfloat16/float32/float64
    normalized_shape : int or sequence of int, the trailing dimensions of ``x``
    weight, bias : array of shape ``normalized_shape`` or None (per element)
    eps : float, added to the variance inside the square root
    out : float64 array shaped like ``x``, C-contiguous, writeable, sharing no memory with an
        input; optional, keyword only: ``y`` is written into it and it is returned (same bits).

    Returns
    -------
    y : float64 array shaped like ``x``.
    """
    return _layer_norm(x, normalized_shape, weight, bias, eps, offset, out)[0]


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0, stats=None,
                        out=None):
    """Gradients of :func:`layer_norm` for the cotangent ``dy``.

    Returns ``{"x": dx, "weight": dweight, "bias": dbias}`` (the last two only
    when given), float64, shaped like the corresponding arguments.  With
    ``g = weight * dy`` per row: ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``;
    ``dweight = sum_rows dy * xhat``; ``dbias = sum_rows dy``.

    ``stats`` (keyword only): the statistics dict :func:`layer_norm_stats`
    returned for the same ``x``, ``normalized_shape`` and ``eps``; the
    backward then reads the saved mean and rstd instead of recomputing them
    from ``x`` (one pass of double-double arithmetic less) and returns the
    same bits.  It is checked before any kernel runs (``TypeError``: not that
    dict, e.g. a plain dict lacking the low parts; ``ValueError``: keys,
    shapes, or a dict saved for another shape, ``eps`` or input values, as
    far as a sample of ``x`` tells) and never modified.

    ``out`` (keyword only): an array as for the forward's ``out``, into which ``dx`` is
    written; the dict then holds ``"x": out`` (same bits).
    """
    return _layer_norm_backward(dy, x, normalized_shape, weight, bias, eps, offset, out, stats)


def _params(x, weight, bias):
    return {"x": x, "weight": weight, "bias": bias}


def layer_norm_jvp(tangents, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    """Forward mode of :func:`layer_norm`: ``(y, ty)``.

    ``tangents`` is a dict over ``"x"``, ``"weight"``, ``"bias"`` (a missing key
    is a zero tangent), each shaped like its argument.  Per row, with
    ``P(v) = v - mean(v) - xhat * mean(xhat * v)``:
    ``ty = (offset + weight) * rstd * P(tx) + tweight * xhat + tbias``
    (docs/ops/layer_norm.md#layer-norm-jvp).  ``y`` has the bits of
    :func:`layer_norm`; both are float64, shaped like ``x``.
    """
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps, offset)
    t = V.check_directions("tangents", tangents, _params(x, weight, bias))
    y3, ty3 = D.normalize_jvp(x3, eps, w, b, 1, x3.shape[2], t)
    return y3.reshape(shape), ty3.reshape(shape)


def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                               offset=0.0):
    """Second order of :func:`layer_norm`: the VJP of :func:`layer_norm_backward`.

    ``cotangents`` is a dict over ``"x"``, ``"weight"``, ``"bias"`` (the keys of
    the backward's result; missing = zero).  For
    ``L = sum_k <cotangents[k], layer_norm_backward(dy, ...)[k]>`` returns
    ``{"dy": dL/ddy, "x": dL/dx}`` plus ``"weight"`` and ``"bias"`` (zeros: the
    backward does not depend on the bias) when given; float64, shaped like the
    arguments (derivation: docs/ops/layer_norm.md#layer-norm-second-order).
    """
    shape, ns, x3, w, b, eps = _prepare(x, normalized_shape, weight, bias, eps, offset)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, _params(x, weight, bias))
    d2dy, d2x, d2w = D.normalize_double_backward(dy3, x3, eps, w, 1, x3.shape[2], c)
    return D.second_order_dict(shape, d2dy, d2x, d2w, weight, bias, ns)
