"""Batch Renormalization against an independent PyTorch transcription of Algorithm 1 (Ioffe 2017).

The transcription is written from the paper alone (torch, float64; refnorm is never called inside it):
``r`` and ``d`` are ``.detach()``-ed (the paper's stop_gradient), the backward is torch autograd, the
running update is PyTorch BatchNorm's (momentum on the new value, unbiased variance).  A second check:
with the running statistics equal to the batch statistics (r = 1, d = 0) the layer is F.batch_norm, forward
and backward, gradients included (there r, d are constants only of value: their derivative is dropped, but
r = 1 and d = 0 exactly, so BatchNorm's gradient is the same).
"""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: the worst relative errors seen, printed at the end of the module (the report's numbers)
WORST: dict[str, float] = {}


def algorithm1(x, running_mean, running_var, weight, bias, training, momentum, eps, r_max, d_max):
    """Algorithm 1 of the paper, channels on dim 1; returns ``(y, new_running_mean, new_running_var)``."""
    C = x.shape[1]
    sh = (1, C) + (1,) * (x.ndim - 2)
    dims = [0] + list(range(2, x.ndim))
    sigma = torch.sqrt(running_var + eps)
    if not training:
        xhat = (x - running_mean.reshape(sh)) / sigma.reshape(sh)
        new_mean, new_var = running_mean, running_var
    else:
        mu = x.mean(dim=dims)
        var = ((x - mu.reshape(sh)) ** 2).mean(dim=dims)  # biased
        sigma_b = torch.sqrt(var + eps)
        r = torch.clamp(sigma_b / sigma, 1.0 / r_max, r_max).detach()
        d = torch.clamp((mu - running_mean) / sigma, -d_max, d_max).detach()
        xhat = (x - mu.reshape(sh)) / sigma_b.reshape(sh) * r.reshape(sh) + d.reshape(sh)
        m = x.numel() // C
        var_unbiased = var.detach() * m / (m - 1)
        new_mean = running_mean + momentum * (mu.detach() - running_mean)
        new_var = running_var + momentum * (var_unbiased - running_var)
    y = xhat
    if weight is not None:
        y = y * weight.reshape(sh)
    if bias is not None:
        y = y + bias.reshape(sh)
    return y, new_mean, new_var


def _rel(got, want):
    want = np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(got) - want)) / max(float(np.max(np.abs(want))), 1e-300))


def _case(seed, shape, clip, affine):
    rng = np.random.default_rng(seed)
    C = shape[1]
    x = -2.3 + 0.5 * rng.standard_normal(shape)
    if clip == "none":
        rm, rv = -2.3 + 0.2 * rng.standard_normal(C), 0.25 * (0.6 + 0.8 * rng.random(C))
    else:  # r at r_max / 1/r_max and d at +d_max / -d_max, channel by channel, plus one unclipped channel
        rm = np.resize([-2.1, -9.0, 40.0, 10.0], C)
        rv = np.resize([0.3, 0.002, 50.0, 0.3], C)
    w = 1.0 + 0.5 * rng.standard_normal(C) if affine in ("both", "weight") else None
    b = 0.3 * rng.standard_normal(C) if affine == "both" else None
    return x, rm, rv, w, b


CASES = [(s, shape, clip, aff, tr) for s, (shape, clip, aff, tr) in enumerate([
    ((6, 4), "none", "both", True), ((4, 4, 5), "none", "none", True), ((3, 4, 2, 3), "active", "both", True),
    ((2, 4, 7), "active", "weight", True), ((3, 4, 2, 3), "none", "both", False), ((5, 4), "active", "none", False),
])]


@pytest.mark.parametrize("seed,shape,clip,affine,training", CASES)
def test_against_algorithm1_in_torch(seed, shape, clip, affine, training):
    x, rm, rv, w, b = _case(seed, shape, clip, affine)
    kw = dict(training=training, momentum=0.1, eps=1e-5, r_max=3.0, d_max=5.0)
    T = {k: None if v is None else torch.tensor(v, dtype=torch.float64, requires_grad=k in ("x", "w", "b"))
         for k, v in dict(x=x, rm=rm, rv=rv, w=w, b=b).items()}
    y_t, nm_t, nv_t = algorithm1(T["x"], T["rm"], T["rv"], T["w"], T["b"], **kw)
    dy = np.random.default_rng(100 + seed).standard_normal(shape)
    leaves = [k for k in ("x", "w", "b") if T[k] is not None]
    grads = torch.autograd.grad(y_t, [T[k] for k in leaves], torch.tensor(dy))
    want = {"x": grads[0]} | {{"w": "weight", "b": "bias"}[k]: g for k, g in zip(leaves[1:], grads[1:])}

    y = refnorm.batch_renorm(x, rm, rv, w, b, **kw)
    got = refnorm.batch_renorm_backward(dy, x, rm, rv, w, b, **kw)
    assert sorted(got) == sorted(want)
    checks = {"y": (y, y_t)} | {"d" + k: (got[k], want[k]) for k in want}
    if training:
        nm, nv = refnorm.batch_renorm_running_stats(x, rm, rv, 0.1)
        checks |= {"running_mean": (nm, nm_t), "running_var": (nv, nv_t)}
    for name, (g, t) in checks.items():
        err = _rel(g, t.detach().numpy())
        WORST[name] = max(WORST.get(name, 0.0), err)
        assert err <= 1e-13, (name, err)


def test_clipping_is_active_where_the_cases_say():
    """The 'active' cases really clip r at both limits and d at both limits (and the others do not)."""
    x, rm, rv, *_ = _case(2, (3, 4, 2, 3), "active", "both")
    axes = (0, 2, 3)
    sigma = np.sqrt(rv + 1e-5)
    r = np.sqrt(x.var(axis=axes) + 1e-5) / sigma
    d = (x.mean(axis=axes) - rm) / sigma
    assert r[1] > 3 and r[2] < 1 / 3 and d[1] > 5 and d[2] < -5 and d[3] < -5
    assert 1 / 3 < r[0] < 3 and abs(d[0]) < 5
    x, rm, rv, *_ = _case(0, (6, 4), "none", "both")
    r = np.sqrt(x.var(axis=0) + 1e-5) / np.sqrt(rv + 1e-5)
    d = (x.mean(axis=0) - rm) / np.sqrt(rv + 1e-5)
    assert np.all((1 / 3 < r) & (r < 3)) and np.all(np.abs(d) < 5)


@pytest.mark.parametrize("shape", [(6, 3), (3, 3, 2, 4)])
def test_batch_statistics_as_running_statistics_is_batch_norm(shape):
    """running_mean = mu_B and running_var = var_B (biased) give r = 1, d = 0: F.batch_norm(training=True)."""
    rng = np.random.default_rng(7)
    x = 0.4 + 1.3 * rng.standard_normal(shape)
    w, b = 1.0 + 0.5 * rng.standard_normal(shape[1]), 0.3 * rng.standard_normal(shape[1])
    axes = (0,) + tuple(range(2, x.ndim))
    rm, rv = x.mean(axis=axes), x.var(axis=axes)
    dy = rng.standard_normal(shape)
    X, W, B = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y_t = F.batch_norm(X, None, None, W, B, training=True, eps=1e-5)
    gx, gw, gb = torch.autograd.grad(y_t, (X, W, B), torch.tensor(dy))
    y = refnorm.batch_renorm(x, rm, rv, w, b, training=True)
    g = refnorm.batch_renorm_backward(dy, x, rm, rv, w, b, training=True)
    for name, got, want in (("y", y, y_t), ("dx", g["x"], gx), ("dweight", g["weight"], gw),
                            ("dbias", g["bias"], gb)):
        err = _rel(got, want.detach().numpy())
        WORST["bn-equivalence " + name] = max(WORST.get("bn-equivalence " + name, 0.0), err)
        assert err <= 1e-12, (name, err)


def test_r_and_d_are_constants_of_the_backward():
    """With the clip inactive, differentiating through r and d (no detach) gives another dx: the
    difference the mutant brn_rd_differentiated makes, and the corpus catches."""
    x, rm, rv, w, b = _case(0, (6, 4), "none", "both")
    X = torch.tensor(x, requires_grad=True)
    args = (torch.tensor(rm), torch.tensor(rv), torch.tensor(w), torch.tensor(b))
    dy = torch.tensor(np.random.default_rng(1).standard_normal(x.shape))
    mu, var = X.mean(0), X.var(0, unbiased=False)
    sigma_b, sigma = torch.sqrt(var + 1e-5), torch.sqrt(args[1] + 1e-5)
    r, d = (sigma_b / sigma).clamp(1 / 3, 3), ((mu - args[0]) / sigma).clamp(-5, 5)
    (gx,) = torch.autograd.grad((((X - mu) / sigma_b * r + d) * args[2] + args[3]), X, dy)
    got = refnorm.batch_renorm_backward(dy.numpy(), x, rm, rv, w, b, training=True)["x"]
    assert _rel(got, gx.numpy()) > 1e-3


def test_report_worst_errors():
    print("\nbatch_renorm vs the torch transcription of Algorithm 1 (float64), worst relative error:",
          {k: f"{v:.2e}" for k, v in sorted(WORST.items())})
