"""Small deterministic inputs for the mutants' ``DEMO_INPUT`` (built at import: a few KB at most)."""

from __future__ import annotations

import ml_dtypes
import numpy as np


def rng(seed: int = 0):
    return np.random.default_rng(seed)


def noncentred(shape, seed=0, loc=-2.3, scale=0.5, dtype=np.float32):
    return (loc + scale * rng(seed).standard_normal(shape)).astype(dtype)


def affine(shape, seed=1, dtype=np.float32):
    r = rng(seed)
    return (1.0 + 0.5 * r.standard_normal(shape)).astype(dtype), (0.3 * r.standard_normal(shape)).astype(dtype)


def cotangent(shape, seed=2, dtype=np.float32):
    return rng(seed).standard_normal(shape).astype(dtype)


def demo(function, *args, **kwargs):
    """A ``DEMO_INPUT``: call ``function(*args, **kwargs)`` on the mutant and on refnorm."""
    return {"function": function, "args": args, "kwargs": kwargs}


BF16 = ml_dtypes.bfloat16
