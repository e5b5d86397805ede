"""batch_norm's own tests: eval mode, and its running statistics in the
ONNX/Flax conventions and against torch; its inputs for the cross-cutting
tests are in tests/ops/cases/batch_norm.py."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

from .._util import assert_close, noncentred, random_affine


def test_eval_batch_norm_is_affine_in_x():
    """Eval mode uses the running statistics: y is exactly affine in x, and dx = w * rstd * dy."""
    rng = np.random.default_rng(8)
    x = noncentred(rng, (4, 3, 5))
    rm, rv = rng.standard_normal(3), 0.5 + rng.random(3)
    w, b = random_affine(rng, (3,))
    y = refnorm.batch_norm(x, rm, rv, w, b)
    ref = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5) * w[:, None] + b[:, None]
    np.testing.assert_allclose(y, ref, rtol=1e-15, atol=1e-15)
    dy = rng.standard_normal(x.shape)
    dx = refnorm.batch_norm_backward(dy, x, rm, rv, w, b)["x"]
    np.testing.assert_allclose(dx, dy * (w / np.sqrt(rv + 1e-5))[:, None], rtol=2e-16 * 4, atol=0)


@pytest.mark.parametrize("convention,momentum", [("onnx", 0.9), ("flax", 0.99)])
def test_running_stats_old_weighted_conventions(convention, momentum):
    """ONNX BatchNormalization-14 / Flax: new = m * old + (1 - m) * batch, biased variance."""
    rng = np.random.default_rng(9)
    x = noncentred(rng, (4, 3, 2, 2))
    rm, rv = np.zeros(3), np.ones(3)
    m, v = refnorm.batch_norm_running_stats(x, rm, rv, momentum, convention=convention)
    bm = x.mean(axis=(0, 2, 3))
    bv = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(m, momentum * rm + (1 - momentum) * bm, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(v, momentum * rv + (1 - momentum) * bv, rtol=1e-14)
    mt, vt = refnorm.batch_norm_running_stats(x, rm, rv, 1 - momentum)  # torch: unbiased
    n = 16
    np.testing.assert_allclose(vt, momentum * rv + (1 - momentum) * bv * n / (n - 1), rtol=1e-14)
    np.testing.assert_allclose(mt, m, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 2, 2, 3)])
@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
def test_batch_norm_running_stats(shape, momentum):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    C = shape[1]
    x = noncentred(rng, shape)
    rm, rv = rng.standard_normal(C), 0.5 + rng.random(C)
    bn = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 5: torch.nn.BatchNorm3d}[len(shape)]
    mod = bn(C, momentum=momentum).double().train()
    with torch.no_grad():
        mod.running_mean.copy_(torch.tensor(rm))
        mod.running_var.copy_(torch.tensor(rv))
        mod.num_batches_tracked.fill_(4)
        mod(torch.tensor(x))
    m, v = refnorm.batch_norm_running_stats(x, rm, rv, momentum, num_batches_tracked=4)
    assert_close(m, mod.running_mean.numpy(), "vs_torch_float64", op="batch_norm_running_stats",
                 case=str(shape), array="running_mean")
    assert_close(v, mod.running_var.numpy(), "vs_torch_float64", op="batch_norm_running_stats",
                 case=str(shape), array="running_var")


def test_batch_norm_running_stats_empty_batch_unchanged_like_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, 3.0])
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    F.batch_norm(torch.zeros(0, 3, dtype=torch.float64), rmt, rvt, training=True)
    m, v = refnorm.batch_norm_running_stats(np.zeros((0, 3)), rm, rv)
    assert np.array_equal(m, rmt.numpy()) and np.array_equal(v, rvt.numpy())
