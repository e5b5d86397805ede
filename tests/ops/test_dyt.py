"""Dynamic Tanh against implementations refnorm did not write, and its own properties.

* The authors' ``DynamicTanh`` module (Zhu et al. 2025, ``jiachenzhu/DyT`` ``dynamic_tanh.py``),
  transcribed below and run by PyTorch in float64: forward and backward (autograd) of the
  ``channels_last=True`` branch, which is refnorm's ``dyt``; its ``channels_last=False`` branch on
  an ``(N, C, H, W)`` map equals ``dyt`` of the channels-last view.  The worst errors are printed
  (``pytest -s``).
* tanh and sech^2 against 50-digit mpmath, over the linear region, the knee and deep saturation
  (where ``1 - tanh^2`` of a rounded tanh has no correct digit and refnorm's form keeps them all).
* The plain NumPy DyT of the mutant's control (float32/float64 arithmetic, ``1 - t^2``) passes
  every committed dyt case; the channels-first mutant fails exactly the T = C / H = C cases.
* alpha given as a Python float, a 0-d array and a (1,) array: one value, gradients in its shape;
  exact upcast of the half types; inputs unchanged; NaN stays local; inf gives the declared values.
"""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import pytest

import refnorm
from refnorm.ops.dyt import _tanh_sech2

from .._util import random_dy


# ----------------------------------------------------------------------------- the authors' module

def _dynamic_tanh_module():
    """``DynamicTanh`` as the authors wrote it (jiachenzhu/DyT, dynamic_tanh.py), transcribed
    without refnorm; dtype float64 for the comparison."""
    import torch
    import torch.nn as nn

    class DynamicTanh(nn.Module):
        def __init__(self, normalized_shape, channels_last, alpha_init_value=0.5):
            super().__init__()
            self.normalized_shape = normalized_shape
            self.alpha_init_value = alpha_init_value
            self.channels_last = channels_last
            self.alpha = nn.Parameter(torch.ones(1) * alpha_init_value)
            self.weight = nn.Parameter(torch.ones(normalized_shape))
            self.bias = nn.Parameter(torch.zeros(normalized_shape))

        def forward(self, x):
            x = torch.tanh(self.alpha * x)
            if self.channels_last:
                x = x * self.weight + self.bias
            else:
                x = x * self.weight[:, None, None] + self.bias[:, None, None]
            return x

    return DynamicTanh


def _module(C, channels_last, alpha, w, b):
    import torch

    m = _dynamic_tanh_module()(C, channels_last).double()
    assert float(m.alpha.detach()) == 0.5  # alpha_init_value
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([alpha], dtype=torch.float64))
        m.weight.copy_(torch.tensor(w))
        m.bias.copy_(torch.tensor(b))
    return m


SHAPES = [(7,), (3, 5), (2, 6, 6), (2, 5, 8), (2, 4, 3, 4), (3, 1)]


def test_matches_the_authors_module_in_float64():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    worst = {"y": 0.0, "dx": 0.0, "dalpha": 0.0, "dweight": 0.0, "dbias": 0.0}
    for shape in SHAPES:
        for alpha in (0.5, -1.3, 2.7):
            C = shape[-1]
            x = 0.2 + 3.0 * rng.standard_normal(shape)
            w, b = 1.0 + 0.5 * rng.standard_normal(C), 0.3 * rng.standard_normal(C)
            dy = random_dy(shape, seed=len(shape))
            m = _module(C, True, alpha, w, b)
            xt = torch.tensor(x, requires_grad=True)
            yt = m(xt)
            yt.backward(torch.tensor(dy))
            theirs = {"y": yt.detach().numpy(), "dx": xt.grad.numpy(), "dalpha": m.alpha.grad.numpy(),
                      "dweight": m.weight.grad.numpy(), "dbias": m.bias.grad.numpy()}
            a = np.array([alpha])  # the module's alpha is a (1,) parameter: so is its gradient
            ours = {"y": refnorm.dyt(x, a, w, b)}
            g = refnorm.dyt_backward(dy, x, a, w, b)
            ours.update({"dx": g["x"], "dalpha": g["alpha"], "dweight": g["weight"], "dbias": g["bias"]})
            for k in worst:
                assert ours[k].shape == theirs[k].shape, (shape, k)
                scale = max(1.0, float(np.max(np.abs(theirs[k]))))
                err = float(np.max(np.abs(ours[k] - theirs[k]))) / scale
                worst[k] = max(worst[k], err)
    print("\nDyT vs the authors' DynamicTanh (torch float64), worst |diff| / max(1, max|torch|):",
          {k: f"{v:.2e}" for k, v in worst.items()})
    # torch's float64 tanh and 1 - t^2 are within a few ulp where sech^2 is not tiny; sums of <= 40 terms
    assert max(worst.values()) < 5e-14, worst


def test_channels_first_branch_is_dyt_of_the_channels_last_view():
    """The module's channels_last=False branch on (N, C, H, W) equals dyt of the NHWC view: the
    two branches are one layer in two layouts (the mutant applies the first to the second)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 5)) * 2
    w, b = 1.0 + 0.5 * rng.standard_normal(4), 0.3 * rng.standard_normal(4)
    y = _module(4, False, 0.7, w, b)(torch.tensor(x)).detach().numpy()
    ours = np.moveaxis(refnorm.dyt(np.moveaxis(x, 1, -1), 0.7, w, b), -1, 1)
    np.testing.assert_allclose(ours, y, rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- tanh and sech^2

def test_tanh_and_sech2_against_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    zs = np.concatenate([[0.0, -0.0, 5e-324, 1e-300, 1e-8, -3e-5, 0.1, -0.5, 0.9, 1.0],
                         np.linspace(-25, 25, 201), [19.06, -20.0, 30.0, 100.0, -300.0, 354.0, 700.0]])
    worst_t = worst_s = 0.0
    naive_s = 0.0
    for z in zs:
        t, s = _tanh_sech2(float(z))
        zt = mp.tanh(mp.mpf(float(z)))
        zs_ = mp.sech(mp.mpf(float(z))) ** 2
        if zt != 0:
            worst_t = max(worst_t, float(abs((mp.mpf(t) - zt) / zt)))
        else:
            assert t == 0.0 and np.signbit(t) == np.signbit(z)
        if zs_ > mp.mpf(2.0) ** -1020:  # below that the result is subnormal: absolute accuracy only
            worst_s = max(worst_s, float(abs((mp.mpf(s) - zs_) / zs_)))
            tt = float(np.tanh(z))
            naive_s = max(naive_s, float(abs((mp.mpf(1.0 - tt * tt) - zs_) / zs_)))
    u = 2.0 ** -53
    print(f"\n_tanh_sech2 vs mpmath: tanh {worst_t / u:.2f} u, sech^2 {worst_s / u:.2f} u (1 - tanh^2 of a "
          f"rounded tanh: {naive_s:.3g} relative)")
    assert worst_t <= 5 * u and worst_s <= 8 * u  # the bounds of refnorm/ops/dyt.py
    assert naive_s >= 0.5  # the cancellation the formulation avoids is real
    assert _tanh_sech2(np.inf) == (1.0, 0.0) and _tanh_sech2(-np.inf) == (-1.0, 0.0)
    assert all(np.isnan(v) for v in _tanh_sech2(np.nan))


# ----------------------------------------------------------------------------- the corpus

def test_the_control_passes_every_case_and_the_mutant_only_the_untrapped_ones():
    from refnorm.conformance.harness import check
    from refnorm.conformance.mutants import load_mutant

    m = load_mutant("dyt_weight_channels_first")
    control = type("Control", (), {k: staticmethod(v) for k, v in m.CONTROL.items()})
    good = check(control, ops=["dyt"])
    assert not [o.case_id for o in good.outcomes if o.status == "failed"]
    assert good.counts()["passed"] >= 90
    bad = check(m, ops=["dyt"])
    failed = {o.case_id.split("__")[0] for o in bad.outcomes if o.status == "failed"}
    assert failed == {"dyt/btc_t_equals_c", "dyt/nhwc_h_equals_c"}


# ----------------------------------------------------------------------------- properties

def test_alpha_forms_and_gradient_shapes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4))
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    dy = random_dy(x.shape)
    ys, das = [], []
    for a, shape in ((0.75, ()), (np.array(0.75), ()), (np.array([0.75]), (1,)), (np.float32(0.75), ())):
        ys.append(refnorm.dyt(x, a, w, b))
        g = refnorm.dyt_backward(dy, x, a, w, b)
        assert g["alpha"].shape == shape and set(g) == {"x", "alpha", "weight", "bias"}
        das.append(float(g["alpha"].reshape(())))
    assert all(np.array_equal(ys[0], y) for y in ys) and len(set(das)) == 1
    assert set(refnorm.dyt_backward(dy, x, 0.75)) == {"x", "alpha"}
    assert set(refnorm.dyt_backward(dy, x, 0.75, bias=b)) == {"x", "alpha", "bias"}
    # a Python int is a real number too
    assert np.array_equal(refnorm.dyt(x, 1), refnorm.dyt(x, 1.0))


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_dtype_upcast_is_exact(dtype):
    rng = np.random.default_rng(1)
    x = (2 * rng.standard_normal((3, 5))).astype(dtype)
    a = np.array([0.5], dtype=dtype)
    w = (1 + rng.standard_normal(5)).astype(dtype)
    assert np.array_equal(refnorm.dyt(x, a, w), refnorm.dyt(x.astype(np.float64), a.astype(np.float64),
                                                          w.astype(np.float64)))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    kw = dict(x=rng.standard_normal((2, 3, 4)), alpha=np.array([0.5]), weight=rng.standard_normal(4),
              bias=rng.standard_normal(4))
    before = copy.deepcopy(kw)
    dy = random_dy((2, 3, 4))
    refnorm.dyt(**kw)
    refnorm.dyt_backward(dy, **kw)
    refnorm.dyt_jvp({"x": dy, "alpha": np.ones(1)}, **kw)
    refnorm.dyt_double_backward({"x": dy, "alpha": np.ones(1), "weight": np.ones(4)}, dy, **kw)
    for k, v in kw.items():
        assert np.array_equal(v, before[k]), k


def test_nan_is_local_and_inf_saturates():
    x = np.array([[0.5, np.nan, -1.0], [np.inf, 2.0, -np.inf]])
    w, b = np.array([2.0, 3.0, 4.0]), np.array([0.1, 0.2, 0.3])
    dy = random_dy(x.shape)
    y = refnorm.dyt(x, 0.5, w, b)
    assert np.isnan(y).sum() == 1 and np.isnan(y[0, 1])
    assert y[1, 0] == 2.0 + 0.1 and y[1, 2] == -4.0 + 0.3  # tanh(+-inf) = +-1
    g = refnorm.dyt_backward(dy, x, 0.5, w, b)
    assert np.isnan(g["x"]).sum() == 1 and g["x"][1, 0] == 0.0 and g["x"][1, 2] == 0.0
    assert np.isnan(g["alpha"])  # sech^2 x = 0 * inf at the inf (and the NaN)
    assert list(np.isnan(g["weight"])) == [False, True, False] and not np.isnan(g["bias"]).any()
    # alpha = 0: the layer is the bias; tanh'(0) = 1
    z = refnorm.dyt_backward(dy[:1, [0, 2]], x[:1, [0, 2]], 0.0, w[[0, 2]], b[[0, 2]])
    assert np.array_equal(refnorm.dyt(x[:1, [0, 2]], 0.0, w[[0, 2]], b[[0, 2]]), b[None, [0, 2]])
    # dalpha = sum w dy x tanh'(0) (two exact products, summed with one rounding by the kernel)
    want = w[0] * dy[0, 0] * x[0, 0] + w[2] * dy[0, 2] * x[0, 2]
    assert np.isclose(z["alpha"], want, rtol=1e-15, atol=0) and not z["x"].any()


def test_empty_input():
    x = np.zeros((0, 3))
    assert refnorm.dyt(x, 0.5, np.ones(3)).shape == (0, 3)
    g = refnorm.dyt_backward(np.zeros((0, 3)), x, np.array([0.5]), np.ones(3), np.ones(3))
    assert g["alpha"].shape == (1,) and g["alpha"][0] == 0.0 and not g["weight"].any()
    assert refnorm.dyt(np.zeros((2, 0)), 0.5).shape == (2, 0)
