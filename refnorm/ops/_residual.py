"""The fused residual add shared by :mod:`refnorm.ops.add_rms_norm` and
:mod:`refnorm.ops.add_layer_norm`: validation, the rounded sum ``h`` and the
backward's cotangent ``dh``.

``h = x + residual`` is the exact sum rounded once, to nearest even, to
``residual_dtype`` (:func:`refnorm._dtypes.round_sum_to`: the float64 sum
rounded to odd, then to the target); the normalization then runs on that
rounded ``h``.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from .._dtypes import DTYPE_NAMES, DTYPES, dtype_name, round_sum_to


def check_residual_dtype(residual_dtype, x_dtype) -> str:
    """``residual_dtype``: None (the dtype of ``x``) or one of the four dtypes (name or NumPy dtype)."""
    if residual_dtype is None:
        return dtype_name(x_dtype)
    if not isinstance(residual_dtype, (str, np.dtype, type)):
        raise TypeError(f"residual_dtype must be None or one of {', '.join(DTYPE_NAMES)}, got "
                        f"{type(residual_dtype).__name__} {residual_dtype!r}")
    try:
        return dtype_name(residual_dtype)
    except ValueError:
        raise ValueError(f"residual_dtype must be None or one of {', '.join(DTYPE_NAMES)}, "
                         f"got {residual_dtype!r}") from None


def prepare(x, residual, residual_dtype):
    """(x as validated, the rounded ``h`` in float64, the dtype name of ``h``)."""
    xa = V.check_input("x", x, min_ndim=1, layout="(*, *normalized_shape)")
    ra = V.as_float_array("residual", residual)
    if ra.shape != xa.shape:
        raise ValueError(f"residual must have the shape of x {tuple(xa.shape)}, got shape {tuple(ra.shape)}")
    rd = check_residual_dtype(residual_dtype, xa.dtype)
    h = round_sum_to(V.to_f64(xa), V.to_f64(ra), rd)  # the exact sum rounded once
    return xa, np.asarray(h, dtype=np.float64), rd


def check_dh(dh, shape) -> np.ndarray | None:
    """The cotangent ``dh`` of the returned residual stream (None: zero)."""
    return None if dh is None else V.check_dy(dh, shape, "dh", "the returned residual h")


__all__ = ["DTYPES", "check_dh", "check_residual_dtype", "prepare"]


def tangent_of_h(directions: dict, shape) -> np.ndarray:
    """``th = tx + tresidual`` (float64; zeros when both are absent): the
    rounding of ``h`` to ``residual_dtype`` is straight-through, as in the
    backward (``dx = dresidual``)."""
    tx, tr = directions.get("x"), directions.get("residual")
    if tx is None and tr is None:
        return np.zeros(shape)
    if tx is None or tr is None:
        return (tx if tr is None else tr).copy()
    return tx + tr


def fused_second_order(inner: dict, cotangents: dict, shape) -> dict:
    """The double backward of a fused op from the one of its normalization of
    ``h`` (``inner``, keyed ``"dy"``, ``"x"``, parameters): the backward returns
    ``dx = dresidual = dnorm(dy; h) + dh``, so the cotangent of ``dh`` is
    ``a = cot_x + cot_residual`` and ``x`` and ``residual`` get the
    normalization's second-order gradient with respect to ``h``."""
    a = tangent_of_h(cotangents, shape)  # cot_x + cot_residual, the same sum
    inner = dict(inner)
    d2dy, d2h = inner.pop("dy"), inner.pop("x")
    return {"dy": d2dy, "dh": a, "x": d2h, "residual": d2h.copy(), **inner}
