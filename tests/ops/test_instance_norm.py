"""instance_norm's own tests: its running statistics against torch; its inputs
for the cross-cutting tests are in tests/ops/cases/instance_norm.py."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

from .._util import assert_close, noncentred


@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 2, 4, 3)])
@pytest.mark.parametrize("momentum", [0.1, 0.6])
def test_instance_norm_running_stats(shape, momentum):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    C = shape[1]
    x = noncentred(rng, shape)
    rm, rv = rng.standard_normal(C), 0.5 + rng.random(C)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    F.instance_norm(torch.tensor(x), rmt, rvt, use_input_stats=True, momentum=momentum)
    m, v = refnorm.instance_norm_running_stats(x, rm, rv, momentum)
    assert_close(m, rmt.numpy(), "vs_torch_float64", op="instance_norm_running_stats", case=str(shape),
                 array="running_mean")
    assert_close(v, rvt.numpy(), "vs_torch_float64", op="instance_norm_running_stats", case=str(shape),
                 array="running_var")
