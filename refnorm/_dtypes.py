"""The four floating-point dtypes refnorm knows, and exact rounding to them.

Facts (``DTYPES``, precision, exponent range, largest value) that the golden
corpus (:mod:`refnorm.golden.dtypes`) and the ops (a fused residual add rounds
its sum to a chosen dtype) share; this module imports nothing from refnorm.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

__all__ = ["DTYPES", "DTYPE_CODES", "DTYPE_NAMES", "EMIN", "MAXVAL", "PRECISION", "dtype_name", "round_to",
           "round_sum_to"]

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


def dtype_name(dtype) -> str:
    """The name (``"float64"`` ... ``"bfloat16"``) of a NumPy dtype or dtype name; ValueError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    for name, d in DTYPES.items():
        if dt == d:
            return name
    raise ValueError(f"expected one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")


def round_to(x64: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 values to ``dtype`` once, to nearest, ties to even."""
    x64 = np.asarray(x64, dtype=np.float64)
    if dtype == "float64":
        return x64.copy()
    if dtype in ("float32", "float16"):
        with np.errstate(over="ignore"):
            return x64.astype(DTYPES[dtype])  # NumPy converts double -> float/half directly (RNE)
    if dtype != "bfloat16":
        raise ValueError(f"unknown dtype {dtype!r}")
    out = x64.copy()
    fin = np.isfinite(out) & (out != 0)
    v = out[fin]
    _, e = np.frexp(v)  # v = f * 2**e, 0.5 <= |f| < 1: the leading bit has exponent e - 1
    lead = np.maximum(e - 1, EMIN["bfloat16"])
    q = np.ldexp(1.0, lead - (PRECISION["bfloat16"] - 1))  # the bf16 spacing at v (exact)
    r = np.rint(v / q) * q  # v / q exact (power of two); rint is ties-to-even
    r[np.abs(r) > MAXVAL["bfloat16"]] = np.inf * np.sign(r[np.abs(r) > MAXVAL["bfloat16"]])
    out[fin] = r
    return out.astype(np.float32).astype(DTYPES["bfloat16"])  # exact: r already has 8 bits


def round_sum_to(a: np.ndarray, b: np.ndarray, dtype: str) -> np.ndarray:
    """The exact sum ``a + b`` of float64 arrays rounded once, to nearest even, to ``dtype``.

    The float64 sum ``s`` and its exact error ``e`` (TwoSum) are formed; where
    ``e != 0`` and ``s`` has an even last bit, ``s`` moves one float64 ulp
    towards ``e`` (round to odd).  A round-to-odd value with at least two more
    bits than the target rounds to nearest exactly as the exact sum would
    (Boldo & Melquiond, IEEE Trans. Comput. 57(4), 2008), so ``a + b`` is
    rounded once even when a tiny addend would otherwise be dropped on a
    midpoint of the narrower dtype.  For ``dtype="float64"`` it is ``s``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s = a + b
        if dtype == "float64":
            return s
        bp = s - a
        e = (a - (s - bp)) + (b - bp)
        even = (s.view(np.int64) & 1) == 0
        nudge = np.isfinite(s) & np.isfinite(e) & (e != 0) & even
        s = np.where(nudge, np.nextafter(s, np.where(e > 0, np.inf, -np.inf)), s)
    return round_to(s, dtype)

