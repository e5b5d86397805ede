"""The four dtypes of the golden corpus: where the chain of :mod:`refnorm.golden` starts.

Everything else in :mod:`refnorm.golden` that names a dtype takes its facts
from here -- the case catalogue and the manifest validate dtype names against
:data:`DTYPE_NAMES`, the safetensors format maps them to its codes
(:data:`DTYPE_CODES`), the input recipes round to them, the comparison rule
measures errors in their ULPs (:func:`spacing`) and the tolerance model
derives unit roundoffs from :data:`PRECISION`.  The facts themselves live in
:mod:`refnorm._dtypes` (the ops round with them too); this module adds
:func:`spacing` and imports nothing else from the package.
"""

from __future__ import annotations

import numpy as np

from .._dtypes import DTYPE_CODES, DTYPE_NAMES, DTYPES, EMIN, MAXVAL, PRECISION

__all__ = ["DTYPES", "DTYPE_CODES", "DTYPE_NAMES", "EMIN", "MAXVAL", "PRECISION", "spacing"]

def spacing(x: np.ndarray, dtype: str) -> np.ndarray:
    """The distance from |x| to the next larger magnitude in ``dtype``
    (subnormal spacing below the normal range), for float64 ``x``."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    p, emin = PRECISION[dtype], EMIN[dtype]
    with np.errstate(divide="ignore", invalid="ignore"):
        _, e = np.frexp(np.where(np.isfinite(x) & (x > 0), x, 1.0))
    lead = np.maximum(e - 1, emin)
    lead = np.where(np.isfinite(x) & (x > 0), lead, emin)
    return np.ldexp(1.0, (lead - (p - 1)).astype(np.int64))
