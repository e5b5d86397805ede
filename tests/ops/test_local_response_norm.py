"""local_response_norm against torch.nn.functional.local_response_norm itself (torch 2.13, float64):
forward, autograd backward, torch.func.jvp and autograd's double backward, for odd and even sizes,
size 1 and sizes larger than C, 3-D, 4-D and 5-D inputs, PyTorch's defaults and other constants;
and the conventions the spec is silent on, each checked against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(2, 5, 4), (2, 6, 3, 2), (1, 4, 2, 3, 2), (3, 1, 2)]
SIZES = (1, 2, 3, 4, 5, 9)
CONSTANTS = [dict(), dict(alpha=0.5, beta=0.75, k=1.0), dict(alpha=2.0, beta=0.5, k=2.0),
             dict(alpha=1e-4, beta=0.75, k=2.0)]


def _torch_all(x, dy, tx, a, size, kw):
    """y, dx, ty, d2dy, d2x from torch alone (float64)."""
    xt = torch.tensor(x, requires_grad=True)
    dyt = torch.tensor(dy, requires_grad=True)
    y = F.local_response_norm(xt, size, **kw)
    (dx,) = torch.autograd.grad(y, xt, dyt, create_graph=True)
    d2dy, d2x = torch.autograd.grad((dx * torch.tensor(a)).sum(), [dyt, xt], allow_unused=True)
    _, ty = torch.func.jvp(lambda t: F.local_response_norm(t, size, **kw), (torch.tensor(x),),
                           (torch.tensor(tx),))
    z = np.zeros_like(x)
    return [t.detach().numpy() if t is not None else z for t in (y, dx, ty, d2dy, d2x)]


def _refnorm_all(x, dy, tx, a, size, kw):
    y = refnorm.local_response_norm(x, size, **kw)
    dx = refnorm.local_response_norm_backward(dy, x, size, **kw)["x"]
    _, ty = refnorm.local_response_norm_jvp({"x": tx}, x, size, **kw)
    d2 = refnorm.local_response_norm_double_backward({"x": a}, dy, x, size, **kw)
    return [y, dx, ty, d2["dy"], d2["x"]]


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


def test_matches_torch_local_response_norm_in_float64():
    """Every shape and size, the sets of constants in turn (each meets odd and even sizes):
    worst norm-wise relative error per output printed; all within 1e-13."""
    rng = np.random.default_rng(0)
    worst = dict.fromkeys(("y", "dx", "ty", "d2dy", "d2x"), 0.0)
    for i, shape in enumerate(SHAPES):
        for j, size in enumerate(SIZES):
            for kw in (CONSTANTS[(i + j) % len(CONSTANTS)],):
                x = 0.3 + 1.5 * rng.standard_normal(shape)
                dy, tx, a = (rng.standard_normal(shape) for _ in range(3))
                got = _refnorm_all(x, dy, tx, a, size, kw)
                want = _torch_all(x, dy, tx, a, size, kw)
                for name, g, w in zip(worst, got, want):
                    err = _rel(g, w)
                    worst[name] = max(worst[name], err)
                    assert err < 1e-13, (shape, size, kw, name, err)
    print("\nlocal_response_norm vs torch float64, worst norm-wise relative error:",
          {k: f"{v:.2e}" for k, v in worst.items()})


def test_saved_div_is_torchs_denominator():
    """``div`` is the denominator F.local_response_norm divides by: ``x / div`` is its output, and
    it equals ``(k + alpha * avg_pool(x^2))^beta`` with PyTorch's padding."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 6, 3))
    for size in (2, 5):
        y, st = refnorm.local_response_norm_stats(x, size, alpha=0.7, beta=0.6, k=1.5)
        sq = torch.tensor(x * x).unsqueeze(1)
        pooled = F.avg_pool2d(F.pad(sq, (0, 0, size // 2, (size - 1) // 2)), (size, 1), stride=1).squeeze(1)
        want = ((pooled * 0.7 + 1.5) ** 0.6).numpy()
        np.testing.assert_allclose(st["div"], want, rtol=1e-14)
        np.testing.assert_allclose(x / st["div"], y, rtol=1e-15)


def test_even_size_window_is_torchs_not_onnxs():
    """For an even size PyTorch's window of channel c is [c - size/2, c + size/2 - 1] (ONNX LRN's is
    [c - size/2 + 1, c + size/2]): a spike in one channel reaches size/2 channels after it and
    size/2 - 1 before it, as in torch."""
    x = np.zeros((1, 9, 1))
    x[0, 4, 0] = 3.0
    size = 4
    y, st = refnorm.local_response_norm_stats(x, size, alpha=1.0, beta=1.0, k=1.0)
    reached = np.flatnonzero(st["div"][0, :, 0] != 1.0)
    want = F.local_response_norm(torch.tensor(x), size, alpha=1.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-15)
    # channel c's window holds channel 4 for c in [4 - (size - 1) // 2, 4 + size // 2] = [3, 6]
    assert list(reached) == [3, 4, 5, 6]


def test_conventions_match_torch():
    """Where the spec is silent, PyTorch's behaviour: fewer than 3 dims refused (torch: ValueError too);
    an empty input gives an empty output; k = 0 with an all-zero window gives 0/0 = NaN."""
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        refnorm.local_response_norm(np.ones((2, 3)), 3)
    with pytest.raises(ValueError):
        F.local_response_norm(torch.ones(2, 3), 3)
    e = np.zeros((0, 4, 3))
    assert refnorm.local_response_norm(e, 3).shape == (0, 4, 3)
    z = np.zeros((1, 3, 2))
    z[0, 0] = 1.0
    got = refnorm.local_response_norm(z, 1, alpha=1.0, beta=0.75, k=0.0)
    want = F.local_response_norm(torch.tensor(z), 1, alpha=1.0, beta=0.75, k=0.0).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-15)
