"""Weight Standardization / Scaled WS: kernel vs reference, hand backward vs
autograd vs central differences for every style and option, the DeepMind
floor (active and exact tie), torch transcriptions of timm, Qiao and DeepMind,
dtype upcast, no mutation.  Its bad inputs are in
tests/ops/cases/weight_standardization.py (run by tests/ops/test_errors.py)."""

from __future__ import annotations

import copy
import itertools

import ml_dtypes
import numpy as np
import pytest
from autograd import grad

from refnorm.ops.weight_standardization import weight_standardization, weight_standardization_backward
from refnorm.reference.weight_standardization import weight_standardization as ref

from .._util import assert_close, noncentred, random_affine, random_dy

OP = "weight_standardization"
SHAPES = [(5, 3, 3, 2), (4, 7), (3, 2, 1, 1), (2, 3, 5)]
OPTIONS = [dict(style=s) for s in ("deepmind", "timm", "qiao")] + [
    dict(style="deepmind", estimator="unbiased"), dict(style="timm", fan_in_scaling=False),  # BiT StdConv2d
    dict(style="qiao", estimator="biased"), dict(style="qiao", eps_mode="variance", eps=1e-3),
    dict(style="deepmind", eps_mode="std", fan_in_scaling=True), dict(style="timm", eps_mode="floor", eps=0.5),
]
CASES = [(shape, opt, gain) for shape in SHAPES for opt in OPTIONS for gain in (True, False)]
IDS = [f"{s}-{'-'.join(f'{k}={v}' for k, v in o.items())}-gain{g}" for s, o, g in CASES]


def _case(shape, gain, seed=0):
    rng = np.random.default_rng(seed)
    w = noncentred(rng, shape, loc=-0.3, scale=0.5)
    g = random_affine(rng, (shape[0],))[0] if gain else None
    return w, g


def _scale(dy, g):
    return float(np.max(np.abs(dy))) * (1.0 if g is None else float(np.max(np.abs(g)))) * 10.0


def _autograd(dy, w, g, opt):
    out = {"weight": grad(lambda v: np.sum(ref(v, g, **opt) * dy))(w)}
    if g is not None:
        out["gain"] = grad(lambda v: np.sum(ref(w, v, **opt) * dy))(g)
    return out


def _fd(dy, w, g, opt, h=1e-6):
    args = {"weight": w, "gain": g}
    out = {}
    for name in ("weight", "gain"):
        if args[name] is None:
            continue
        base = np.array(args[name], dtype=np.float64)
        fd = np.empty_like(base)
        for i in np.ndindex(base.shape):
            p, m = base.copy(), base.copy()
            p[i] += h
            m[i] -= h
            fp = weight_standardization(**{**args, name: p}, **opt)
            fm = weight_standardization(**{**args, name: m}, **opt)
            fd[i] = np.sum((fp - fm) * dy) / (2 * h)
        out[name] = fd
    return out


@pytest.mark.parametrize("shape,opt,gain", CASES, ids=IDS)
def test_forward_and_backward(shape, opt, gain):
    w, g = _case(shape, gain)
    before = copy.deepcopy((w, g))
    y = weight_standardization(w, g, **opt)
    assert y.dtype == np.float64 and y.shape == w.shape
    assert_close(y, ref(w, g, **opt), "kernel_vs_reference", op=OP, case=str(opt), array="y")
    dy = random_dy(shape, seed=1)
    got = weight_standardization_backward(dy, w, g, **opt)
    assert sorted(got) == (["gain", "weight"] if gain else ["weight"])
    want = _autograd(dy, w, g, opt)
    fd = _fd(dy, w, g, opt)
    for name in got:
        assert_close(got[name], want[name], "backward_vs_autograd", op=OP, case=str(opt), array=f"d{name}",
                     scale=_scale(dy, g))
        assert_close(got[name], fd[name], "backward_vs_fd", op=OP, case=str(opt), array=f"d{name}",
                     scale=_scale(dy, g))
    assert np.array_equal(w, before[0]) and (g is None or np.array_equal(g, before[1])), "input modified"


def test_standardized_rows_have_the_styles_moments():
    w, _ = _case((6, 4, 3, 3), False)
    n = 36
    for style, var_target in (("deepmind", 1.0 / n), ("timm", 1.0 / n), ("qiao", (n - 1) / n)):
        y = weight_standardization(w, style=style).reshape(6, -1)
        np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-15)
        # var of the standardized row: biased var / (s * (var + eps)) ~ 1/s up to eps
        np.testing.assert_allclose(y.var(axis=1), var_target, rtol=1e-3)


def test_deepmind_floor_active():
    """N var < eps: the floor is active, the variance gets no gradient."""
    rng = np.random.default_rng(3)
    w = 0.1 + 1e-4 * rng.standard_normal((3, 2, 2, 2))  # N var ~ 8e-8 < 1e-4
    g = random_affine(rng, (3,))[0]
    dy = random_dy(w.shape, seed=4)
    y = weight_standardization(w, g)
    wc = w - w.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, wc * g[:, None, None, None] / np.sqrt(1e-4), rtol=1e-12, atol=1e-18)
    got = weight_standardization_backward(dy, w, g)
    gd = g[:, None, None, None] * dy
    expect = (gd - gd.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(1e-4)  # r*(gd - c1), no variance term
    assert_close(got["weight"], expect, "backward_vs_autograd", op=OP, case="floor", array="dweight")
    want = _autograd(dy, w, g, {})
    assert_close(got["weight"], want["weight"], "backward_vs_autograd", op=OP, case="floor", array="dweight")
    fd = _fd(dy, w, g, {}, h=1e-7)
    assert_close(got["weight"], fd["weight"], "backward_vs_fd", op=OP, case="floor", array="dweight")


def test_deepmind_floor_exact_tie_splits_half():
    """Row 0 is [-1, 1, -1, 1]: mean 0, N*var = 4 exactly; eps = 4 is an exact tie."""
    rng = np.random.default_rng(5)
    w = np.stack([np.array([-1.0, 1.0, -1.0, 1.0]), noncentred(rng, 4)])
    g = np.array([1.3, 0.7])
    dy = random_dy(w.shape, seed=6)
    got = weight_standardization_backward(dy, w, g, eps=4.0)
    gd = g[:, None] * dy
    wc = w - w.mean(axis=1, keepdims=True)
    r = 0.5  # rsqrt(4)
    const_branch = r * (gd[0] - gd[0].mean())  # floor branch: no variance term
    var_branch = const_branch - r ** 3 * np.sum(gd[0] * wc[0]) * wc[0]  # -r^3 s/2 * 2 wc / n * c2, s = n
    assert_close(got["weight"][0], 0.5 * (const_branch + var_branch), "backward_vs_autograd", op=OP, case="tie",
                 array="dweight[0]")
    assert not np.allclose(const_branch, var_branch)  # the tie test is not vacuous
    want = _autograd(dy, w, g, dict(eps=4.0))  # autograd's maximum: balanced_eq, 0.5 at ties
    for name in got:
        assert_close(got[name], want[name], "backward_vs_autograd", op=OP, case="tie", array=f"d{name}")
    tw = torch_ws(w, g, dy, "deepmind", 4.0)  # torch.maximum also splits 0.5/0.5
    assert_close(got["weight"], tw[1], "vs_torch_float64", op=OP, case="tie", array="dweight")


@pytest.mark.parametrize("opt", [dict(style="deepmind"), dict(style="timm"), dict(style="qiao"),
                                 dict(style="qiao", estimator="biased")], ids=str)
def test_constant_channel(opt):
    w = np.stack([np.full((2, 3), 0.7), np.arange(6.0).reshape(2, 3)])
    g = np.array([1.5, -0.5])
    dy = random_dy(w.shape, seed=7)
    y = weight_standardization(w, g, **opt)
    assert np.all(y[0] == 0.0)
    got = weight_standardization_backward(dy, w, g, **opt)
    assert all(np.all(np.isfinite(v)) for v in got.values())
    fd = _fd(dy, w, g, opt, h=1e-7)
    rows = slice(None)
    if opt.get("style") == "qiao":
        # std + eps at std = 0: f(W0 + h D) = h Dc / (h std(Dc) + eps), so central differences carry an
        # O(h std / eps) error on the constant row; its derivative is exactly r * (gd - mean(gd)), r = 1/eps.
        gd = g[0] * dy[0]
        assert_close(got["weight"][0], (gd - gd.mean()) / 1e-5, "backward_vs_autograd", op=OP, case="qiao-const",
                     array="dweight[0]")
        rows = slice(1, None)
    assert_close(got["weight"][rows], fd["weight"][rows], "backward_vs_fd", op=OP, case=f"const-{opt}",
                 array="dweight", scale=_scale(dy, g))
    if opt.get("style") != "qiao":  # autograd's sqrt'(0) = inf gives NaN for eps on the std; see module doc
        want = _autograd(dy, w, g, opt)
        assert_close(got["weight"], want["weight"], "backward_vs_autograd", op=OP, case=f"const-{opt}",
                     array="dweight", scale=_scale(dy, g))


# --------------------------------------------------------------------------------- torch transcriptions

def torch_ws(w, g, dy, style, eps):
    """Independent float64 PyTorch transcriptions of the three codes (docs/ops/weight_standardization.md#ws-styles)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    W = torch.tensor(w, requires_grad=True)
    G = torch.tensor(g, requires_grad=True)
    C = w.shape[0]
    fan_in = int(np.prod(w.shape[1:]))
    if style == "timm":  # ScaledStdConv2d: F.batch_norm on (1, Cout, -1), training=True, momentum=0
        out = F.batch_norm(W.reshape(1, C, -1), None, None, weight=(G * fan_in ** -0.5), training=True,
                           momentum=0.0, eps=eps).reshape_as(W)
    elif style == "qiao":  # official README: (W - mean)/(std + 1e-5), torch .std unbiased
        Wf = W.reshape(C, -1)
        mean = Wf.mean(dim=1, keepdim=True)
        std = (Wf - mean).std(dim=1, keepdim=True)
        out = (((Wf - mean) / (std + eps)) * G[:, None]).reshape_as(W)
    else:  # DeepMind standardize_weight, OIHW axes
        Wf = W.reshape(C, -1)
        mean = Wf.mean(dim=1, keepdim=True)
        var = Wf.var(dim=1, keepdim=True, unbiased=False)
        scale = torch.rsqrt(torch.maximum(var * fan_in, torch.tensor(eps, dtype=torch.float64))) * G[:, None]
        out = (Wf * scale - mean * scale).reshape_as(W)
    out.backward(torch.tensor(dy))
    return out.detach().numpy(), W.grad.numpy(), G.grad.numpy()


@pytest.mark.parametrize("style,eps", [("timm", 1e-6), ("timm", 1e-5), ("qiao", 1e-5), ("deepmind", 1e-4)])
@pytest.mark.parametrize("shape", [(6, 3, 3, 3), (4, 5), (3, 1, 2, 2)])
def test_vs_torch(style, eps, shape):
    w, g = _case(shape, True, seed=8)
    dy = random_dy(shape, seed=9)
    ty, tw, tg = torch_ws(w, g, dy, style, eps)
    assert_close(weight_standardization(w, g, eps, style), ty, "vs_torch_float64", op=OP, case=style, array="y")
    got = weight_standardization_backward(dy, w, g, eps, style)
    assert_close(got["weight"], tw, "vs_torch_float64", op=OP, case=style, array="dweight", scale=_scale(dy, g))
    assert_close(got["gain"], tg, "vs_torch_float64", op=OP, case=style, array="dgain", scale=_scale(dy, g))


def test_qiao_constant_channel_vs_torch_masked_std_backward():
    w = np.stack([np.full(5, -0.4), np.linspace(-1, 2, 5)])
    g = np.array([0.8, 1.2])
    dy = random_dy(w.shape, seed=10)
    _, tw, tg = torch_ws(w, g, dy, "qiao", 1e-5)
    got = weight_standardization_backward(dy, w, g, style="qiao")
    assert_close(got["weight"], tw, "vs_torch_float64", op=OP, case="qiao-const", array="dweight",
                 scale=_scale(dy, g))


# --------------------------------------------------------------------------------- dtypes, errors

@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_upcast_is_exact(dtype):
    w, g = _case((4, 3, 2, 2), True, seed=11)
    wl, gl = w.astype(dtype), g.astype(dtype)
    dy = random_dy(w.shape, seed=12).astype(dtype)
    for style in ("deepmind", "timm", "qiao"):
        y = weight_standardization(wl, gl, style=style)
        assert y.dtype == np.float64
        assert np.array_equal(y, weight_standardization(wl.astype(np.float64), gl.astype(np.float64), style=style))
        a = weight_standardization_backward(dy, wl, gl, style=style)
        b = weight_standardization_backward(dy.astype(np.float64), wl.astype(np.float64), gl.astype(np.float64),
                                            style=style)
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("style,estimator,mode,fan", list(itertools.product(
    ("deepmind",), ("biased", "unbiased"), ("floor", "variance", "std"), (True, False))))
def test_option_grid_matches_reference(style, estimator, mode, fan):
    w, g = _case((3, 2, 3), True, seed=13)
    opt = dict(style=style, estimator=estimator, eps_mode=mode, fan_in_scaling=fan)
    assert_close(weight_standardization(w, g, **opt), ref(w, g, **opt), "kernel_vs_reference", op=OP,
                 case=str(opt), array="y")
    dy = random_dy(w.shape, seed=14)
    got = weight_standardization_backward(dy, w, g, **opt)
    want = _autograd(dy, w, g, opt)
    for k in got:
        assert_close(got[k], want[k], "backward_vs_autograd", op=OP, case=str(opt), array=f"d{k}",
                     scale=_scale(dy, g))
