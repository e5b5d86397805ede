"""Batch Layer Normalization: kernel vs reference, hand backward vs autograd vs
central differences (training and every inference flag combination), a NumPy
transcription of the Keras code path, the per-epoch moving statistics of the
Keras callback, NCHW, edge cases, dtype upcast, no mutation.  Its bad inputs
are in tests/ops/cases/batch_layer_norm.py (run by tests/ops/test_errors.py)."""

from __future__ import annotations

import copy
import itertools

import ml_dtypes
import numpy as np
import pytest
from autograd import grad

from refnorm.ops.batch_layer_norm import (batch_layer_norm, batch_layer_norm_backward, batch_layer_norm_batch_stats,
                                          batch_layer_norm_moving_stats)
from refnorm.reference.batch_layer_norm import batch_layer_norm as ref

from .._util import assert_close, noncentred, random_affine, random_dy

OP = "batch_layer_norm"
FLAGS = list(itertools.product((True, False), repeat=4))


def _moving(rng, x, fa, mode):
    """Plausible moving statistics: the statistics of a nearby batch."""
    st = batch_layer_norm_batch_stats(x + 0.2 * rng.standard_normal(x.shape), feature_axis=fa, batch_stats=mode)
    return {k: v + (0.1 if k.endswith("var") else 0.05) for k, v in st.items()}


def _case(shape, fa, mode, seed):
    rng = np.random.default_rng(seed)
    x = noncentred(rng, shape)
    w, b = random_affine(rng, (shape[fa],))
    return x, w, b, _moving(rng, x, fa, mode)


def _scale(dy, w):
    return float(np.max(np.abs(dy))) * float(np.max(np.abs(w))) * 10.0


def _check_all(x, w, b, kw, case, fd=True):
    y = batch_layer_norm(x, w, b, **kw)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert_close(y, ref(x, w, b, **kw), "kernel_vs_reference", op=OP, case=case, array="y")
    dy = random_dy(x.shape, seed=1)
    got = batch_layer_norm_backward(dy, x, w, b, **kw)
    args = {"x": x, "weight": w, "bias": b}
    assert sorted(got) == sorted(k for k, v in args.items() if v is not None)
    for name in got:
        def loss(v, name=name):
            return np.sum(ref(**{**args, name: v}, **kw) * dy)

        want = grad(loss)(args[name])
        scale = _scale(dy, w if w is not None else np.ones(1))
        assert_close(got[name], want, "backward_vs_autograd", op=OP, case=case, array=f"d{name}", scale=scale)
        if fd:
            h = 1e-5
            base = np.array(args[name])
            num = np.empty_like(base)
            for i in np.ndindex(base.shape):
                p, m = base.copy(), base.copy()
                p[i] += h
                m[i] -= h
                num[i] = np.sum((batch_layer_norm(**{**args, name: p}, **kw)
                                 - batch_layer_norm(**{**args, name: m}, **kw)) * dy) / (2 * h)
            assert_close(got[name], num, "backward_vs_fd", op=OP, case=case, array=f"d{name}", scale=scale)


GEOMS = [((5, 4), -1), ((3, 4, 5), -1), ((3, 4, 2, 3), 1), ((2, 2, 3, 3), -1), ((4, 1), -1), ((1, 5), -1)]


@pytest.mark.parametrize("shape,fa", GEOMS, ids=str)
@pytest.mark.parametrize("mode", ["position", "channel"])
def test_training(shape, fa, mode):
    x, w, b, _ = _case(shape, fa, mode, 2)
    for batch_size in (None, 7, 1):
        _check_all(x, w, b, dict(batch_size=batch_size, feature_axis=fa, batch_stats=mode),
                   f"{shape}-{fa}-{mode}-B{batch_size}")
    _check_all(x, None, b, dict(feature_axis=fa, batch_stats=mode, sqrt_d_scale=False), "no-weight-no-sqrt-d")
    _check_all(x, w, None, dict(feature_axis=fa, batch_stats=mode, weight_offset=0.0, eps=1e-2), "no-offset")


@pytest.mark.parametrize("shape,fa", [((5, 4), -1), ((3, 4, 2, 3), 1)], ids=str)
@pytest.mark.parametrize("mode", ["position", "channel"])
@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "".join("TF"[not v] for v in f))
def test_inference_every_flag_combination(shape, fa, mode, flags):
    x, w, b, mv = _case(shape, fa, mode, 3)
    before = copy.deepcopy((x, w, b, mv))
    kw = dict(batch_size=8, training=False, moving_stats=mv, flags=flags, feature_axis=fa, batch_stats=mode)
    _check_all(x, w, b, kw, f"{shape}-{mode}-{flags}", fd=shape == (5, 4))
    assert np.array_equal(x, before[0]) and np.array_equal(w, before[1]) and np.array_equal(b, before[2])
    assert all(np.array_equal(mv[k], before[3][k]) for k in mv), "moving_stats modified"


def test_moving_branch_is_affine():
    """All four flags True: y is affine in x, dx = (gamma/sqrt(d)) * (w_F r_F + w_B r_B) * dy."""
    x, w, b, mv = _case((4, 3), -1, "position", 4)
    dy = random_dy(x.shape, seed=5)
    kw = dict(training=False, moving_stats=mv, flags=(True,) * 4)
    dx = batch_layer_norm_backward(dy, x, w, b, **kw)["x"]
    B = 4
    wF, wB = 1 / B - 1e-4, 1 - (1 / B + 1e-4)
    rF, rB = 1 / np.sqrt(mv["feature_var"] + 1e-3), 1 / np.sqrt(mv["batch_var"] + 1e-3)
    assert_close(dx, w * dy * (wF * rF + wB * rB) / np.sqrt(3), "backward_vs_autograd", op=OP, case="affine",
                 array="dx")


# --------------------------------------------------------------------------------- the Keras code path

def keras_bln(x, gamma, beta, batchsize, training, moving, flags):
    """NumPy transcription of ``bln_layer.call`` (features last): ``bn_training`` / ``bln_inference``."""
    d = x.shape[-1]
    offset = 0.001
    Bmean = x.mean(axis=0, keepdims=True)  # tf.nn.moments(x, axes=[0], keepdims=True)
    Bvar = ((x - Bmean) ** 2).mean(axis=0, keepdims=True)
    Fmean = x.mean(axis=-1, keepdims=True)  # tf.nn.moments(x, axes=[-1], keepdims=True)
    Fvar = ((x - Fmean) ** 2).mean(axis=-1, keepdims=True)
    if not training:
        if flags[0]:
            Bmean = moving["batch_mean"]
        if flags[1]:
            Bvar = moving["batch_var"]
        if flags[2]:
            Fmean = moving["feature_mean"]
        if flags[3]:
            Fvar = moving["feature_var"]
    x_hat_batch = (x - Bmean) / np.sqrt(Bvar + offset)
    x_hat_feature = (x - Fmean) / np.sqrt(Fvar + offset)
    w_feature = 1 / batchsize - 0.0001
    w_batch = 1 - (1 / batchsize + 0.0001)
    x_hat = w_feature * x_hat_feature + w_batch * x_hat_batch
    numerator = gamma * x_hat
    x_beta = numerator / np.sqrt(d)
    return x_beta + beta


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5), (3, 2, 4, 6)], ids=str)
def test_vs_keras_transcription(shape):
    x, w, b, mv = _case(shape, -1, "position", 6)
    for training, flags in [(True, (True, True, False, False))] + [(False, f) for f in FLAGS]:
        y = batch_layer_norm(x, w, b, 16, training=training, moving_stats=mv, flags=flags)
        assert_close(y, keras_bln(x, w, b, 16, training, mv, flags), "kernel_vs_reference", op=OP,
                     case=f"keras-{training}-{flags}", array="y")


def test_moving_stats_reproduce_the_keras_callback_epoch():
    """Sum the statistics of every training batch (assign_add), then update_mm_mv at the last batch."""
    rng = np.random.default_rng(7)
    B, steps = 5, 4
    batches = [noncentred(rng, (B, 3, 4)) for _ in range(steps)]
    sums = {"batch_mean": 0.0, "batch_var": 0.0, "feature_mean": 0.0, "feature_var": 0.0}
    for xb in batches:  # Keras: moving_* += moments of the batch
        Bm = xb.mean(axis=0, keepdims=True)
        Fm = xb.mean(axis=-1, keepdims=True)
        cur = {"batch_mean": Bm, "batch_var": ((xb - Bm) ** 2).mean(axis=0, keepdims=True),
               "feature_mean": Fm, "feature_var": ((xb - Fm) ** 2).mean(axis=-1, keepdims=True)}
        ours = batch_layer_norm_batch_stats(xb)
        for k in sums:
            assert_close(ours[k], cur[k], "kernel_vs_reference", op=OP, case="batch-stats", array=k)
            sums[k] = sums[k] + ours[k]
    got = batch_layer_norm_moving_stats(sums, steps, B)
    keras = {"batch_mean": sums["batch_mean"] / steps,
             "batch_var": sums["batch_var"] * B / ((B - 1) * steps),
             "feature_mean": sums["feature_mean"] / steps,
             "feature_var": sums["feature_var"] * B / ((B - 1) * steps)}
    for k in keras:
        assert np.array_equal(got[k], keras[k]), k
    assert got["batch_var"].shape == (1, 3, 4) and got["feature_var"].shape == (B, 3, 1)
    nofvc = batch_layer_norm_moving_stats(sums, steps, B, feature_var_correction=False)
    assert np.array_equal(nofvc["feature_var"], sums["feature_var"] / steps)
    # the result feeds inference directly (same batch size for the per-slot feature statistics)
    y = batch_layer_norm(batches[0], None, None, B, training=False, moving_stats=got, flags=(True,) * 4)
    assert np.all(np.isfinite(y))


def test_feature_axis_1_is_the_channels_last_layer_transposed():
    x, w, b, _ = _case((3, 4, 2, 5), 1, "position", 8)
    xl = np.moveaxis(x, 1, -1)
    dy = random_dy(x.shape, seed=9)
    for mode in ("position", "channel"):
        y = batch_layer_norm(x, w, b, feature_axis=1, batch_stats=mode)
        yl = batch_layer_norm(xl, w, b, feature_axis=-1, batch_stats=mode)
        assert np.array_equal(y, np.moveaxis(yl, -1, 1))
        g = batch_layer_norm_backward(dy, x, w, b, feature_axis=1, batch_stats=mode)
        gl = batch_layer_norm_backward(np.moveaxis(dy, 1, -1), xl, w, b, feature_axis=-1, batch_stats=mode)
        assert np.array_equal(g["x"], np.moveaxis(gl["x"], -1, 1))
        assert np.array_equal(g["weight"], gl["weight"]) and np.array_equal(g["bias"], gl["bias"])
    st = batch_layer_norm_batch_stats(x, feature_axis=1)
    assert st["batch_mean"].shape == (1, 4, 2, 5) and st["feature_mean"].shape == (3, 1, 2, 5)
    assert batch_layer_norm_batch_stats(x, feature_axis=1, batch_stats="channel")["batch_var"].shape == (1, 4, 1, 1)


# --------------------------------------------------------------------------------- edge cases

def test_batch_of_one_with_batch_size_one():
    """B_cfg = 1 and one sample: xhat_B = 0, y = gamma * 0.9999 * xhat_F / sqrt(d) + beta
    (docs/ops/batch_layer_norm.md#bln-numerics)."""
    rng = np.random.default_rng(10)
    x = noncentred(rng, (1, 6))
    w, b = random_affine(rng, (6,))
    y = batch_layer_norm(x, w, b, 1)
    xf = (x - x.mean()) / np.sqrt(x.var() + 1e-3)
    assert_close(y, w * 0.9999 * xf / np.sqrt(6) + b, "kernel_vs_reference", op=OP, case="B1", array="y")
    dy = random_dy(x.shape, seed=11)
    g = batch_layer_norm_backward(dy, x, w, b, 1)
    # the batch branch contributes nothing: dx is the LayerNorm backward scaled by w_F / sqrt(d)
    gg = w * dy * (0.9999 / np.sqrt(6))
    c1, c2 = gg.mean(), (gg * xf).mean()
    assert_close(g["x"], (gg - c1 - xf * c2) / np.sqrt(x.var() + 1e-3), "backward_vs_autograd", op=OP, case="B1",
                 array="dx")


def test_constant_input():
    x = np.full((4, 3, 5), 2.5)
    w, b = random_affine(np.random.default_rng(12), (5,))
    assert np.array_equal(batch_layer_norm(x, w, b), np.broadcast_to(b, x.shape))
    dy = random_dy(x.shape, seed=13)
    g = batch_layer_norm_backward(dy, x, w, b)
    assert np.all(np.isfinite(g["x"])) and np.array_equal(g["weight"], np.zeros(5))
    _check_all(x, w, b, {}, "constant")


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
def test_upcast_is_exact(dtype):
    x, w, b, mv = _case((4, 3, 5), -1, "position", 14)
    xl, wl, bl = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    mvl = {k: v.astype(dtype) for k, v in mv.items()}
    up = lambda a: a.astype(np.float64)  # noqa: E731
    for training in (True, False):
        kw = dict(training=training, moving_stats=mvl)
        kw64 = dict(training=training, moving_stats={k: up(v) for k, v in mvl.items()})
        y = batch_layer_norm(xl, wl, bl, **kw)
        assert y.dtype == np.float64 and np.array_equal(y, batch_layer_norm(up(xl), up(wl), up(bl), **kw64))
        dy = random_dy(x.shape).astype(dtype)
        a = batch_layer_norm_backward(dy, xl, wl, bl, **kw)
        c = batch_layer_norm_backward(up(dy), up(xl), up(wl), up(bl), **kw64)
        assert all(np.array_equal(a[k], c[k]) for k in a)
