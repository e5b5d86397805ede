"""The tolerance rule's flush-to-zero allowance (spec/FORMAT.md section 7, rule 4):
a zero where the expected value is subnormal in the case dtype passes; a zero
anywhere else, or a wrong non-zero subnormal, still fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refnorm.golden.comparison import compare
from refnorm.golden.dtypes import DTYPE_NAMES, EMIN

TOL = {"scale": "expected", "atol": 0.0, "rtol": 1e-3, "ulp": None}


@pytest.mark.parametrize("dtype", DTYPE_NAMES)
def test_flushed_subnormal_passes_and_only_that(dtype):
    tiny = math.ldexp(1.0, EMIN[dtype])  # smallest normal of the dtype
    sub = tiny * 0.75
    assert compare(np.array([sub, 1.0]), np.array([0.0, 1.0]), TOL, dtype=dtype).ok
    assert compare(np.array([-sub]), np.array([-0.0]), TOL, dtype=dtype).ok
    # the smallest normal itself is not flushable
    assert not compare(np.array([tiny]), np.array([0.0]), TOL, dtype=dtype).ok
    # a wrong non-zero value in the subnormal range is judged by the usual rule
    assert not compare(np.array([sub]), np.array([sub / 4]), TOL, dtype=dtype).ok
