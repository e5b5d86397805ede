"""The four dtypes of the golden corpus: where the chain of :mod:`refnorm.golden` starts.

Everything else in :mod:`refnorm.golden` that names a dtype takes its facts
from here -- the case catalogue and the manifest validate dtype names against
:data:`DTYPE_NAMES`, the safetensors format maps them to its codes
(:data:`DTYPE_CODES`), the input recipes round to them, the comparison rule
measures errors in their ULPs (:func:`spacing`) and the tolerance model
derives unit roundoffs from :data:`PRECISION`.  This module imports nothing
from the package.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

__all__ = ["DTYPES", "DTYPE_CODES", "DTYPE_NAMES", "EMIN", "MAXVAL", "PRECISION", "spacing"]

#: dtype name -> numpy dtype (bfloat16 is ml_dtypes'), in the corpus's order.
DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
#: The dtype names a case may have, widest first.
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)
#: dtype name -> the safetensors dtype code of its tensors.
DTYPE_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16"}
#: significand precision (bits, including the implicit one)
PRECISION = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}
#: exponent of the smallest normal number
EMIN = {"float64": -1022, "float32": -126, "float16": -14, "bfloat16": -126}
#: the largest finite value
MAXVAL = {name: float(np.finfo(dt).max) if name != "bfloat16" else float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
          for name, dt in DTYPES.items()}


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
