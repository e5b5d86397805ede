"""refnorm.analysis: every metric against a direct, loop-level NumPy formula on
random data, the power-decomposition identity, layouts, dtypes and errors."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

import refnorm
from refnorm.analysis import (PowerDecomposition, avg_channel_squared_mean, avg_channel_variance,
                              power_decomposition, residual_variance, signal_metrics)

EPS = np.finfo(np.float64).eps
SHAPES = [(5, 4), (5, 4, 7), (6, 3, 4, 5), (3, 2, 2, 3, 4), (1, 3, 4, 4), (4, 1, 3, 3)]


def data(shape, seed=0, loc=-2.3, scale=0.5):
    """Non-centred, channel- and instance-heterogeneous data."""
    rng = np.random.default_rng(seed)
    x = loc + scale * rng.standard_normal(shape)
    x += rng.standard_normal((shape[0],) + (1,) * (len(shape) - 1))  # instance offsets
    x += rng.standard_normal((1, shape[1]) + (1,) * (len(shape) - 2))  # channel offsets
    return x


# --- direct formulas: explicit loops over channels and instances ----------------------

def direct_sq_mean(x):
    C = x.shape[1]
    return sum(float(np.mean(x[:, c])) ** 2 for c in range(C)) / C


def direct_var(x, ddof=0):
    C = x.shape[1]
    out = []
    for c in range(C):
        v = x[:, c].reshape(-1)
        m = sum(v) / v.size
        out.append(sum((v - m) ** 2) / (v.size - ddof))
    return sum(out) / C


def direct_decomposition(y):
    N, C = y.shape[:2]
    terms = np.zeros(5)
    for c in range(C):
        mus, s2s = [], []
        for n in range(N):
            v = y[n, c].reshape(-1)
            mu = sum(v) / v.size
            mus.append(mu)
            s2s.append(sum((v - mu) ** 2) / v.size)
        mus, s2s = np.array(mus), np.array(s2s)
        mu_c = sum(mus) / N
        sds = np.sqrt(s2s)
        sd_bar = sum(sds) / N
        terms += [np.mean(y[:, c] ** 2), mu_c ** 2, sum((mus - mu_c) ** 2) / N, sum(s2s) / N,
                  sum((sds - sd_bar) ** 2) / N]
    return terms / C


# --- signal-propagation metrics ------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_avg_channel_squared_mean_direct(shape):
    x = data(shape, seed=len(shape))
    assert avg_channel_squared_mean(x) == pytest.approx(direct_sq_mean(x), rel=1e-13)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("estimator, ddof", [("biased", 0), ("unbiased", 1)])
def test_avg_channel_variance_and_residual_direct(shape, estimator, ddof):
    x = data(shape, seed=7)
    expected = direct_var(x, ddof)
    assert avg_channel_variance(x, estimator=estimator) == pytest.approx(expected, rel=1e-12)
    assert residual_variance(x, estimator=estimator) == pytest.approx(expected, rel=1e-12)


def test_default_estimator_is_biased():
    x = data((4, 3, 5, 5))
    assert avg_channel_variance(x) == avg_channel_variance(x, estimator="biased")
    assert residual_variance(x) == residual_variance(x, estimator="biased")
    assert avg_channel_variance(x, estimator="unbiased") > avg_channel_variance(x)


def test_signal_metrics():
    x, r = data((4, 3, 5, 5), seed=1), data((4, 6, 2, 2), seed=2)
    m = signal_metrics(x)
    assert set(m) == {"avg_sq_mean", "avg_var"}
    assert m["avg_sq_mean"] == avg_channel_squared_mean(x)
    assert m["avg_var"] == avg_channel_variance(x)
    m = signal_metrics(x, r, estimator="unbiased")
    assert set(m) == {"avg_sq_mean", "avg_var", "res_avg_var"}
    assert m["avg_var"] == avg_channel_variance(x, estimator="unbiased")
    assert m["res_avg_var"] == residual_variance(r, estimator="unbiased")
    assert all(type(v) is float for v in m.values())


def test_per_channel_values():
    x = data((4, 3, 5, 5), seed=3)
    sq = avg_channel_squared_mean(x, per_channel=True)
    var = avg_channel_variance(x, per_channel=True)
    assert sq.shape == var.shape == (3,) and sq.dtype == var.dtype == np.float64
    np.testing.assert_allclose(sq, x.mean(axis=(0, 2, 3)) ** 2, rtol=1e-13)
    np.testing.assert_allclose(var, x.var(axis=(0, 2, 3)), rtol=1e-12)
    assert avg_channel_squared_mean(x) == pytest.approx(sq.mean(), rel=1e-15)
    np.testing.assert_array_equal(residual_variance(x, per_channel=True), var)


def test_scaling_laws():
    x = data((4, 3, 5, 5), seed=4)
    a = 3.0
    assert avg_channel_squared_mean(a * x) == pytest.approx(a * a * avg_channel_squared_mean(x), rel=1e-13)
    assert avg_channel_variance(a * x) == pytest.approx(a * a * avg_channel_variance(x), rel=1e-13)
    assert avg_channel_variance(x + 5.0) == pytest.approx(avg_channel_variance(x), rel=1e-12)


# --- power decomposition --------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_power_decomposition_direct(shape):
    y = data(shape, seed=11)
    pd = power_decomposition(y)
    assert isinstance(pd, PowerDecomposition)
    np.testing.assert_allclose(np.array(pd), direct_decomposition(y), rtol=1e-12, atol=1e-15)
    assert all(type(v) is float for v in pd)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed, loc, scale", [(0, 0.0, 1.0), (1, -2.3, 0.5), (2, 1e3, 1.0), (3, 0.1, 1e-3),
                                              (4, 1e-20, 1e-22)])
def test_power_identity_to_rounding(shape, seed, loc, scale):
    """P(y) = channel_mean_power + instance_mean_var + instance_var_mean, to a few ulps of P."""
    y = data(shape, seed=seed, loc=loc, scale=scale)
    pd = power_decomposition(y)
    rhs = pd.channel_mean_power + pd.instance_mean_var + pd.instance_var_mean
    assert abs(pd.power - rhs) <= 8 * EPS * pd.power, (pd, rhs)
    pc = power_decomposition(y, per_channel=True)
    rhs_c = pc.channel_mean_power + pc.instance_mean_var + pc.instance_var_mean
    assert np.all(np.abs(pc.power - rhs_c) <= 8 * EPS * pc.power)
    fr = pd.fractions()
    assert sum(fr.values()) == pytest.approx(1.0, abs=16 * EPS)


def test_power_identity_exact_on_dyadic_data():
    """With small dyadic values every operation is exact: the identity holds exactly."""
    rng = np.random.default_rng(5)
    y = rng.integers(-8, 9, size=(4, 2, 2, 2)).astype(np.float64) / 4  # N, S powers of 2: exact means
    pd = power_decomposition(y)
    assert pd.power == pd.channel_mean_power + pd.instance_mean_var + pd.instance_var_mean


def test_decomposition_agrees_with_signal_metrics():
    """E_n mu_c(n) is the channel mean (equal instance sizes), and Var = Var_n mu + E_n s2 (total variance)."""
    y = data((6, 4, 3, 5), seed=8)
    pd = power_decomposition(y)
    assert pd.channel_mean_power == pytest.approx(avg_channel_squared_mean(y), rel=1e-13)
    assert pd.instance_mean_var + pd.instance_var_mean == pytest.approx(avg_channel_variance(y), rel=1e-12)
    assert pd.power == pytest.approx(avg_channel_squared_mean(y) + avg_channel_variance(y), rel=1e-12)


def test_decomposition_per_channel():
    y = data((6, 4, 3, 5), seed=9)
    pc = power_decomposition(y, per_channel=True)
    pd = power_decomposition(y)
    for field in PowerDecomposition._fields:
        v = getattr(pc, field)
        assert isinstance(v, np.ndarray) and v.shape == (4,) and v.dtype == np.float64
        assert getattr(pd, field) == pytest.approx(v.mean(), rel=1e-14)
    np.testing.assert_allclose(pc.power, np.mean(y ** 2, axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(pc.instance_std_var, np.var(np.std(y, axis=(2, 3)), axis=0), rtol=1e-10, atol=1e-16)
    assert pc.collapse.shape == pc.relative_std_spread.shape == (4,)
    np.testing.assert_allclose(pc.collapse, pc.channel_mean_power / pc.power, rtol=1e-15)


def test_ratios_bounds():
    for seed in range(5):
        pd = power_decomposition(data((5, 3, 4, 4), seed=seed))
        assert 0.0 <= pd.collapse <= 1.0
        assert 0.0 <= pd.relative_std_spread <= 1.0  # Var_n s <= E_n s^2
        assert pd.instance_std_var <= pd.instance_var_mean


def test_channel_constant_input_collapses_fully():
    rng = np.random.default_rng(0)
    a = rng.standard_normal(3)
    y = np.broadcast_to(a[None, :, None, None], (4, 3, 5, 5)).copy()
    pd = power_decomposition(y)
    assert pd.collapse == pytest.approx(1.0, rel=1e-15)
    assert pd.instance_mean_var == pd.instance_var_mean == pd.instance_std_var == 0.0
    assert math.isnan(pd.relative_std_spread)  # 0 / 0


def test_zero_input():
    pd = power_decomposition(np.zeros((2, 3, 4)))
    assert pd.power == 0.0 and math.isnan(pd.collapse)
    assert all(math.isnan(v) for v in pd.fractions().values())
    pc = power_decomposition(np.zeros((2, 3, 4)), per_channel=True)
    assert np.all(np.isnan(pc.collapse))


def test_instance_norm_output_has_no_instance_variability():
    """Failure mode (ii): InstanceNorm makes every instance mean 0 and every instance std ~1."""
    y = refnorm.instance_norm(data((6, 4, 5, 5), seed=12))
    pd = power_decomposition(y)
    assert pd.channel_mean_power < 1e-30 and pd.instance_mean_var < 1e-30
    assert pd.relative_std_spread < 1e-9
    assert pd.instance_var_mean == pytest.approx(1.0, rel=1e-3)  # eps = 1e-5 inside the sqrt
    ln = power_decomposition(refnorm.layer_norm(data((6, 4, 5, 5), seed=12), (4, 5, 5)))
    assert ln.instance_mean_var > 1e-3 and ln.relative_std_spread > 1e-3


def test_batch_norm_output_has_no_channel_mean():
    y = refnorm.batch_norm(data((6, 4, 5, 5), seed=13), None, None, training=True)
    pd = power_decomposition(y)
    assert pd.collapse < 1e-30
    assert avg_channel_squared_mean(y) < 1e-30
    assert avg_channel_variance(y) == pytest.approx(1.0, rel=1e-3)


# --- layouts, dtypes ------------------------------------------------------------------

@pytest.mark.parametrize("fn", [avg_channel_squared_mean, avg_channel_variance, residual_variance,
                                power_decomposition])
def test_channel_axis(fn):
    x = data((4, 3, 5, 6), seed=14)
    ref = fn(x)
    nhwc = np.moveaxis(x, 1, -1).copy()
    for ax in (-1, 3):
        np.testing.assert_allclose(np.array(fn(nhwc, channel_axis=ax)), np.array(ref), rtol=1e-13)
    nhcw = np.moveaxis(x, 1, 2).copy()
    np.testing.assert_allclose(np.array(fn(nhcw, channel_axis=2)), np.array(ref), rtol=1e-13)


def test_no_position_axis():
    """(N, C): one position per instance; instance variances are 0, the instance means are the values."""
    x = data((7, 3), seed=15)
    pd = power_decomposition(x)
    assert pd.instance_var_mean == 0.0 and pd.instance_std_var == 0.0
    assert pd.instance_mean_var == pytest.approx(direct_var(x), rel=1e-12)
    assert avg_channel_variance(x) == pytest.approx(np.mean(np.var(x, axis=0)), rel=1e-13)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16, np.float32, np.float64])
@pytest.mark.parametrize("fn", [avg_channel_squared_mean, avg_channel_variance, residual_variance,
                                power_decomposition])
def test_dtypes_upcast_exactly(dtype, fn):
    x = data((4, 3, 3, 3), seed=16).astype(dtype)
    x64 = x.astype(np.float64)
    assert np.array(fn(x)).tolist() == np.array(fn(x64)).tolist()


def test_inputs_not_modified_and_lists_accepted():
    x = data((3, 2, 4), seed=17)
    before = x.copy()
    xt = np.asfortranarray(x)
    for fn in (avg_channel_squared_mean, avg_channel_variance, residual_variance, power_decomposition):
        fn(x)
        fn(xt, channel_axis=1)
        fn(x, channel_axis=-1)
    np.testing.assert_array_equal(x, before)
    assert avg_channel_variance(x.tolist()) == avg_channel_variance(x)
    assert power_decomposition(xt) == power_decomposition(x)


def test_non_finite_propagates():
    x = data((3, 2, 4), seed=18)
    x[1, 0, 2] = np.nan
    assert math.isnan(avg_channel_squared_mean(x)) and math.isnan(avg_channel_variance(x))
    assert math.isnan(power_decomposition(x).power)
    assert not math.isnan(avg_channel_variance(x, per_channel=True)[1])


# --- errors ---------------------------------------------------------------------------

ALL = [(avg_channel_squared_mean, "x"), (avg_channel_variance, "x"), (residual_variance, "residual"),
       (power_decomposition, "y")]


@pytest.mark.parametrize("fn, name", ALL)
@pytest.mark.parametrize("bad", [np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=bool), np.ones((2, 3), complex),
                                 None, "abc", [[1, 2], [3]]])
def test_non_float_is_type_error_naming_argument(fn, name, bad):
    with pytest.raises(TypeError, match=rf"^{name} "):
        fn(bad)


@pytest.mark.parametrize("fn, name", ALL)
@pytest.mark.parametrize("shape", [(), (5,)])
def test_wrong_ndim_is_value_error_naming_argument(fn, name, shape):
    with pytest.raises(ValueError, match=rf"^{name} must have at least 2 dimensions"):
        fn(np.ones(shape))


@pytest.mark.parametrize("fn, name", ALL)
@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 0, 2), (2, 3, 0)])
def test_empty_is_value_error(fn, name, shape):
    with pytest.raises(ValueError, match=rf"^{name} must not be empty"):
        fn(np.ones(shape))


@pytest.mark.parametrize("fn, name", ALL)
def test_channel_axis_errors(fn, name):
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="channel_axis must not be the batch axis"):
        fn(x, channel_axis=0)
    with pytest.raises(ValueError, match="channel_axis must not be the batch axis"):
        fn(x, channel_axis=-3)
    with pytest.raises(ValueError, match=rf"channel_axis must be in \[-3, 3\) for {name}"):
        fn(x, channel_axis=3)
    for bad in (1.0, True, "1", None):
        with pytest.raises(TypeError, match="channel_axis must be an int"):
            fn(x, channel_axis=bad)


@pytest.mark.parametrize("fn, name", ALL)
def test_per_channel_must_be_bool(fn, name):
    with pytest.raises(TypeError, match="per_channel must be a bool"):
        fn(np.ones((2, 3, 4)), per_channel=1)


@pytest.mark.parametrize("fn", [avg_channel_variance, residual_variance])
def test_estimator_errors(fn):
    x = np.ones((2, 3, 4))
    with pytest.raises(ValueError, match="estimator must be 'biased' or 'unbiased'"):
        fn(x, estimator="population")
    with pytest.raises(TypeError, match="estimator must be a str"):
        fn(x, estimator=1)
    with pytest.raises(ValueError, match="estimator must be 'biased' or 'unbiased'"):
        signal_metrics(x, estimator="sample")


@pytest.mark.parametrize("fn, name", [(avg_channel_variance, "x"), (residual_variance, "residual")])
def test_unbiased_needs_two_values_per_channel(fn, name):
    with pytest.raises(ValueError, match=rf"estimator 'unbiased' needs at least 2 values.*{name} with 1"):
        fn(np.ones((1, 3)), estimator="unbiased")
    assert fn(np.ones((1, 3))) == 0.0  # biased: fine


def test_signal_metrics_names_the_residual():
    with pytest.raises(ValueError, match="^residual must have at least 2 dimensions"):
        signal_metrics(np.ones((2, 3)), np.ones(3))
    with pytest.raises(TypeError, match="^x "):
        signal_metrics(np.ones((2, 3), dtype=int))
