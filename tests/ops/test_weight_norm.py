"""Weight Normalization against implementations someone else wrote, and its conventions.

The outside check runs PyTorch itself in float64: ``torch._weight_norm(v, g, dim)`` and
``torch.nn.utils.parametrizations.weight_norm`` on a ``Linear`` and a ``Conv2d`` (whose
``weight`` is recomputed from ``original0 = g`` and ``original1 = v``), forward and
backward by autograd (``dv``, ``dg``), compared with refnorm's kernels for dim 0, 1, the
last dim and the whole tensor (``dim=None``, passed to torch as -1).  The transcription
never calls refnorm.  Then: ``dim=-1`` is the whole tensor, not the last dim; other
negative dims count from the end; a zero slice is NaN as in PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")

REL = 1e-14  # norm-wise relative agreement in float64: both are ~1e-16 accurate
WORST = {}


def _rel(a, e, scale=0.0):
    """Norm-wise relative error; ``scale``: the magnitude of the terms ``e`` is computed from (``dv``
    of one-element slices is 0 up to the rounding of ``g/n (dy - xhat a)``, terms of size ``|g| |dy| / n``)."""
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    return float(np.max(np.abs(a - e)) / max(np.max(np.abs(e)), scale, 1e-300))


def _g_shape(shape, dim):
    if dim is None or dim == -1:
        return ()
    k = dim % len(shape)
    return tuple(s if i == k else 1 for i, s in enumerate(shape))


def _torch_weight_norm(v, g, dim, dy):
    vt = torch.tensor(v, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(g, dtype=torch.float64, requires_grad=True)
    w = torch._weight_norm(vt, gt, -1 if dim is None else dim)
    dv, dg = torch.autograd.grad(w, (vt, gt), torch.tensor(dy))
    return w.detach().numpy(), dv.numpy(), dg.numpy()


def _check(case, v, g, dim, dy, want):
    w, dv, dg = want
    got_w = refnorm.weight_norm(v, g, dim)
    got = refnorm.weight_norm_backward(dy, v, g, dim)
    _, st = refnorm.weight_norm_stats(v, g, dim)
    terms = float(np.max(np.abs(np.asarray(g)) / st["norm"]) * np.max(np.abs(dy)))
    for name, a, e in (("w", got_w, w), ("dv", got["v"], dv), ("dg", got["g"], dg)):
        assert a.shape == e.shape, (case, name, a.shape, e.shape)
        r = _rel(a, e, terms if name == "dv" else 0.0)
        WORST[name] = max(WORST.get(name, 0.0), r)
        assert r <= REL, (case, name, r)


@pytest.mark.parametrize("shape, dim", [((6, 5), 0), ((6, 5), 1), ((4, 3, 2, 3), 0), ((4, 3, 2, 3), 1),
                                        ((4, 3, 2, 3), 3), ((3, 5, 4), -2), ((6, 5), None), ((4, 3, 2, 3), -1),
                                        ((7,), 0), ((7,), None)])
def test_against_torch_weight_norm_float64(shape, dim):
    rng = np.random.default_rng(abs(hash((shape, dim))) % 2**32)
    v = rng.standard_normal(shape)
    g = 1.0 + 0.5 * rng.standard_normal(_g_shape(shape, dim))
    dy = rng.standard_normal(shape)
    _check(f"{shape}-{dim}", v, g, dim, dy, _torch_weight_norm(v, g, dim, dy))


@pytest.mark.parametrize("module, dim", [("linear", 0), ("linear", 1), ("linear", None), ("conv", 0), ("conv", 1),
                                         ("conv", 3), ("conv", None)])
def test_against_torch_parametrizations_weight_norm(module, dim):
    """The modern parametrization on a real layer: ``weight`` from ``original0`` (g) and
    ``original1`` (v); dv and dg by autograd through the layer's weight."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 4) if module == "linear" else torch.nn.Conv2d(3, 4, (2, 3))
    layer = torch.nn.utils.parametrizations.weight_norm(layer.double(), dim=dim)
    p = layer.parametrizations.weight
    with torch.no_grad():  # a g away from ||v|| so that the two are not the identity map
        p.original0.mul_(1.5).add_(0.1)
    g, v = p.original0.detach().numpy().copy(), p.original1.detach().numpy().copy()
    rng = np.random.default_rng(7)
    dy = rng.standard_normal(v.shape)
    w = layer.weight
    dg, dv = torch.autograd.grad(w, (p.original0, p.original1), torch.tensor(dy))
    _check(f"{module}-{dim}", v, g, dim, dy, (w.detach().numpy(), dv.numpy(), dg.numpy()))


def test_dim_minus_one_is_the_whole_tensor_not_the_last_dim():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((3, 4))
    w = refnorm.weight_norm(v, np.array(2.0), -1)
    np.testing.assert_allclose(w, 2.0 * v / np.sqrt(np.sum(v * v)), rtol=1e-15)
    assert np.array_equal(w, refnorm.weight_norm(v, np.array(2.0), None))
    last = refnorm.weight_norm(v, np.full((1, 4), 2.0), 1)  # the last dim, asked for as ndim - 1
    np.testing.assert_allclose(last, 2.0 * v / np.sqrt(np.sum(v * v, axis=0, keepdims=True)), rtol=1e-15)
    assert np.array_equal(refnorm.weight_norm(v, np.full((3, 1), 2.0), -2), refnorm.weight_norm(v, np.full((3, 1),
                                                                                                          2.0), 0))


def test_zero_slice_is_nan_as_torch():
    rng = np.random.default_rng(4)
    v = rng.standard_normal((3, 4))
    v[1] = 0.0
    g = rng.standard_normal((3, 1)) + 1.0
    dy = rng.standard_normal((3, 4))
    w, dv, dg = _torch_weight_norm(v, g, 0, dy)
    got_w = refnorm.weight_norm(v, g, 0)
    got = refnorm.weight_norm_backward(dy, v, g, 0)
    for a, e in ((got_w, w), (got["v"], dv), (got["g"], dg)):
        assert np.array_equal(np.isnan(a), np.isnan(e))
        assert np.isnan(a[1]).all() and np.isfinite(a[[0, 2]]).all()
    assert refnorm.weight_norm_stats(v, g, 0)[1]["norm"][1, 0] == 0.0


def test_report_worst_errors():
    print("\nweight_norm vs torch (float64), worst norm-wise relative error:", WORST)
