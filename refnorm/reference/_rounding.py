"""The rounded sum of a fused residual add, inside a differentiable definition.

``rounded_sum(x, r, dtype)`` is the exact sum ``x + r`` rounded once (to
nearest even) to ``dtype``, as float64 values; its derivative is taken as the
identity for both addends ("straight through"): rounding is piecewise
constant, and every framework's autograd passes the gradient of a dtype cast
through unchanged.
"""

import numpy as np
from autograd.extend import defjvp, defvjp, primitive

from .._dtypes import round_sum_to


@primitive
def rounded_sum(x, r, dtype):
    return np.asarray(round_sum_to(x, r, "float64" if dtype is None else dtype), dtype=np.float64)


defvjp(rounded_sum, lambda ans, x, r, dtype: lambda g: g, lambda ans, x, r, dtype: lambda g: g)
# forward mode: the same straight-through rule (the tangent of h is tx + tr)
defjvp(rounded_sum, lambda g, ans, x, r, dtype: g, lambda g, ans, x, r, dtype: g)
