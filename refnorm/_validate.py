"""Argument checks shared by every public function.

Every check runs before any kernel, and every failure is a ``TypeError`` (wrong
kind of value) or ``ValueError`` (right kind, wrong value or shape) whose message
names the argument, what was expected and what was given.  Accepted arrays are
upcast *exactly* to C-contiguous float64 copies (or used as they are when they
already are float64 and contiguous: kernels never write to their inputs).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import ml_dtypes
import numpy as np

#: The real floating dtypes refnorm accepts; each converts to float64 exactly.
FLOAT_DTYPES = (
    np.dtype(np.float16),
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(np.float32),
    np.dtype(np.float64),
)
_DTYPE_NAMES = "float16, bfloat16, float32 or float64"


def as_float_array(name: str, value) -> np.ndarray:
    """Return ``value`` as an ndarray of one of :data:`FLOAT_DTYPES` (not converted)."""
    if value is None:
        raise TypeError(f"{name} must be an array of dtype {_DTYPE_NAMES}, got None")
    if isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array of dtype {_DTYPE_NAMES}, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a ragged list
        raise TypeError(f"{name} must be an array of dtype {_DTYPE_NAMES}; could not convert "
                        f"{type(value).__name__}: {exc}") from None
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a real floating dtype ({_DTYPE_NAMES}), got dtype {arr.dtype}")
    return arr


def to_f64(arr: np.ndarray) -> np.ndarray:
    """Exact upcast to a C-contiguous float64 array (a copy unless already so)."""
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_input(name: str, value, *, min_ndim: int, layout: str) -> np.ndarray:
    """The main input ``x``: a float array with at least ``min_ndim`` dims."""
    arr = as_float_array(name, value)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions ({layout}), "
                         f"got shape {tuple(arr.shape)}")
    return arr


def check_param(name: str, value, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """An optional parameter (weight, bias, running statistic) of exactly ``shape``."""
    if value is None:
        return None
    arr = as_float_array(name, value)
    if tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({what}), got shape {tuple(arr.shape)}")
    return to_f64(arr)


def check_real(name: str, value, *, allow_none: bool = False) -> float | None:
    """A real scalar (eps, momentum); bools and non-numbers are refused."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must not be NaN")
    return v


def offset_scale(weight: np.ndarray | None, offset: float) -> np.ndarray | None:
    """The scale ``offset + weight`` of a zero-centred weight (float64, rounded
    once; a new array, the weight is not modified); the weight itself when
    ``offset`` is 0, and None without a weight (no weight: no scale)."""
    if weight is None or offset == 0.0:
        return weight
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset}")
    return offset + weight


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_normalized_shape(normalized_shape, x_shape: tuple[int, ...]) -> tuple[int, ...]:
    """``normalized_shape``: an int or a non-empty sequence of ints equal to x's trailing dims."""
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        ns = (int(normalized_shape),)
    elif isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, (str, bytes)):
        ns = tuple(normalized_shape)
        for d in ns:
            if isinstance(d, bool) or not isinstance(d, numbers.Integral):
                raise TypeError(f"normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
        ns = tuple(int(d) for d in ns)
    else:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got "
                        f"{type(normalized_shape).__name__} {normalized_shape!r}")
    if len(ns) == 0:
        raise ValueError("normalized_shape must contain at least one dimension, got ()")
    if any(d < 0 for d in ns):
        raise ValueError(f"normalized_shape must not contain negative sizes, got {ns}")
    if len(ns) > len(x_shape) or tuple(x_shape[len(x_shape) - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {ns} must equal the trailing dimensions of x, "
                         f"got x of shape {tuple(x_shape)}")
    return ns


def check_dy(dy, y_shape: tuple[int, ...], name: str = "dy", output: str = "the forward output") -> np.ndarray:
    """The cotangent ``dy`` (or ``name``): a float array shaped exactly like the output it belongs to."""
    arr = as_float_array(name, dy)
    if tuple(arr.shape) != tuple(y_shape):
        raise ValueError(f"{name} must have the shape of {output} {tuple(y_shape)}, "
                         f"got shape {tuple(arr.shape)}")
    return to_f64(arr)


def prod(shape) -> int:
    return int(math.prod(shape))


def check_directions(kind: str, value, arguments: dict, *, upcast: bool = True) -> dict:
    """The ``tangents`` of an ``<op>_jvp`` or the ``cotangents`` of an
    ``<op>_double_backward`` (``kind`` names which): a dict keyed by
    differentiable argument name, each value a float array shaped like that
    argument.  ``arguments`` maps every differentiable argument, in order, to
    the value the call was given (None when the argument was not given).

    Returns ``{name: float64 array or None}`` for every name in ``arguments``
    (None: a zero direction -- a missing key, or an argument that was not
    given); with ``upcast=False`` the arrays keep their own dtype (a
    conformance backend passes them on to its framework as they are).
    Refuses, naming the key: a non-dict, a key that is not a differentiable
    argument, a direction for an argument that was not given (its derivative
    does not exist), a non-float array, a wrong shape."""
    if not isinstance(value, dict):
        raise TypeError(f"{kind} must be a dict {{argument name: array}} over {', '.join(map(repr, arguments))}, "
                        f"got {type(value).__name__}")
    out = dict.fromkeys(arguments)
    for key, arr in value.items():
        if key not in arguments:
            raise ValueError(f"{kind} has the key {key!r}, which is not a differentiable argument of this op; "
                             f"expected keys among {', '.join(map(repr, arguments))}")
        if arr is None:
            continue
        given = arguments[key]
        label = f"{kind}[{key!r}]"
        if given is None:
            raise ValueError(f"{label} was given but {key} is None: there is no {key} to differentiate along")
        a = as_float_array(label, arr)
        shape = tuple(np.shape(given))
        if tuple(a.shape) != shape:
            raise ValueError(f"{label} must have the shape of {key} {shape}, got shape {tuple(a.shape)}")
        out[key] = to_f64(a) if upcast else a
    return out
