"""ScaleNorm against an implementation someone else wrote, and its conventions.

The outside check is a transcription of the authors' PyTorch module
(Nguyen & Salazar, "Transformers without Tears", arXiv:1910.05895; the
``ScaleNorm`` of their ``transformers_without_tears`` code)::

    norm = self.scale / torch.norm(x, dim=-1, keepdim=True).clamp(min=self.eps)
    return x * norm

run with torch in float64, forward and backward by autograd (dx and the gradient of
the scalar ``scale``), compared with refnorm's kernels; it never calls refnorm.
Then: the clamp's derivative at the tie (PyTorch's ``clamp(min=)`` passes the
gradient at equality), zero rows, the norm without overflow or underflow (against an
exact rational sum of squares), NaN/Inf, and the shapes ``g`` may take.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")

REL = 1e-14  # norm-wise relative agreement in float64: both are ~1e-16 accurate


def _authors_scale_norm(x, scale, eps):
    """The authors' module body, verbatim in its arithmetic (torch, float64)."""
    norm = scale / torch.norm(x, dim=-1, keepdim=True).clamp(min=eps)
    return x * norm


def _torch(x, g, dy, eps):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    gt = torch.tensor(np.asarray(g, dtype=np.float64), requires_grad=True)
    y = _authors_scale_norm(xt, gt, eps)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), gt.grad.numpy()


def _rel(a, b, scale=0.0):
    """max |a - b| relative to max |b|, or to ``scale`` (the size of the terms a result is
    summed from) where that is larger: with d = 1, dx is 0 up to the rounding of dy - dy."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), scale, 1e-300))


def _inputs():
    rng = np.random.default_rng(19)
    out = []
    for shape, eps in [((8, 16), 1e-5), ((3, 4, 7), 1e-5), ((5, 1), 1e-5), ((33,), 1e-5), ((6, 9), 0.5)]:
        x = -0.2 + 0.6 * rng.standard_normal(shape)
        if eps == 0.5:
            x[::2] *= 0.1  # these rows have norm < 0.5: the clamp is active there
        out.append((x, np.array([math.sqrt(shape[-1])]), rng.standard_normal(shape), eps))
    return out


def test_matches_the_authors_pytorch_code_forward_and_backward():
    worst = {"y": 0.0, "dx": 0.0, "dg": 0.0}
    for x, g, dy, eps in _inputs():
        y_t, dx_t, dg_t = _torch(x, g, dy, eps)
        y = refnorm.scale_norm(x, g, eps)
        d = refnorm.scale_norm_backward(dy, x, g, eps)
        assert d["g"].shape == g.shape
        r = refnorm.scale_norm_stats(x, g, eps)[1]["rnorm"]
        terms = {"dx": float(np.max(np.abs(g)) * np.max(r) * np.max(np.abs(dy)))}
        for k, (a, b) in {"y": (y, y_t), "dx": (d["x"], dx_t), "dg": (d["g"], dg_t)}.items():
            worst[k] = max(worst[k], _rel(a, b, terms.get(k, 0.0)))
    print(f"\nScaleNorm vs the authors' torch code (float64), worst norm-wise relative error: {worst}")
    assert max(worst.values()) < REL, worst


def test_the_clamp_passes_the_gradient_at_the_tie_as_torch():
    """||x|| == eps exactly (x = (eps, 0, 0)): the norm term is kept, as torch's clamp backward does."""
    eps = 1e-5
    x = np.array([[eps, 0.0, 0.0]])
    dy = np.array([[1.0, 2.0, 3.0]])
    t = torch.tensor(eps, dtype=torch.float64, requires_grad=True)
    t.clamp(min=eps).backward()
    assert t.grad.item() == 1.0  # torch's convention at equality
    y_t, dx_t, dg_t = _torch(x, 2.0, dy, eps)
    d = refnorm.scale_norm_backward(dy, x, 2.0, eps)
    # the norm term removes the component of dy along x: dx[0] = 0 (torch: rounding ~3e-11)
    assert d["x"][0, 0] == 0.0 and abs(dx_t[0, 0]) < 1e-10
    assert np.allclose(d["x"], dx_t, rtol=1e-14, atol=1e-10)
    # just below the tie the clamp is active: the whole dy passes, g dy / eps
    below = refnorm.scale_norm_backward(dy, np.nextafter(x, 0.0), 2.0, eps)
    assert np.array_equal(below["x"], 2.0 * dy / eps)


def test_zero_rows_and_eps_zero():
    x = np.zeros((2, 4))
    dy = np.arange(8.0).reshape(2, 4)
    y, st = refnorm.scale_norm_stats(x, 3.0)
    assert np.array_equal(y, np.zeros((2, 4))) and np.array_equal(st["rnorm"], np.full(2, 1.0 / 1e-5))
    d = refnorm.scale_norm_backward(dy, x, 3.0)
    y_t, dx_t, dg_t = _torch(x, 3.0, dy, 1e-5)  # torch masks norm's 0/0 at zero: the same
    assert np.allclose(d["x"], dx_t, rtol=1e-15) and d["g"] == 0.0 == dg_t
    with np.errstate(all="ignore"):
        assert np.isnan(refnorm.scale_norm(x, 3.0, eps=0.0)).all()  # 0 * inf, as torch
    assert torch.isnan(_authors_scale_norm(torch.zeros(2, 4, dtype=torch.float64), 3.0, 0.0)).all()


def _exact_norm(row) -> Fraction:
    return sum((Fraction(float(v)) ** 2 for v in row), Fraction(0))


@pytest.mark.parametrize("p2", [-1070, -600, -300, 0, 300, 600, 1020])
def test_norm_without_overflow_or_underflow(p2):
    """float64 rows scaled by 2^p2 (up to values near the top and the subnormals at the
    bottom): rnorm against the exact rational sum of squares; y does not depend on p2."""
    rng = np.random.default_rng(p2 + 2000)
    base = rng.standard_normal((4, 13))
    x = np.ldexp(base, p2)
    y, st = refnorm.scale_norm_stats(x, 1.5, eps=0.0)
    for i in range(4):
        ss = _exact_norm(x[i])
        # 1/sqrt(ss) to about 2^-104: compare rnorm^2 * ss with 1 (exact rational arithmetic)
        rn = st["rnorm"][i]
        if rn == 0.0 or not math.isfinite(rn) or rn < 2.0 ** -1020:
            continue  # 1/||x|| itself is outside the normal float64 range (subnormal or overflowed)
        assert abs(Fraction(float(rn)) ** 2 * ss - 1) <= 2 * 2.0 ** -53
    if p2 > -1022 + 60:  # base * 2^p2 exact (no subnormal element): y is bit-identical across scales
        assert np.array_equal(y, refnorm.scale_norm(base, 1.5, eps=0.0))
    assert np.all(np.isfinite(y))


def test_rnorm_is_correctly_rounded_on_random_rows():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 7)) * 10.0 ** rng.integers(-5, 5, (200, 1))
    _, st = refnorm.scale_norm_stats(x, 1.0, eps=0.0)
    bad = 0
    for i in range(200):
        ss = _exact_norm(x[i])
        r = float(st["rnorm"][i])
        lo, hi = np.nextafter(r, 0.0), np.nextafter(r, np.inf)
        # r is the nearest double to 1/sqrt(ss): (midpoint below)^2 ss < 1 < (midpoint above)^2 ss
        m_lo = (Fraction(float(lo)) + Fraction(r)) / 2
        m_hi = (Fraction(r) + Fraction(float(hi))) / 2
        bad += not (m_lo ** 2 * ss <= 1 <= m_hi ** 2 * ss)
    assert bad == 0


def test_nan_and_inf_rows():
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [3.0, 4.0, 0.0]])
    with np.errstate(all="ignore"):
        y, st = refnorm.scale_norm_stats(x, 2.0)
        t = _authors_scale_norm(torch.tensor(x), 2.0, 1e-5).numpy()
    assert np.isnan(y[0]).all() and np.isnan(st["rnorm"][0])
    assert np.isnan(y[1, 0]) and np.array_equal(y[1, 1:], [0.0, 0.0]) and st["rnorm"][1] == 0.0
    assert np.array_equal(np.isnan(y), np.isnan(t))
    assert np.allclose(y[2], [1.2, 1.6, 0.0], rtol=1e-15)


@pytest.mark.parametrize("g, shape", [(2.0, ()), (np.array(2.0), ()), (np.array([2.0]), (1,)),
                                      (np.array([2.0], np.float32), (1,)), (3, ())])
def test_g_shapes(g, shape):
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    d = refnorm.scale_norm_backward(dy, x, g)
    assert np.shape(d["g"]) == shape and d["g"].dtype == np.float64
    assert np.array_equal(refnorm.scale_norm(x, g), refnorm.scale_norm(x, float(np.asarray(g).reshape(()))))
    dd = refnorm.scale_norm_double_backward({"x": dy, "g": np.ones(shape)}, dy, x, g)
    assert np.shape(dd["g"]) == shape


def test_inputs_unchanged_and_low_precision_upcast_exactly():
    import ml_dtypes

    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6)).astype(ml_dtypes.bfloat16)
    keep = x.copy()
    y = refnorm.scale_norm(x, np.array([1.5], np.float16))
    assert np.array_equal(x.view(np.uint16), keep.view(np.uint16))
    assert np.array_equal(y, refnorm.scale_norm(x.astype(np.float64), 1.5))
