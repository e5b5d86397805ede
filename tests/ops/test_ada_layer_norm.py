"""Adaptive LayerNorm (adaLN) against an outside implementation: DiT's
``modulate(norm(x), shift, scale)`` (facebookresearch/DiT ``models.py``:
``nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)`` and
``modulate(x, shift, scale) = x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)``)
transcribed in PyTorch, float64: the forward, the backward by autograd, forward
mode by ``torch.func.jvp`` and the double backward by autograd of autograd.
DiT's ``x`` is ``(N, T, hidden)``; refnorm's ``mid`` of any rank is flattened
into DiT's token axis (empty ``mid``: one token).  Also: a zero scale and shift
is LayerNorm without affine, the low-precision upcast, and the saved statistics.
Bad inputs: tests/ops/cases/ada_layer_norm.py."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import refnorm

torch = pytest.importorskip("torch")


def modulate(x, shift, scale):
    """DiT models.py, verbatim."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def dit_ada_ln(x, ns, scale, shift, eps):
    """DiT's ``modulate(self.norm_final(x), shift, scale)`` on torch tensors, ``x`` of
    shape ``(N, *mid, *ns)`` viewed as DiT's ``(N, T, *ns)``, ``T = prod(mid)``."""
    N = x.shape[0]
    norm = torch.nn.LayerNorm(ns, elementwise_affine=False, eps=eps)
    xt = x.reshape((N, -1) + tuple(ns))
    return modulate(norm(xt), shift, scale).reshape(x.shape)


def _inputs(shape, ns, seed, spread=0.3, loc=0.0):
    rng = np.random.default_rng(seed)
    ps = (shape[0],) + tuple(ns)
    return (0.3 + 1.2 * rng.standard_normal(shape), loc + spread * rng.standard_normal(ps),
            0.5 * rng.standard_normal(ps), rng.standard_normal(shape))


CASES = [((2, 5, 8), (8,), 0.3, 0.0), ((3, 7), (7,), 0.3, 0.0), ((2, 3, 2, 3, 4), (3, 4), 0.3, 0.0),
         ((2, 4, 6), (6,), 0.02, -1.0), ((2, 3, 6), (6,), 50.0, 0.0), ((2, 1, 1), (1,), 0.3, 0.0)]

WORST: dict[str, float] = {}


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("shape, ns, spread, loc", CASES)
def test_forward_and_backward_match_dit(shape, ns, spread, loc):
    x, s, t, dy = _inputs(shape, ns, 7, spread, loc)
    eps = 1e-6
    T = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in (("x", x), ("scale", s),
                                                                                 ("shift", t))}
    y = dit_ada_ln(T["x"], ns, T["scale"], T["shift"], eps)
    y.backward(torch.tensor(dy, dtype=torch.float64))
    got = refnorm.ada_layer_norm(x, ns, s, t, eps)
    r = _rel(got, y.detach().numpy())
    WORST["y"] = max(WORST.get("y", 0.0), r)
    assert r < 1e-13, r
    grads = refnorm.ada_layer_norm_backward(dy, x, ns, s, t, eps)
    assert set(grads) == {"x", "scale", "shift"}
    for k in grads:
        assert grads[k].shape == T[k].shape
        r = _rel(grads[k], T[k].grad.numpy())
        WORST["d" + k] = max(WORST.get("d" + k, 0.0), r)
        assert r < 1e-12, (k, r)


@pytest.mark.parametrize("shape, ns, spread, loc", CASES[:3])
def test_jvp_and_double_backward_match_dit(shape, ns, spread, loc):
    x, s, t, dy = _inputs(shape, ns, 11, spread, loc)
    rng = np.random.default_rng(12)
    eps = 1e-6
    tan, cot = ({"x": rng.standard_normal(x.shape), "scale": rng.standard_normal(s.shape),
                 "shift": rng.standard_normal(s.shape)} for _ in range(2))
    f64 = {k: torch.tensor(v, dtype=torch.float64) for k, v in (("x", x), ("scale", s), ("shift", t))}

    def fn(xv, sv, tv):
        return dit_ada_ln(xv, ns, sv, tv, eps)

    names = ("x", "scale", "shift")
    _, ty = torch.func.jvp(fn, tuple(f64[k] for k in names),
                           tuple(torch.tensor(tan[k], dtype=torch.float64) for k in names))
    y, got_ty = refnorm.ada_layer_norm_jvp(tan, x, ns, s, t, eps)
    np.testing.assert_array_equal(y, refnorm.ada_layer_norm(x, ns, s, t, eps))
    r = _rel(got_ty, ty.numpy())
    WORST["ty"] = max(WORST.get("ty", 0.0), r)
    assert r < 1e-12, r

    prim = [f64[k].clone().requires_grad_(True) for k in names]
    dyt = torch.tensor(dy, dtype=torch.float64, requires_grad=True)
    g = torch.autograd.grad(fn(*prim), prim, dyt, create_graph=True)
    L = sum((torch.tensor(cot[k], dtype=torch.float64) * gk).sum() for k, gk in zip(names, g))
    want = dict(zip(("dy",) + names, torch.autograd.grad(L, [dyt] + prim, allow_unused=True)))
    got = refnorm.ada_layer_norm_double_backward(cot, dy, x, ns, s, t, eps)
    assert set(got) == {"dy", "x", "scale", "shift"}
    for k, w in want.items():
        w = np.zeros(got[k].shape) if w is None else w.numpy()
        r = _rel(got[k], w) if np.any(w) else float(np.max(np.abs(got[k])))
        WORST["d2" + k] = max(WORST.get("d2" + k, 0.0), r)
        assert r < 1e-11, (k, r)


def test_zero_modulation_is_layer_norm_without_affine():
    """adaLN-Zero at initialisation: scale = shift = 0 is LayerNorm without affine (same eps)."""
    x, s, t, dy = _inputs((2, 3, 5), (5,), 3)
    z = np.zeros_like(s)
    y = refnorm.ada_layer_norm(x, 5, z, z)
    np.testing.assert_allclose(y, refnorm.layer_norm(x, 5, eps=1e-6), rtol=0, atol=1e-15)
    _, st = refnorm.ada_layer_norm_stats(x, 5, s, t)
    _, ln = refnorm.layer_norm_stats(x, 5, eps=1e-6)
    for k in ("mean", "rstd"):
        np.testing.assert_array_equal(st[k], ln[k])
        assert st[k].shape == (2, 3)
    g = refnorm.ada_layer_norm_backward(dy, x, 5, z, z)
    np.testing.assert_allclose(g["x"], refnorm.layer_norm_backward(dy, x, 5, eps=1e-6)["x"], rtol=0, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_low_precision_upcast_exactly(dtype):
    x, s, t, dy = (a.astype(dtype) for a in _inputs((2, 3, 6), (6,), 5))
    want = refnorm.ada_layer_norm(*(a.astype(np.float64) for a in (x,)), 6, s.astype(np.float64),
                                  t.astype(np.float64))
    got = refnorm.ada_layer_norm(x, 6, s, t)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)


def test_inputs_unchanged_and_mid_broadcast():
    """Every row of a sample gets that sample's gain and shift (DiT's unsqueeze(1) over the tokens)."""
    x, s, t, _ = _inputs((2, 4, 3), (3,), 9)
    copies = [a.copy() for a in (x, s, t)]
    y = refnorm.ada_layer_norm(x, 3, s, t)
    for a, c in zip((x, s, t), copies):
        np.testing.assert_array_equal(a, c)
    for n in range(2):
        for m in range(4):
            row = refnorm.ada_layer_norm(x[n:n + 1, m], 3, s[n:n + 1], t[n:n + 1])
            np.testing.assert_array_equal(row[0], y[n, m])
    assert math.prod(y.shape) == x.size


def test_report_worst_errors():
    """Prints the worst relative error against the DiT transcription (run with -s)."""
    if WORST:
        print("\nada_layer_norm vs DiT transcription, worst relative error:",
              {k: f"{v:.2e}" for k, v in sorted(WORST.items())})
