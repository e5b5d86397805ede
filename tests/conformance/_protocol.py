"""Helpers shared by the backend and mutant tests: refnorm's implementation of
a protocol function, and a function's outputs as a flat dict of float64 arrays."""

from __future__ import annotations

import importlib

import numpy as np

import refnorm


def ref(name):
    """refnorm's implementation of a protocol function (``<op>_stats`` from refnorm.ops)."""
    if hasattr(refnorm, name):
        return getattr(refnorm, name)
    op = name[: -len("_stats")]
    return getattr(importlib.import_module(f"refnorm.ops.{op}"), name)


def flatten(out):
    """``y``, a gradient dict, ``(y, stats)`` or a tuple, as ``{name: float64 array}``."""
    if isinstance(out, dict):
        return {k: np.asarray(v).astype(np.float64) for k, v in out.items()}
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        return {"y": np.asarray(out[0]).astype(np.float64), **flatten(out[1])}
    if isinstance(out, tuple):
        return {f"out{i}": np.asarray(v).astype(np.float64) for i, v in enumerate(out)}
    return {"y": np.asarray(out).astype(np.float64)}
