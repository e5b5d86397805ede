"""Edge cases every op must get right (docs/edge-cases.md: E2, E3, E6, E19
and E23): exact answers where the math gives one, NaN/Inf confined to their
own reduction set, exact upcast of low-precision input.  Edge cases of one op
alone are in its tests/ops/test_<op>.py (E1's badly conditioned rows:
test_layer_norm.py)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import refnorm

from .._util import noncentred, op_cases, random_affine, random_dy


# op -> (x shape, forward(x, w, b), backward(dy, x, w, b), shape of the affine)
def _ops():
    return {
        "layer_norm": ((4, 6, 5), lambda x, w, b: refnorm.layer_norm(x, (6, 5), w, b),
                       lambda dy, x, w, b: refnorm.layer_norm_backward(dy, x, (6, 5), w, b), (6, 5)),
        "group_norm": ((3, 6, 5), lambda x, w, b: refnorm.group_norm(x, 3, w, b),
                       lambda dy, x, w, b: refnorm.group_norm_backward(dy, x, 3, w, b), (6,)),
        "instance_norm": ((3, 4, 5), lambda x, w, b: refnorm.instance_norm(x, None, None, w, b),
                          lambda dy, x, w, b: refnorm.instance_norm_backward(dy, x, None, None, w, b), (4,)),
        "batch_norm": ((3, 4, 5), lambda x, w, b: refnorm.batch_norm(x, None, None, w, b, True),
                       lambda dy, x, w, b: refnorm.batch_norm_backward(dy, x, None, None, w, b, True), (4,)),
    }


CENTRING = list(_ops())


def _broadcast_bias(op, b, shape):
    if op == "layer_norm":
        return np.broadcast_to(b, shape)
    return np.broadcast_to(b.reshape((1, -1) + (1,) * (len(shape) - 2)), shape)


@pytest.mark.parametrize("op", CENTRING)
@pytest.mark.parametrize("c", [0.1, 1.0, 1e6, -3.7e-3])
def test_constant_input_gives_exactly_bias(op, c):
    """E2: x = c everywhere, eps > 0: xhat = 0 exactly, so y == bias bit for bit
    (0.1 is not dyadic: a mean that is not exactly c would leak through)."""
    shape, fwd, bwd, ashape = _ops()[op]
    w, b = random_affine(np.random.default_rng(0), ashape)
    x = np.full(shape, c)
    y = fwd(x, w, b)
    assert np.array_equal(y, _broadcast_bias(op, b, shape)), f"{op}: constant input {c} did not give bias exactly"
    g = bwd(random_dy(shape), x, w, b)
    assert np.array_equal(g["weight"], np.zeros(ashape)), f"{op}: dweight of a constant input must be 0"


@pytest.mark.parametrize("op", CENTRING)
def test_constant_input_with_zero_eps_is_nan(op):
    """E2 with eps = 0: xhat = 0/0; refnorm declares NaN, as PyTorch computes."""
    shape, *_ = _ops()[op]
    x = np.full(shape, 2.5)
    fwd = {"layer_norm": lambda: refnorm.layer_norm(x, (6, 5), eps=0.0),
           "group_norm": lambda: refnorm.group_norm(x, 3, eps=0.0),
           "instance_norm": lambda: refnorm.instance_norm(x, eps=0.0),
           "batch_norm": lambda: refnorm.batch_norm(x, None, None, training=True, eps=0.0)}[op]
    assert np.all(np.isnan(fwd()))


def test_single_element_sets_give_bias_and_zero_gradients():
    """E3: a reduction set of one element: y = bias for any weight, dx = 0 and
    dweight = 0 exactly."""
    rng = np.random.default_rng(1)
    x = np.array([[1e6], [-3.0], [0.25]])
    for wv in (0.0, 2.0, 123.0):
        w, b = np.array([wv]), np.array([3.0])
        y = refnorm.layer_norm(x, (1,), w, b)
        assert np.array_equal(y, np.full_like(x, 3.0))
        g = refnorm.layer_norm_backward(rng.standard_normal(x.shape), x, (1,), w, b)
        assert np.array_equal(g["x"], np.zeros_like(x)) and np.array_equal(g["weight"], [0.0])
    # GroupNorm with one element per group (G = C, no spatial extent)
    x = noncentred(rng, (2, 4, 1))
    w, b = random_affine(rng, (4,))
    y = refnorm.group_norm(x, 4, w, b)
    assert np.array_equal(y, np.broadcast_to(b.reshape(1, 4, 1), x.shape))
    g = refnorm.group_norm_backward(rng.standard_normal(x.shape), x, 4, w, b)
    assert np.array_equal(g["x"], np.zeros_like(x)) and np.array_equal(g["weight"], np.zeros(4))


def test_float16_256_does_not_overflow():
    """E6: squares of 256 overflow float16 (65536 > 65504); refnorm computes in float64."""
    x = np.array([[256.0, -256.0]], dtype=np.float16)
    y = refnorm.layer_norm(x, (2,))
    expected = np.array([[1.0, -1.0]]) / np.sqrt(1.0 + 1e-5 / 65536.0)
    np.testing.assert_allclose(y, expected, rtol=1e-15, atol=0)
    y = refnorm.rms_norm(np.array([[256.0, 256.0]], dtype=np.float16), (2,), eps=1e-5)
    np.testing.assert_allclose(y, np.array([[1.0, 1.0]]) / np.sqrt(1.0 + 1e-5 / 65536.0), rtol=1e-15, atol=0)


def _nan_inf_x(op, shape):
    x = noncentred(np.random.default_rng(3), shape)
    x[0, 3, 1] = np.inf
    x[1, 5 % shape[1], 2] = np.nan
    return x


def _affected(op, shape):
    """Boolean mask of the elements whose reduction set contains x[0,3,1] or x[1,5%C,2]."""
    m = np.zeros(shape, bool)
    for n, c in ((0, 3), (1, 5 % shape[1])):
        if op == "layer_norm":
            m[n] = True
        elif op == "group_norm":
            g = c // 2  # 6 channels, 3 groups
            m[n, 2 * g:2 * g + 2] = True
        elif op == "instance_norm":
            m[n, c] = True
        elif op == "batch_norm":
            m[:, c] = True
    return m


@pytest.mark.parametrize("op", CENTRING + ["rms_norm"])
def test_nan_and_inf_stay_in_their_own_reduction_set(op):
    """E23: only the reduction sets holding the Inf/NaN become NaN; every other
    element is bit-identical to a clean run, forward and dx."""
    if op == "rms_norm":
        shape, ashape = (4, 6, 5), (6, 5)
        fwd = lambda x, w, b: refnorm.rms_norm(x, (6, 5), w)  # noqa: E731
        bwd = lambda dy, x, w, b: refnorm.rms_norm_backward(dy, x, (6, 5), w)  # noqa: E731
        mask = _affected("layer_norm", shape)
    else:
        shape, fwd, bwd, ashape = _ops()[op]
        if op == "group_norm":
            shape = (3, 6, 5)
        mask = _affected(op, shape)
    w, b = random_affine(np.random.default_rng(4), ashape)
    clean = noncentred(np.random.default_rng(3), shape)
    dirty = _nan_inf_x(op, shape)
    dy = random_dy(shape)
    for name, a, c in (("y", fwd(dirty, w, b), fwd(clean, w, b)),
                       ("dx", bwd(dy, dirty, w, b)["x"], bwd(dy, clean, w, b)["x"])):
        nan_mask = mask.copy()
        if op == "rms_norm" and name == "y":
            # No centring: the +inf row has mean square inf, so rstd = 1/sqrt(inf) = 0
            # and IEEE evaluation of x * rstd gives 0 for its finite elements (as
            # PyTorch does) and NaN (inf * 0) for the inf itself.
            row = np.zeros(shape, bool)
            row[0] = True
            finite = row & np.isfinite(dirty)
            assert np.all(a[finite] == 0.0), "rms_norm y: finite elements of the +inf row must be 0"
            assert np.isnan(a[0, 3, 1]), "rms_norm y: inf * rstd(=0) must be NaN"
            nan_mask[0] = False
        assert np.all(np.isnan(a[nan_mask])), f"{op} {name}: affected sets must be NaN"
        assert np.array_equal(a[~mask], c[~mask]), f"{op} {name}: NaN/Inf leaked outside its reduction set"


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32])
@pytest.mark.parametrize("op", list(refnorm.registry()))
def test_low_precision_input_is_upcast_exactly(op, dtype):
    """A float16/bfloat16/float32 input gives bit for bit the float64 result of
    the same values: the upcast is exact and nothing else depends on the dtype
    (except RMSNorm's eps=None, so a battery case with an explicit eps is used).
    Every array argument -- x (weight standardization: the weight itself), the
    parameters, running or moving statistics -- and dy are in ``dtype``."""
    spec = refnorm.registry()[op]
    # (a fused residual add's residual_dtype=None means the input's dtype: take an explicit float64 one)
    kw = next(kw for _, kw in op_cases(op) if kw.get("eps", 0.0) is not None
              and kw.get("residual_dtype", "float64") == "float64")
    low = _cast(kw, dtype)
    up = _cast(low, np.float64)
    y_low, y64 = spec.forward(**low), spec.forward(**up)
    if len(spec.outputs) == 1:  # a fused op returns a tuple of outputs
        y_low, y64 = (y_low,), (y64,)
    for a, b in zip(y_low, y64):
        assert a.dtype == np.float64 and np.array_equal(a, b)
    rng = np.random.default_rng(5)
    dys = [rng.standard_normal(b.shape).astype(dtype) for b in y64]
    first = spec.differentiable[0]  # "x", or "weight" for weight standardization
    g_low = spec.backward(*dys, **low)[first]
    g64 = spec.backward(*[d.astype(np.float64) for d in dys], **up)[first]
    assert np.array_equal(g_low, g64)


def _cast(kw, dtype):
    """kw with every float array (also inside a dict) cast to ``dtype``."""
    def cast(v):
        if isinstance(v, dict):
            return {k: cast(a) for k, a in v.items()}
        floating = isinstance(v, np.ndarray) and (v.dtype.kind == "f" or v.dtype == ml_dtypes.bfloat16)
        return v.astype(dtype) if floating else v
    return {k: cast(v) for k, v in kw.items()}


def test_invariants_of_xhat_and_dx():
    """Mean-centring ops: the normalized output has zero mean and variance
    var/(var+eps) over each reduction set; with eps = 0, sum(dx) = 0 and
    sum(dx * xhat) = 0 over each set (dx is orthogonal to the two directions the
    op is invariant to: shift and scale).  RMSNorm with eps = 0: sum(dx * x) = 0."""
    rng = np.random.default_rng(6)
    x = noncentred(rng, (5, 37))
    dy = rng.standard_normal(x.shape)
    w, _ = random_affine(rng, (37,))
    y = refnorm.layer_norm(x, (37,), eps=0.0)
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(y.var(axis=1), 1.0, rtol=1e-13)
    dx = refnorm.layer_norm_backward(dy, x, (37,), w, eps=0.0)["x"]
    scale = np.abs(dx).sum(axis=1)
    assert np.all(np.abs(dx.sum(axis=1)) <= 1e-14 * scale)
    assert np.all(np.abs((dx * y).sum(axis=1)) <= 1e-13 * scale)
    # shift and positive-scale invariance of the forward (eps = 0)
    np.testing.assert_allclose(refnorm.layer_norm(3.0 * x + 7.0, (37,), eps=0.0), y, atol=1e-13)
    # RMSNorm: scale invariance, dx orthogonal to x
    dxr = refnorm.rms_norm_backward(dy, x, (37,), w, eps=0.0)["x"]
    assert np.all(np.abs((dxr * x).sum(axis=1)) <= 1e-13 * np.abs(dxr * x).sum(axis=1))
    np.testing.assert_allclose(refnorm.rms_norm(4.0 * x, (37,), eps=0.0), refnorm.rms_norm(x, (37,), eps=0.0),
                               rtol=1e-15)
    # BatchNorm (training): per-channel sums of dx vanish for eps = 0
    xb = noncentred(rng, (6, 3, 7))
    dxb = refnorm.batch_norm_backward(rng.standard_normal(xb.shape), xb, None, None, training=True, eps=0.0)["x"]
    assert np.all(np.abs(dxb.sum(axis=(0, 2))) <= 1e-14 * np.abs(dxb).sum(axis=(0, 2)))
