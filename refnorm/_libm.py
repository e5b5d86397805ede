"""Elementwise transcendental functions with the same bits on every x86/ARM CPU.

NumPy's ``np.exp`` / ``np.tanh`` / ``np.log`` pick a SIMD implementation at run
time (AVX-512, AVX2, baseline), and the implementations may differ in the last
bit.  Anything that ends up in the golden corpus (expected values, tolerances,
scale tensors) must regenerate bit for bit on another machine, so it evaluates
these functions through the C library (:mod:`math`), element by element.  Use
them for small arrays only (the corpus's error bounds), never in a hot path.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["exp", "log", "pow", "tanh"]


def _elementwise(fn, name: str):
    vec = np.vectorize(fn, otypes=[np.float64])

    def apply(v):
        a = np.asarray(v, dtype=np.float64)
        return vec(a) if a.size else np.zeros_like(a)

    apply.__name__ = name
    apply.__doc__ = f"``math.{name}`` of every element (float64), the same bits on every CPU."
    return apply


exp = _elementwise(math.exp, "exp")
tanh = _elementwise(math.tanh, "tanh")


def _log(a: float) -> float:
    """``math.log`` with NumPy's values off its domain: -inf at 0, NaN below."""
    if a > 0 or math.isnan(a):
        return math.log(a)
    return -math.inf if a == 0 else math.nan


def _pow(a: float, c: float) -> float:
    """``math.pow`` with NumPy's values where it raises: inf on overflow and for 0 to a negative
    power, NaN for a negative base to a non-integer power."""
    try:
        return math.pow(a, c)
    except OverflowError:
        return math.copysign(math.inf, a) if float(c).is_integer() and c % 2 == 1 else math.inf
    except ValueError:
        return math.inf if a == 0 else math.nan


log = _elementwise(_log, "log")
_pow_vec = np.vectorize(_pow, otypes=[np.float64])


def pow(a, c):  # noqa: A001 -- the C library's name
    """``math.pow`` of every element of ``a`` (float64) to ``c`` (broadcast), the same bits on every CPU."""
    a, c = np.asarray(a, dtype=np.float64), np.asarray(c, dtype=np.float64)
    if not np.broadcast(a, c).size:
        return np.zeros(np.broadcast(a, c).shape)
    with np.errstate(all="ignore"):  # the C library's flags on overflow / 0 ** -c (the values are NumPy's)
        return _pow_vec(a, c)
