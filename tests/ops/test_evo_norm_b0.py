"""EvoNorm-B0 against an outside implementation: timm's ``EvoNorm2dB0`` module
(``timm/layers/evo_norm.py``) transcribed in PyTorch, float64 -- its forward with
the running-variance update inside it, in training and in evaluation -- compared
with ``evo_norm_b0``, its hand backward (against torch autograd of the
transcription), its forward mode (against ``torch.func.jvp``) and
``evo_norm_b0_running_stats`` (against the module's updated buffer).  Also: the
tie ``left == right`` split half/half as ``torch.maximum``'s backward (checked on
torch 2.13), the inputs unchanged by the running update, dtype upcast.  Bad inputs:
tests/ops/cases/evo_norm_b0.py."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")


def instance_std(x, eps: float = 1e-5):
    """timm's ``instance_std``, transcribed; timm's ``x.float()`` (float32, an upcast of half
    inputs) is ``x.double()`` here: the comparison runs in float64."""
    std = x.double().var(dim=(2, 3), unbiased=False, keepdim=True).add(eps).sqrt().to(x.dtype)
    return std.expand(x.shape)


class EvoNorm2dB0(torch.nn.Module):
    """timm's ``EvoNorm2dB0`` (apply_act=True), transcribed with no refnorm inside: weight, bias and
    v as parameters, running_var as a buffer updated in the training forward.  timm's ``x.float()``
    (float32) is ``x.double()`` here: the comparison runs in float64."""

    def __init__(self, weight, bias, v, running_var, momentum=0.1, eps=1e-3):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        f64 = dict(dtype=torch.float64)
        self.weight = torch.nn.Parameter(torch.tensor(weight, **f64))
        self.bias = torch.nn.Parameter(torch.tensor(bias, **f64))
        self.v = torch.nn.Parameter(torch.tensor(v, **f64))
        self.register_buffer("running_var", torch.tensor(running_var, **f64))

    def forward(self, x):
        assert x.dim() == 4, "expected 4D input"
        x_dtype = x.dtype
        v_shape = (1, -1, 1, 1)
        if self.training:
            var = x.double().var(dim=(0, 2, 3), unbiased=False)
            n = x.numel() / x.shape[1]
            self.running_var.copy_(
                self.running_var * (1 - self.momentum) +
                var.detach() * self.momentum * (n / (n - 1)))
        else:
            var = self.running_var
        left = var.add(self.eps).sqrt_().to(x_dtype).view(v_shape).expand_as(x)
        v = self.v.to(x_dtype).view(v_shape)
        right = x * v + instance_std(x, self.eps)
        x = x / left.max(right)
        return x * self.weight.to(x_dtype).view(v_shape) + self.bias.to(x_dtype).view(v_shape)


def _inputs(shape, seed, scale=1.2):
    rng = np.random.default_rng(seed)
    C = shape[1]
    return dict(x=0.3 + scale * rng.standard_normal(shape), dy=rng.standard_normal(shape),
                weight=1.0 + 0.5 * rng.standard_normal(C), bias=0.25 + rng.standard_normal(C),
                v=0.8 * rng.standard_normal(C), running_var=0.5 + 1.5 * rng.random(C))


def _torch(d, training, eps, momentum=0.1):
    m = EvoNorm2dB0(d["weight"], d["bias"], d["v"], d["running_var"], momentum, eps)
    m.train(training)
    xt = torch.tensor(d["x"], dtype=torch.float64, requires_grad=True)
    y = m(xt)
    y.backward(torch.tensor(d["dy"], dtype=torch.float64))
    grads = {"x": xt.grad, "weight": m.weight.grad, "bias": m.bias.grad, "v": m.v.grad}
    return y.detach().numpy(), {k: g.numpy() for k, g in grads.items()}, m.running_var.numpy()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


CASES = [((2, 4, 5, 6), True, 1e-3), ((2, 4, 5, 6), False, 1e-3), ((3, 3, 7, 1), True, 1e-5),
         ((4, 3, 1, 1), True, 1e-3), ((1, 2, 3, 4), False, 0.1), ((5, 2, 2, 3), True, 1e-3)]


@pytest.mark.parametrize("shape,training,eps", CASES, ids=lambda c: str(c))
def test_matches_timm_evonorm2d_b0(shape, training, eps):
    d = _inputs(shape, seed=sum(shape) + training)
    y_t, g_t, rv_t = _torch(d, training, eps)
    args = (d["x"], d["weight"], d["bias"], d["v"], d["running_var"], training, eps)
    y = refnorm.evo_norm_b0(*args)
    assert _rel(y, y_t) < 1e-14
    g = refnorm.evo_norm_b0_backward(d["dy"], *args)
    assert sorted(g) == ["bias", "v", "weight", "x"]
    for k in g:
        assert g[k].shape == g_t[k].shape
        assert _rel(g[k], g_t[k]) < 1e-12, k
    if training:  # the module's buffer after its training forward
        new = refnorm.evo_norm_b0_running_stats(d["x"], d["running_var"], 0.1)
        assert _rel(new, rv_t) < 1e-15
    else:
        assert np.array_equal(rv_t, d["running_var"])  # evaluation leaves the buffer alone


@pytest.mark.parametrize("training", [True, False])
def test_jvp_matches_torch_func_jvp(training):
    d = _inputs((2, 3, 3, 4), seed=7)
    rng = np.random.default_rng(8)
    t = {"x": rng.standard_normal(d["x"].shape), "weight": rng.standard_normal(3), "bias": rng.standard_normal(3),
         "v": rng.standard_normal(3)}
    m = EvoNorm2dB0(d["weight"], d["bias"], d["v"], d["running_var"])
    m.train(training)
    names = ("weight", "bias", "v")

    def f(x, w, b, v, rv):  # the buffer an input too: the training forward writes it (copy_)
        return torch.func.functional_call(m, {"weight": w, "bias": b, "v": v, "running_var": rv}, (x,))

    rv = torch.tensor(d["running_var"], dtype=torch.float64)
    prim = tuple(torch.tensor(d[k], dtype=torch.float64) for k in ("x",) + names) + (rv,)
    tang = tuple(torch.tensor(t[k], dtype=torch.float64) for k in ("x",) + names) + (torch.zeros_like(rv),)
    ty_t = torch.func.jvp(f, prim, tang)[1].numpy()
    y, ty = refnorm.evo_norm_b0_jvp(t, d["x"], d["weight"], d["bias"], d["v"], d["running_var"], training)
    assert np.array_equal(y, refnorm.evo_norm_b0(d["x"], d["weight"], d["bias"], d["v"], d["running_var"], training))
    assert _rel(ty, ty_t) < 1e-12


def test_momentum_and_running_update_does_not_touch_inputs():
    d = _inputs((3, 4, 2, 5), seed=3)
    x0, rv0 = d["x"].copy(), d["running_var"].copy()
    for momentum in (0.0, 0.1, 0.5, 1.0):
        _, _, rv_t = _torch(d, True, 1e-3, momentum)
        new = refnorm.evo_norm_b0_running_stats(d["x"], d["running_var"], momentum)
        np.testing.assert_allclose(new, rv_t, rtol=1e-15, atol=0)
    assert np.array_equal(d["x"], x0) and np.array_equal(d["running_var"], rv0)


def test_tie_splits_the_gradient_half_half_like_torch_maximum():
    """N = 1 and v = 0: the batch and the instance variance are the same set, so left == right
    at every element (exactly, in both implementations); torch.maximum's backward gives each
    half, and so does refnorm's."""
    d = _inputs((1, 3, 4, 5), seed=11)
    d["v"] = np.zeros(3)
    y_t, g_t, _ = _torch(d, True, 1e-3)
    args = (d["x"], d["weight"], d["bias"], d["v"], None, True, 1e-3)
    g = refnorm.evo_norm_b0_backward(d["dy"], *args)
    for k in g:
        assert _rel(g[k], g_t[k]) < 1e-12, k
    # the half/half split differs from taking either side whole
    lt = torch.tensor(d["x"], requires_grad=True)
    left = lt.var(dim=(0, 2, 3), unbiased=False).add(1e-3).sqrt().view(1, -1, 1, 1).expand_as(lt)
    right = instance_std(lt, 1e-3)
    assert torch.equal(left, right)
    yl = lt / left * torch.tensor(d["weight"]).view(1, -1, 1, 1)
    gl = torch.autograd.grad(yl, lt, torch.tensor(d["dy"]))[0].numpy()
    assert _rel(g["x"], gl) < 1e-12  # left and right are the same function of x here: every split agrees
    assert _rel(g["v"], g_t["v"]) < 1e-12 and np.any(g["v"] != 0)  # dv = sum (dd / 2) x: the half of right


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_low_precision_inputs_are_upcast_exactly(dtype):
    d = _inputs((2, 3, 2, 3), seed=5)
    low = {k: np.asarray(v).astype(dtype) for k, v in d.items()}
    up = {k: v.astype(np.float64) for k, v in low.items()}
    for training in (True, False):
        a = refnorm.evo_norm_b0(low["x"], low["weight"], low["bias"], low["v"], low["running_var"], training)
        b = refnorm.evo_norm_b0(up["x"], up["weight"], up["bias"], up["v"], up["running_var"], training)
        assert a.dtype == np.float64 and np.array_equal(a, b)


def test_training_false_requires_running_var():
    d = _inputs((2, 3, 2, 2), seed=1)
    with pytest.raises(ValueError, match="running_var is required when training=False"):
        refnorm.evo_norm_b0(d["x"], d["weight"], d["bias"], d["v"], None, False)
    # in training running_var is not read: given or not, the same bits
    a = refnorm.evo_norm_b0(d["x"], d["weight"], d["bias"], d["v"], d["running_var"], True)
    b = refnorm.evo_norm_b0(d["x"], d["weight"], d["bias"], d["v"])
    assert np.array_equal(a, b)
