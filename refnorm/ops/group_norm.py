"""GroupNorm: the fast path.

``x`` of shape ``(N, C, *spatial)`` is viewed as ``(1, N*G, C/G * HW)``: each
(sample, group) is one reduction set of ``C/G * HW`` elements.  The affine
parameters are per channel: ``P = G`` groups of ``Q = C/G`` channels, each
channel covering ``T = HW`` consecutive elements of its set.
"""

from __future__ import annotations

from .. import _validate as V
from . import _layout as L
from . import _derivatives as D
from . import _normalize as nz
from . import _saved as SV

#: the saved statistics (``group_norm_stats``)
STATS = ("mean", "rstd")


def layout(x_shape, num_groups) -> L.Layout:
    """The view ``(1, N*G, C/G * HW)``, a per-channel affine (``P = G``,
    ``Q = C/G``, ``T = HW``), ``mean``/``rstd`` of shape ``(N, G)``."""
    N, C, HW, G = x_shape[0], x_shape[1], V.prod(x_shape[2:]), int(num_groups)
    return L.channels(x_shape, (1, N * G, (C // G) * HW), (G, C // G, HW), {"mean": (N, G), "rstd": (N, G)})


def _prepare(x, num_groups, weight, bias, eps):
    xa = V.check_input("x", x, min_ndim=2, layout="(N, C, *spatial)")
    G = V.check_int("num_groups", num_groups, minimum=1)
    C = xa.shape[1]
    if C % G != 0:
        raise ValueError(f"num_groups must divide the number of channels C = {C}, got num_groups = {G}")
    w = V.check_param("weight", weight, (C,), "one value per channel C")
    b = V.check_param("bias", bias, (C,), "one value per channel C")
    eps = V.check_real("eps", eps)
    HW = V.prod(xa.shape[2:])
    x3 = V.to_f64(xa).reshape(layout(xa.shape, G).view)
    return xa.shape, G, HW, x3, w, b, eps


def _group_norm(x, num_groups, weight, bias, eps, out, saving=False):
    shape, G, HW, x3, w, b, eps = _prepare(x, num_groups, weight, bias, eps)
    if out is not None:
        nz.check_out(out, shape, ("x", x), ("weight", weight), ("bias", bias))
    y3, st = nz.normalize(x3, eps, w, b, P=G, Q=shape[1] // G, out=out)
    y = out if out is not None else y3.reshape(shape)
    if not saving:
        return y, None
    return y, SV.save("group_norm", SV.BATCH, x3, eps, st, STATS, {"mean": (shape[0], G), "rstd": (shape[0], G)})


def _group_norm_backward(dy, x, num_groups, weight, bias, eps, out, stats):
    shape, G, HW, x3, w, b, eps = _prepare(x, num_groups, weight, bias, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    if out is not None:
        nz.check_out(out, shape, ("dy", dy), ("x", x), ("weight", weight), ("bias", bias))
    saved = None
    if stats is not None:
        saved = SV.restore(stats, "group_norm_backward", "group_norm", SV.BATCH, x3, eps, STATS,
                           {"mean": (shape[0], G), "rstd": (shape[0], G)})
    dx3, dw, db = nz.normalize_backward(dy3, x3, eps, w, P=G, Q=shape[1] // G,
                                        affine=w is not None or b is not None, out=out, saved=saved)
    return nz.gradient_dict(dx3, shape, out, w, b, dw, db)


def group_norm_stats(x, num_groups, weight=None, bias=None, eps=1e-5):
    """``y`` and the saved ``mean``, ``rstd`` of shape ``(N, num_groups)``.

    The dict is a ``dict`` with exactly those keys that also keeps, privately,
    the low parts of the double-double statistics and a fingerprint of the
    call (:class:`refnorm.ops._saved.SavedStats`): pass it back as
    ``group_norm_backward(..., stats=...)`` to skip the statistics pass."""
    return _group_norm(x, num_groups, weight, bias, eps, None, saving=True)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None):
    """Group normalization, as ``torch.nn.functional.group_norm``.

    The C channels are split into ``num_groups`` contiguous groups of C/G;
    each (sample, group) is normalized over its channels and spatial
    positions (biased variance, ``eps`` inside the square root), then a
    per-channel affine is applied.  G = 1 is LayerNorm over ``(C, *spatial)``
    with a per-channel affine; G = C is InstanceNorm.

    Parameters
    ----------
    x : array, shape ``(N, C, *spatial)``
    num_groups : int dividing C
    weight, bias : array of shape ``(C,)`` or None
    eps : float
    out : float64 array shaped like ``x``, C-contiguous, writeable, sharing no memory with an
        input; optional, keyword only: ``y`` is written into it and it is returned (same bits).

    Returns
    -------
    y : float64 array shaped like ``x``
    """
    return _group_norm(x, num_groups, weight, bias, eps, out)[0]


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5, *, stats=None, out=None):
    """Gradients of :func:`group_norm`: ``{"x": dx[, "weight"][, "bias"]}``.

    Per (sample, group), with ``g = weight[c] * dy``:
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``;
    ``dweight[c] = sum_{n, spatial} dy * xhat``; ``dbias[c] = sum_{n, spatial} dy``.

    Shapes: ``dy`` and ``dx`` like ``x`` (``(N, C, *spatial)``); ``dweight`` and
    ``dbias`` ``(C,)`` (per channel, not per group), returned only when
    ``weight`` / ``bias`` is given.  All float64.

    ``stats`` (keyword only): the statistics dict :func:`group_norm_stats`
    returned for the same ``x``, ``num_groups`` and ``eps``; the backward then
    reads the saved mean and rstd instead of recomputing them (same bits).
    Checked before any kernel runs (``TypeError``: not that dict;
    ``ValueError``: keys, shapes, or saved for another shape, ``eps`` or input
    values, as far as a sample of ``x`` tells); never modified.

    ``out`` (keyword only): an array as for the forward's ``out``, into which ``dx`` is
    written; the dict then holds ``"x": out`` (same bits).
    """
    return _group_norm_backward(dy, x, num_groups, weight, bias, eps, out, stats)


def group_norm_jvp(tangents, x, num_groups, weight=None, bias=None, eps=1e-5):
    """Forward mode of :func:`group_norm`: ``(y, ty)``.

    ``tangents``: a dict over ``"x"``, ``"weight"``, ``"bias"`` (missing = zero).
    Per (sample, group) set, ``ty = weight_c * rstd * P(tx) + tweight_c * xhat + tbias_c``
    with ``P(v) = v - mean(v) - xhat * mean(xhat * v)``; ``y`` has the bits of
    :func:`group_norm`.
    """
    shape, G, HW, x3, w, b, eps = _prepare(x, num_groups, weight, bias, eps)
    t = V.check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias})
    Q = shape[1] // G
    y3, ty3 = D.normalize_jvp(x3, eps, w, b, G, Q, t)
    return y3.reshape(shape), ty3.reshape(shape)


def group_norm_double_backward(cotangents, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    """Second order of :func:`group_norm`: the VJP of :func:`group_norm_backward`
    (``cotangents`` over ``"x"``, ``"weight"``, ``"bias"``; result ``"dy"``,
    ``"x"`` and the given parameters, ``"bias"`` zeros)."""
    shape, G, HW, x3, w, b, eps = _prepare(x, num_groups, weight, bias, eps)
    dy3 = V.check_dy(dy, shape).reshape(x3.shape)
    c = V.check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias})
    Q = shape[1] // G
    d2dy, d2x, d2w = D.normalize_double_backward(dy3, x3, eps, w, G, Q, c)
    return D.second_order_dict(shape, d2dy, d2x, d2w, weight, bias)
