"""Filter Response Normalization + TLU against an outside implementation: timm's
``FilterResponseNormTlu2d.forward`` transcribed in PyTorch (float64), forward and
autograd backward, with 2-D maps (timm reduces over dims (2, 3)) and 1-D / 3-D
maps (the same formula over every spatial dimension); the TLU's tie convention
against ``torch.maximum``'s backward (checked in torch 2.13: half/half); the
mean square without overflow or underflow (power-of-two scaling) and its
saved ``rstd``; dtype upcast.  Bad inputs: tests/ops/cases/filter_response_norm.py."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")


class FilterResponseNormTlu2d(torch.nn.Module):
    """timm/layers/norm_act.py, FilterResponseNormTlu2d, transcribed (no refnorm
    inside): weight, bias, tau as parameters, forward as timm writes it, the
    reduction over every spatial dimension (timm: ``dim=(2, 3)`` of a 4-D input)."""

    def __init__(self, weight, bias, tau=None, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.tensor(bias, dtype=torch.float64))
        self.tau = None if tau is None else torch.nn.Parameter(torch.tensor(tau, dtype=torch.float64))

    def forward(self, x):
        v_shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = tuple(range(2, x.dim()))
        x = x * torch.rsqrt(x.square().mean(dim=dims, keepdim=True) + self.eps)
        x = x * self.weight.view(v_shape) + self.bias.view(v_shape)
        return torch.maximum(x, self.tau.view(v_shape)) if self.tau is not None else x


def _torch(x, dy, w, b, tau, eps):
    m = FilterResponseNormTlu2d(w, b, tau, eps)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = m(xt)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    grads = {"x": xt.grad, "weight": m.weight.grad, "bias": m.bias.grad}
    if tau is not None:
        grads["tau"] = m.tau.grad
    return y.detach().numpy(), {k: v.numpy() for k, v in grads.items()}


def _inputs(shape, seed, scale=1.2):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = 0.3 + scale * rng.standard_normal(shape)
    return (x, rng.standard_normal(shape), 1.0 + 0.5 * rng.standard_normal(C), 0.25 + rng.standard_normal(C),
            -0.2 + 0.5 * rng.standard_normal(C))


CASES = [((2, 4, 5, 6), True, 1e-6), ((2, 4, 5, 6), False, 1e-5), ((3, 3, 7), True, 1e-6),
         ((1, 2, 3, 4, 2), True, 1e-5), ((4, 3, 1, 1), True, 1e-6)]
WORST = {}


@pytest.mark.parametrize("shape, with_tau, eps", CASES)
def test_matches_timm_transcription_forward_and_backward(shape, with_tau, eps):
    x, dy, w, b, tau = _inputs(shape, seed=len(shape) + int(with_tau))
    tau = tau if with_tau else None
    y_t, g_t = _torch(x, dy, w, b, tau, eps)
    y = refnorm.filter_response_norm(x, w, b, tau, eps)
    g = refnorm.filter_response_norm_backward(dy, x, w, b, tau, eps)
    assert set(g) == set(g_t)
    err = {"y": float(np.max(np.abs(y - y_t)) / np.max(np.abs(y_t)))}
    for k in g:
        err[k] = float(np.max(np.abs(g[k] - g_t[k])) / np.max(np.abs(g_t[k])))
    WORST[(shape, with_tau)] = err
    print(f"\nFRN vs timm transcription {shape} tau={with_tau}: worst relative error "
          + ", ".join(f"{k} {v:.2e}" for k, v in err.items()))
    assert max(err.values()) < 1e-13, err


def test_tie_convention_is_torch_maximum():
    """At z == tau (a zero set: xhat = 0, z = bias, and tau = bias) torch.maximum
    splits the gradient half/half (torch 2.13); refnorm does the same, also for
    tau.  Below tau the gradient to x is exactly 0, even for an infinite dy
    (masked_fill), and all of it goes to tau."""
    x, dy, w, b, tau = _inputs((2, 3, 4), seed=7)
    x[0, 1] = 0.0
    tau[1] = b[1]
    y_t, g_t = _torch(x, dy, w, b, tau, 1e-6)
    g = refnorm.filter_response_norm_backward(dy, x, w, b, tau)
    for k in g:
        np.testing.assert_allclose(g[k], g_t[k], rtol=1e-13, atol=1e-13)
    zt = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    tt = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    torch.maximum(zt, tt).backward(torch.ones(1, dtype=torch.float64))
    assert float(zt.grad) == float(tt.grad) == 0.5  # the convention this layer follows
    # every element of set (0, 1) is a tie: half of its dy goes to tau[1]
    z1 = w[1] * x[1, 1] / np.sqrt(np.mean(x[1, 1] ** 2) + 1e-6) + b[1]
    assert not np.any(z1 == tau[1])
    assert g["tau"][1] == pytest.approx(0.5 * dy[0, 1].sum() + dy[1, 1][z1 < tau[1]].sum(), rel=1e-14)
    # a channel entirely below tau: dx = 0 exactly with an infinite cotangent
    tau2 = tau.copy()
    tau2[2] = 1e6
    dy2 = dy.copy()
    dy2[:, 2] = np.inf
    g2 = refnorm.filter_response_norm_backward(dy2, x, w, b, tau2)
    assert np.all(g2["x"][:, 2] == 0.0) and g2["weight"][2] == 0.0 and g2["bias"][2] == 0.0
    assert not np.isfinite(g2["tau"][2])  # the infinite cotangent reaches tau (inf; NaN from the compensated sum)


@pytest.mark.parametrize("e", [600, -600, 1000, -1000])
def test_mean_square_neither_overflows_nor_underflows(e):
    """x 2^e normalizes as x (eps = 0: exact power-of-two invariance, same bits);
    a naive sum of squares would be inf (e = 600) or 0 (e = -600)."""
    x, dy, w, b, tau = _inputs((2, 3, 5), seed=3)
    xs = np.ldexp(x, e)
    y, st = refnorm.filter_response_norm_stats(xs, w, b, tau, eps=0.0)
    y0, st0 = refnorm.filter_response_norm_stats(x, w, b, tau, eps=0.0)
    assert np.array_equal(y, y0)
    np.testing.assert_array_equal(st["rstd"], np.ldexp(st0["rstd"], -e))
    g = refnorm.filter_response_norm_backward(dy, xs, w, b, tau, eps=0.0)
    g0 = refnorm.filter_response_norm_backward(dy, x, w, b, tau, eps=0.0)
    np.testing.assert_array_equal(g["x"], np.ldexp(g0["x"], -e))
    for k in ("weight", "bias", "tau"):
        np.testing.assert_array_equal(g[k], g0[k])


def test_rstd_and_eps_with_huge_and_tiny_sets():
    """eps dominates a tiny set (rstd = 1/sqrt(eps) after scaling up) and is
    negligible next to a huge one; a zero set has rstd = 1/sqrt(eps), y = bias."""
    w, b = np.array([2.0, 0.5, 1.0]), np.array([0.1, -0.2, 0.3])
    x = np.zeros((1, 3, 4))
    x[0, 0] = np.ldexp(np.array([1.0, -1.0, 0.5, 0.25]), -1060)  # subnormal
    x[0, 1] = np.ldexp(np.array([1.0, -1.0, 0.5, 0.25]), 1000)
    y, st = refnorm.filter_response_norm_stats(x, w, b, eps=1e-6)
    assert st["rstd"][0, 0] == 1.0 / np.sqrt(1e-6) and st["rstd"][0, 2] == 1.0 / np.sqrt(1e-6)
    nu2 = np.mean(np.array([1.0, 1.0, 0.25, 0.0625]))
    assert st["rstd"][0, 1] == pytest.approx(np.ldexp(1.0 / np.sqrt(nu2), -1000), rel=1e-15)
    np.testing.assert_array_equal(y[0, 2], b[2])


def test_eps_outside_rsqrt_differs_on_small_sets():
    """The mutant frn_eps_outside_rsqrt's formula x / (sqrt(nu2) + eps) is close
    to refnorm's for nu2 ~ 1 and 30 % off for nu2 ~ eps (the corpus case
    small_nu2_eps_matters)."""
    x = 1e-3 * np.random.default_rng(5).standard_normal((2, 3, 8))  # |x| ~ 1e-3
    nu2 = np.mean(x * x, axis=2, keepdims=True)
    wrong = x / (np.sqrt(nu2) + 1e-6)
    right = x / np.sqrt(nu2 + 1e-6)
    assert np.max(np.abs(wrong - right)) > 0.1 * np.max(np.abs(right))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_low_precision_inputs_upcast_exactly(dtype):
    x, dy, w, b, tau = _inputs((2, 3, 4, 2), seed=11)
    args = [a.astype(dtype) for a in (x, w, b, tau)]
    up = [a.astype(np.float64) for a in args]
    np.testing.assert_array_equal(refnorm.filter_response_norm(*args), refnorm.filter_response_norm(*up))
    g = refnorm.filter_response_norm_backward(dy.astype(dtype), *args)
    g64 = refnorm.filter_response_norm_backward(dy.astype(dtype).astype(np.float64), *up)
    for k in g:
        np.testing.assert_array_equal(g[k], g64[k])
