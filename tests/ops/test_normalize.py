"""normalize against torch.nn.functional.normalize itself (torch 2.13, float64): forward,
autograd backward, torch.func.jvp and autograd's double backward, for every p refnorm supports,
positive and negative dims, 1-D input, the clamp active, inactive and at the tie, tied maxima
for p = inf; and the conventions the spec is silent on, each checked against PyTorch."""

from __future__ import annotations

import math

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")
F = torch.nn.functional

PS = (2.0, 1.0, 3.0, 0.5, 1.5, 4.0, math.inf)
GEOMETRIES = [((3, 5), 1), ((2, 4, 3), 1), ((2, 4, 3), -1), ((2, 4, 3), 0), ((2, 3, 2, 3), -2), ((7,), 0),
              ((7,), -1)]


def _torch_all(x, dy, tx, a, p, dim, eps):
    """y, dx, ty, d2dy, d2x from torch alone (float64)."""
    xt = torch.tensor(x, requires_grad=True)
    dyt = torch.tensor(dy, requires_grad=True)
    y = F.normalize(xt, p=p, dim=dim, eps=eps)
    (dx,) = torch.autograd.grad(y, xt, dyt, create_graph=True)
    d2dy, d2x = torch.autograd.grad((dx * torch.tensor(a)).sum(), [dyt, xt], allow_unused=True)
    _, ty = torch.func.jvp(lambda t: F.normalize(t, p=p, dim=dim, eps=eps), (torch.tensor(x),), (torch.tensor(tx),))
    z = np.zeros_like(x)
    return [t.detach().numpy() if t is not None else z for t in (y, dx, ty, d2dy, d2x)]


def _refnorm_all(x, dy, tx, a, p, dim, eps):
    y = refnorm.normalize(x, p, dim, eps)
    dx = refnorm.normalize_backward(dy, x, p, dim, eps)["x"]
    _, ty = refnorm.normalize_jvp({"x": tx}, x, p, dim, eps)
    d2 = refnorm.normalize_double_backward({"x": a}, dy, x, p, dim, eps)
    return [y, dx, ty, d2["dy"], d2["x"]]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


def _inputs(rng, shape):
    x = rng.uniform(0.3, 1.5, shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return x, rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)


def test_matches_torch_normalize_in_float64():
    """Every p, every geometry, the clamp inactive (eps 1e-12) and active (eps 10 > every norm):
    worst norm-wise relative error per output printed; all within 1e-13."""
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(("y", "dx", "ty", "d2dy", "d2x"), 0.0)
    for p in PS:
        for shape, dim in GEOMETRIES:
            for eps in (1e-12, 10.0):
                x, dy, tx, a = _inputs(rng, shape)
                got = _refnorm_all(x, dy, tx, a, p, dim, eps)
                want = _torch_all(x, dy, tx, a, p, dim, eps)
                for k, g, w in zip(worst, got, want):
                    worst[k] = max(worst[k], _rel(g, w))
    print("\nnormalize vs torch F.normalize (float64), worst relative error:",
          {k: f"{v:.2e}" for k, v in worst.items()})
    assert max(worst.values()) < 1e-13, worst


@pytest.mark.parametrize("p", PS)
def test_stats_are_torchs_denominator(p):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 3))
    x[1, :, 2] = 0.0  # a zero slice: the clamp gives eps
    _, st = refnorm.normalize_stats(x, p, 1, 1e-6)
    want = torch.tensor(x).norm(p, 1).clamp_min(1e-6).numpy()
    np.testing.assert_allclose(st["norm"], want, rtol=1e-14, atol=0)


def test_clamp_tie_passes_the_gradient_as_torch_clamp_min():
    x = np.array([[3.0, 4.0], [0.3, 0.4]])  # norms 5 and 0.5: eps = 5 is a tie for row 0, active for row 1
    dy = np.array([[1.0, 0.5], [0.25, -1.0]])
    got = _refnorm_all(x, dy, dy, dy, 2.0, 1, 5.0)
    want = _torch_all(x, dy, dy, dy, 2.0, 1, 5.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-16)
    assert not np.allclose(got[1][0], dy[0] / 5.0)  # at the tie the norm's gradient is not dropped


def test_inf_norm_shares_the_gradient_among_tied_maxima():
    x = np.array([[3.0, -3.0, 1.0, 3.0, -2.0]])
    rng = np.random.default_rng(2)
    dy, tx, a = (rng.standard_normal(x.shape) for _ in range(3))
    got = _refnorm_all(x, dy, tx, a, math.inf, 1, 1e-12)
    want = _torch_all(x, dy, tx, a, math.inf, 1, 1e-12)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("p", (0.5, 1.0, 1.5, 2.0, 3.0))
def test_zero_entries_and_zero_slices_as_torch(p):
    """A zero entry (the norm's derivative masked to 0 there, needed for p < 1) and an all-zero
    slice (clamp active: y = 0, dx = dy / eps)."""
    x = np.array([[0.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    dy = np.array([[1.0, 0.5, 0.2, -0.3], [0.7, -0.1, 0.2, 0.4]])
    got = _refnorm_all(x, dy, dy, dy, p, 1, 1e-12)[:3]
    want = _torch_all(x, dy, dy, dy, p, 1, 1e-12)[:3]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14, atol=0)


def test_1d_default_dim_is_refused_as_torch_refuses_it():
    with pytest.raises(IndexError):
        F.normalize(torch.ones(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="dim must be in"):
        refnorm.normalize(np.ones(4))


@pytest.mark.parametrize("scale_pow2, p", [(700, 2.0), (-700, 2.0), (600, 3.0), (-600, 0.5), (1000, 1.0)])
def test_no_overflow_or_underflow_in_the_powers(scale_pow2, p):
    """refnorm scales by a power of two before raising to p: the result is the unscaled one's
    to the last bits, where PyTorch's unscaled float64 sum overflows or underflows."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 9))
    y0 = refnorm.normalize(x, p, 1, 0.0)
    y = refnorm.normalize(np.ldexp(x, scale_pow2), p, 1, 0.0)
    np.testing.assert_allclose(y, y0, rtol=4e-16, atol=0)
    _, st = refnorm.normalize_stats(np.ldexp(x, scale_pow2), p, 1, 0.0)
    _, st0 = refnorm.normalize_stats(x, p, 1, 0.0)
    np.testing.assert_array_equal(st["norm"], np.ldexp(st0["norm"], scale_pow2))


def test_eps_zero_on_a_zero_slice_is_nan_as_torch():
    x = np.zeros((1, 3))
    assert np.isnan(refnorm.normalize(x, eps=0.0)).all()
    assert torch.isnan(F.normalize(torch.zeros(1, 3, dtype=torch.float64), eps=0.0)).all()
