"""rms_norm's own tests: the eps PyTorch really uses for eps=None, in every
dtype (refnorm.ops.rms_norm.default_eps); its inputs for the cross-cutting
tests are in tests/ops/cases/rms_norm.py."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import refnorm

from .._util import assert_close


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_rms_norm_default_eps_is_what_torch_runs(dtype):
    """eps=None: torch uses float32's epsilon for float32/float16/bfloat16 (not
    finfo(x.dtype).eps) and float64's for float64.  With mean(x^2) ~ 1e-8 the
    candidate epsilons give results that differ by far more than rounding."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    x64 = 1e-4 * rng.standard_normal((4, 16))
    if dtype == "float64":
        x, xt = x64, torch.tensor(x64)
        tol = "vs_torch_float64"
    else:
        x = x64.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))
        xt = torch.tensor(x.astype(np.float32)).to(getattr(torch, dtype))
        tol = f"vs_torch_{dtype}"
    yt = F.rms_norm(xt, (16,)).double().numpy()
    assert_close(refnorm.rms_norm(x, (16,)), yt, tol, op="rms_norm", case=f"eps=None-{dtype}", array="y")
    # and the documented-but-not-real alternative would be detectably different
    if dtype in ("float16", "bfloat16"):
        alt = refnorm.rms_norm(x, (16,), eps=float(torch.finfo(getattr(torch, dtype)).eps))
        assert np.max(np.abs(alt - yt)) > 0.1
