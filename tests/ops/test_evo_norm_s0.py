"""EvoNorm-S0 against an outside implementation: timm's ``EvoNorm2dS0.forward`` with its
``group_std`` transcribed in PyTorch (float64), forward and autograd backward (x, weight,
bias, v), second order by autograd's double backward and forward mode by
``torch.func.jvp``; 4-D maps as timm takes them, and (the same formula) no, one and three
spatial dimensions; the saved statistics against ``torch.var_mean``; the overflow-free
gate at |v x| ~ 1000; dtype upcast.  Bad inputs: tests/ops/cases/evo_norm_s0.py."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")


def group_std(x, groups, eps):
    """timm/layers/evo_norm.py ``group_std`` (``flatten=False``), over every spatial
    dimension (timm unpacks ``B, C, H, W``: the same thing for a 4-D input).  timm's
    ``x.float()`` (float32 statistics for a half input, and for a float64 one too) is
    ``x.double()`` here: this check compares in float64."""
    B, C = x.shape[0], x.shape[1]
    x_dtype = x.dtype
    assert C % groups == 0
    xg = x.reshape(B, groups, C // groups, -1)
    std = xg.double().var(dim=(2, 3), unbiased=False, keepdim=True).add(eps).sqrt().to(x_dtype)
    return std.expand(xg.shape).reshape(x.shape)


class EvoNorm2dS0(torch.nn.Module):
    """timm/layers/evo_norm.py, EvoNorm2dS0, transcribed (no refnorm inside): weight, bias,
    v as parameters (``apply_act=True``), forward as timm writes it."""

    def __init__(self, groups, weight, bias, v, eps=1e-5):
        super().__init__()
        self.groups = groups
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.tensor(weight, dtype=torch.float64))
        self.bias = torch.nn.Parameter(torch.tensor(bias, dtype=torch.float64))
        self.v = torch.nn.Parameter(torch.tensor(v, dtype=torch.float64))

    def forward(self, x):
        x_dtype = x.dtype
        v_shape = (1, -1) + (1,) * (x.dim() - 2)
        v = self.v.view(v_shape).to(x_dtype)
        x = x * (x * v).sigmoid() / group_std(x, self.groups, self.eps)
        return x * self.weight.view(v_shape).to(x_dtype) + self.bias.view(v_shape).to(x_dtype)


def _functional(groups, eps):
    def f(x, w, b, v):
        v_shape = (1, -1) + (1,) * (x.dim() - 2)
        y = x * (x * v.view(v_shape)).sigmoid() / group_std(x, groups, eps)
        return y * w.view(v_shape) + b.view(v_shape)
    return f


def _torch(x, dy, G, w, b, v, eps):
    m = EvoNorm2dS0(G, w, b, v, eps)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = m(xt)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    grads = {"x": xt.grad, "weight": m.weight.grad, "bias": m.bias.grad, "v": m.v.grad}
    return y.detach().numpy(), {k: t.numpy() for k, t in grads.items()}


def _inputs(shape, seed, scale=1.2):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = 0.3 + scale * rng.standard_normal(shape)
    return (x, rng.standard_normal(shape), 1.0 + 0.5 * rng.standard_normal(C), 0.25 + rng.standard_normal(C),
            1.0 + 0.7 * rng.standard_normal(C))


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


CASES = [((2, 8, 5, 6), 4, 1e-5), ((2, 8, 5, 6), 1, 1e-3), ((2, 6, 4, 4), 6, 1e-5), ((3, 6, 7), 3, 1e-5),
         ((4, 6), 2, 1e-5), ((1, 4, 3, 4, 2), 2, 1e-5)]


@pytest.mark.parametrize("shape, G, eps", CASES)
def test_matches_timm_transcription_forward_and_backward(shape, G, eps):
    x, dy, w, b, v = _inputs(shape, seed=len(shape) + G)
    y_t, g_t = _torch(x, dy, G, w, b, v, eps)
    y = refnorm.evo_norm_s0(x, G, w, b, v, eps)
    g = refnorm.evo_norm_s0_backward(dy, x, G, w, b, v, eps)
    assert set(g) == set(g_t)
    err = {"y": _rel(y, y_t)}
    err.update({k: _rel(g[k], g_t[k]) for k in g})
    print(f"\nEvoNorm-S0 vs timm transcription {shape} G={G}: worst relative error "
          + ", ".join(f"{k} {e:.2e}" for k, e in err.items()))
    assert max(err.values()) < 1e-13, err


@pytest.mark.parametrize("shape, G", [((2, 4, 3, 3), 2), ((3, 6, 5), 3)])
def test_forward_mode_and_second_order_match_torch(shape, G):
    """``evo_norm_s0_jvp`` against ``torch.func.jvp`` and ``evo_norm_s0_double_backward``
    against autograd's double backward of ``<dy, y>``, of the same transcription."""
    x, dy, w, b, v = _inputs(shape, seed=11)
    rng = np.random.default_rng(12)
    args = {"x": x, "weight": w, "bias": b, "v": v}
    dirs = {k: rng.standard_normal(a.shape) for k, a in args.items()}
    f = _functional(G, 1e-5)
    prim = tuple(torch.tensor(args[k]) for k in args)
    _, ty_t = torch.func.jvp(f, prim, tuple(torch.tensor(dirs[k]) for k in args))
    y, ty = refnorm.evo_norm_s0_jvp(dirs, x, G, w, b, v)
    assert np.array_equal(y, refnorm.evo_norm_s0(x, G, w, b, v))
    assert _rel(ty, ty_t.numpy()) < 1e-13

    p = [t.clone().requires_grad_(True) for t in prim]
    dyt = torch.tensor(dy, requires_grad=True)
    grads = torch.autograd.grad(f(*p), p, dyt, create_graph=True)
    L = sum((torch.tensor(dirs[k]) * gk).sum() for k, gk in zip(args, grads))
    d2 = torch.autograd.grad(L, [dyt] + p, allow_unused=True)
    got = refnorm.evo_norm_s0_double_backward(dirs, dy, x, G, w, b, v)
    for k, t in zip(["dy"] + list(args), d2):
        want = np.zeros_like(got[k]) if t is None else t.numpy()
        err = float(np.max(np.abs(got[k] - want)))
        assert err <= 1e-13 * max(np.max(np.abs(want)), 1.0), (k, err)


def test_saved_statistics_are_the_group_mean_and_rstd():
    x, _, w, b, v = _inputs((2, 6, 3, 4), seed=3)
    _, st = refnorm.evo_norm_s0_stats(x, 3, w, b, v, eps=1e-5)
    var, mean = torch.var_mean(torch.tensor(x).reshape(2, 3, -1), dim=2, unbiased=False)
    assert st["mean"].shape == st["rstd"].shape == (2, 3)
    np.testing.assert_allclose(st["mean"], mean.numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(st["rstd"], 1 / np.sqrt(var.numpy() + 1e-5), rtol=1e-14)


def test_steep_gate_does_not_overflow():
    """|v x| ~ 1000: a naive 1/(1 + exp(-a)) overflows exp; refnorm's gate is 0 or 1
    there, the output finite and its gradients finite, as torch's sigmoid gives."""
    x, dy, w, b, _ = _inputs((2, 4, 3, 3), seed=5)
    v = np.array([800.0, -800.0, 500.0, -1000.0])
    y_t, g_t = _torch(x, dy, 2, w, b, v, 1e-5)
    y = refnorm.evo_norm_s0(x, 2, w, b, v)
    g = refnorm.evo_norm_s0_backward(dy, x, 2, w, b, v)
    assert np.isfinite(y).all() and all(np.isfinite(a).all() for a in g.values())
    assert _rel(y, y_t) < 1e-13 and max(_rel(g[k], g_t[k]) for k in g) < 1e-12


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_low_precision_inputs_upcast_exactly(dtype):
    x, dy, w, b, v = _inputs((2, 4, 3, 3), seed=7)
    xs, ws, bs, vs = (a.astype(dtype) for a in (x, w, b, v))
    up = [a.astype(np.float64) for a in (xs, ws, bs, vs)]
    y = refnorm.evo_norm_s0(xs, 2, ws, bs, vs)
    assert y.dtype == np.float64
    assert np.array_equal(y, refnorm.evo_norm_s0(up[0], 2, *up[1:]))
