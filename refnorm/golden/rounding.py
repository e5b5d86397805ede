"""The rounding model of a backend under test, shared by both halves of the
tolerance model.

A backend computes in the case dtype d: it reads d, accumulates in float32 for
the half types (float64 for float64, float32 for float32) and rounds each
output once to d.  Its unit roundoffs are ``u_out`` (:func:`unit_roundoff`) and
``u_acc`` (:func:`acc_roundoff`); a sum of K terms errs by at most
``growth(K) * u_acc`` times the sum of their magnitudes, with the
probabilistic bound of Higham & Mary, ``growth(K) = LAMBDA sqrt(K) + 1``.  The
derivation is in :mod:`refnorm.golden.tolerance`.

In the chain of :mod:`refnorm.golden` this module comes before
:mod:`refnorm.golden.error_bounds` (the seed layers' running error analysis)
and :mod:`refnorm.golden.tolerance`, which both use it.
"""

from __future__ import annotations

import math

from .dtypes import PRECISION

__all__ = ["LAMBDA", "acc_roundoff", "growth", "unit_roundoff"]

LAMBDA = 6.0  # probabilistic summation bound: P(exceeded) <= 2 exp(-LAMBDA^2 / 2)


def unit_roundoff(dtype: str) -> float:
    """``u_out``: the unit roundoff of ``dtype``, ``2^-p``."""
    return 2.0 ** -PRECISION[dtype]


def acc_roundoff(dtype: str) -> float:
    """``u_acc``: the unit roundoff of the accumulation, float64 for float64, else float32."""
    return 2.0 ** -53 if dtype == "float64" else 2.0 ** -24


def growth(K: int) -> float:
    """``f(K) = LAMBDA sqrt(K) + 1``: the error growth of a sum of K terms."""
    return LAMBDA * math.sqrt(max(int(K), 0)) + 1.0
