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

__all__ = ["exp", "tanh"]


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
