"""The comparison rule of the golden corpus: is an actual output within tolerance?

In the chain of :mod:`refnorm.golden` it needs only the dtype facts
(:mod:`refnorm.golden.dtypes`).  A tolerance is data (a dict stored per output in the manifest: ``atol``,
``rtol``, ``ulp``, ``scale``, see ``spec/FORMAT.md``); :func:`compare` applies
one to an actual output.  Checking a backend needs only this rule, never the
model that derived the tolerances (:mod:`refnorm.golden.tolerance`), so
:meth:`refnorm.golden.GoldenCase.assert_close` and the conformance harness
import it alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .dtypes import EMIN, spacing

__all__ = ["Comparison", "compare"]


@dataclass
class Comparison:
    """What :func:`compare` found: whether every element passed, the worst
    element (its error as a multiple of the tolerance, its index, its error in
    ULPs of the case dtype), how many failed, and a one-line message."""

    ok: bool
    worst_ratio: float
    worst_index: tuple | None
    worst_ulps: float
    n_bad: int
    message: str


def compare(expected, actual, tol: dict, scale=None, *, dtype: str) -> Comparison:
    """Compare ``actual`` with the float64 ``expected`` under ``tol``.

    Element i passes iff both are non-finite and equal (NaN matches NaN, an
    infinity the same-signed infinity), or both are finite and
    ``|a - e| <= atol + rtol * s`` (s = |e| or the scale tensor) or, when
    ``ulp`` is not None, ``|a - e| <= ulp * spacing_dtype(e)``, or ``a == 0``
    where ``|e|`` is below the smallest normal number of the dtype (a backend
    that flushes subnormal results to zero is not held to them).
    ``worst_ratio`` is the largest ``|a - e| / allowed`` (inf for a non-finite
    mismatch or a shape mismatch; 0.0 when equal)."""
    e = np.asarray(expected, dtype=np.float64)
    try:
        a = np.asarray(actual).astype(np.float64)
    except (TypeError, ValueError) as ex:
        return Comparison(False, math.inf, None, math.inf, -1, f"actual is not a float array ({ex})")
    if a.shape != e.shape:
        return Comparison(False, math.inf, None, math.inf, max(e.size, a.size),
                          f"shape mismatch: expected {e.shape}, got {a.shape}")
    if e.size == 0:
        return Comparison(True, 0.0, None, 0.0, 0, "empty: nothing to compare")
    if tol["scale"] == "tensor":
        if scale is None:
            raise ValueError("tolerance uses a scale tensor but none was given")
        s = np.asarray(scale, dtype=np.float64)
        if s.shape != e.shape:
            raise ValueError(f"scale shape {s.shape} != expected shape {e.shape}")
    else:
        s = np.abs(e)
    fe, fa = np.isfinite(e), np.isfinite(a)
    both_fin = fe & fa
    with np.errstate(all="ignore"):
        nonfin_ok = ~fe & ~fa & ((np.isnan(e) & np.isnan(a)) | (e == a))
        err = np.where(both_fin, np.abs(a - e), 0.0)
        allowed = tol["atol"] + tol["rtol"] * np.where(both_fin, np.where(np.isfinite(s), s, 0.0), 0.0)
        sp = spacing(np.where(fe, e, 0.0), dtype)
        if tol.get("ulp") is not None:
            allowed = np.maximum(allowed, tol["ulp"] * sp)
        ratio = np.where(err == 0, 0.0, np.where(allowed > 0, err / np.where(allowed > 0, allowed, 1.0), np.inf))
        ratio = np.where(both_fin, ratio, np.where(nonfin_ok, 0.0, np.inf))
        # Flush-to-zero allowance: an expected value below the smallest normal of d
        # may come back as zero (XLA:CPU, CUDA -ftz and SSE FTZ/DAZ modes flush
        # subnormal results); it is counted as within tolerance (ratio 0).
        ftz = both_fin & (a == 0) & (np.abs(e) < math.ldexp(1.0, EMIN[dtype]))
        ratio = np.where(ftz, 0.0, ratio)
        ok_el = nonfin_ok | ftz | (both_fin & (err <= allowed))
    n_bad = int((~ok_el).sum())
    flat = int(np.argmax(ratio))
    idx = tuple(int(i) for i in np.unravel_index(flat, e.shape))
    worst = float(ratio.flat[flat])
    with np.errstate(all="ignore"):
        ulps = float(err.flat[flat] / sp.flat[flat]) if both_fin.flat[flat] else math.inf
    if n_bad == 0:
        msg = f"ok: worst {worst:.3g} x tolerance ({ulps:.3g} ulp of {dtype}) at {idx}"
    else:
        msg = (f"{n_bad} of {e.size} elements out of tolerance; worst {worst:.3g} x tolerance at {idx}: "
               f"expected {e.flat[flat]!r}, got {a.flat[flat]!r} ({ulps:.3g} ulp of {dtype})")
    return Comparison(n_bad == 0, worst, idx, ulps, n_bad, msg)
