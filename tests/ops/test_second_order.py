"""Forward mode and second order against closed forms and the exact oracle.

* Closed forms: the two second derivatives that PyTorch 2.13's nested forward
  mode gets wrong (pytorch#196700 for LayerNorm, #196699 for training-mode
  BatchNorm), evaluated three ways -- refnorm's ``<op>_double_backward`` and
  ``<op>_jvp`` through the chain rule, mpmath's numerical differentiation of a
  40-digit evaluation of the definition, and the values the upstream reports
  state -- which must all agree.
* The exact oracle (tests/oracle.py: rational arithmetic, rstd at 256 bits):
  refnorm's float64 ``ty`` and second-order gradients are within a few units
  in the last place of the magnitude of their terms (the same way the
  backward's accuracy is stated, refnorm/ops/_sets.py).
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import refnorm
from tests import oracle as O

# ----------------------------------------------------------------------------- closed forms


def _mp_layer_norm(xs, w, b, eps):
    n = len(xs)
    mu = mpmath.fsum(xs) / n
    var = mpmath.fsum((v - mu) ** 2 for v in xs) / n
    r = 1 / mpmath.sqrt(var + eps)
    return [w[i] * (xs[i] - mu) * r + b[i] for i in range(n)]


def _second_derivative(f, t0):
    with mpmath.workdps(40):
        return float(mpmath.diff(f, mpmath.mpf(t0), 2))


def _chain_rule_second_derivative(spec, kw, dy, x1, x2):
    """f(t) = <dy, y(x(t))>: f'' = <H x', x'> + <dy, J x''>, with H x' the
    double backward's ``x`` for the cotangent ``x'`` of dx and J x'' the JVP."""
    h = spec.double_backward({"x": x1}, dy, **kw)["x"]
    _, jx2 = spec.jvp({"x": x2}, **kw)
    return float(np.sum(h * x1) + np.sum(dy * jx2))


def test_layer_norm_second_derivative_pytorch_196700():
    """f(t) = sum(layer_norm([[t, 0]], (2,), weight [1, 2], bias 0, eps 0.25)),
    f''(0.7): PyTorch 2.13's forward-over-forward gives about -0.3849."""
    t0, w, b, eps = 0.7, [1.0, 2.0], [0.0, 0.0], 0.25
    exact = _second_derivative(lambda t: mpmath.fsum(_mp_layer_norm([t, mpmath.mpf(0)], w, b, eps)), t0)
    # closed form: f(t) = -t / sqrt(t^2 + 1), f''(t) = 3 t / (t^2 + 1)^(5/2)
    assert exact == pytest.approx(3 * t0 / (t0 ** 2 + 1) ** 2.5, rel=1e-15, abs=0)
    assert exact == pytest.approx(0.7749142079590942, rel=2e-16, abs=0)  # the value the upstream report states
    kw = dict(x=np.array([[t0, 0.0]]), normalized_shape=(2,), weight=np.array(w), bias=np.array(b), eps=eps)
    got = _chain_rule_second_derivative(refnorm.registry()["layer_norm"], kw, np.ones((1, 2)), np.array([[1.0, 0.0]]),
                                        np.zeros((1, 2)))
    assert got == pytest.approx(exact, rel=4e-16, abs=0)
    assert abs(got - (-0.3849)) > 1.0  # far from what nested forward mode returns


def _bn_196699_x(t):
    return [(i + 1) * t + (i % 3 - 1) * t * t + i for i in range(8)]


def test_batch_norm_second_derivative_pytorch_196699():
    """x_i = (i+1) t + (i%3 - 1) t^2 + i (i = 0..7) shaped (2, 2, 2), training
    BatchNorm, eps 0.25, weight [1.5, -0.5], bias [0.25, 1], f = sum y * (1..8),
    f''(-6)."""
    t0, eps, w, b = -6.0, 0.25, [1.5, -0.5], [0.25, 1.0]
    coef = np.arange(1.0, 9.0)

    def f(t):
        xs = _bn_196699_x(t)
        arr = [[xs[0:2], xs[2:4]], [xs[4:6], xs[6:8]]]  # (N, C, L) = (2, 2, 2)
        total = mpmath.mpf(0)
        for c in range(2):
            vals = [arr[n][c][s] for n in range(2) for s in range(2)]
            ys = _mp_layer_norm(vals, [w[c]] * 4, [b[c]] * 4, eps)
            for k, (n, s) in enumerate([(n, s) for n in range(2) for s in range(2)]):
                total += ys[k] * coef[n * 4 + c * 2 + s]
        return total

    exact = _second_derivative(f, t0)
    assert exact == pytest.approx(-0.20703015646993195, rel=2e-15, abs=0)  # the upstream report's value
    i = np.arange(8.0)
    x = np.array(_bn_196699_x(t0)).reshape(2, 2, 2)
    x1 = ((i + 1) + 2 * (i % 3 - 1) * t0).reshape(2, 2, 2)
    x2 = (2 * (i % 3 - 1)).reshape(2, 2, 2)
    kw = dict(x=x, running_mean=None, running_var=None, weight=np.array(w), bias=np.array(b), training=True,
              momentum=0.1, eps=eps)
    got = _chain_rule_second_derivative(refnorm.registry()["batch_norm"], kw, coef.reshape(2, 2, 2), x1, x2)
    assert got == pytest.approx(exact, rel=1e-13, abs=0)


def test_double_backward_without_weight_but_with_bias():
    """weight=None, bias given (the call PyTorch's double backward crashes on):
    the bias gets zeros, dy and x the unscaled second-order terms, equal to
    the ones with weight = ones."""
    rng = np.random.default_rng(5)
    x, dy, a = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    bias = rng.normal(size=4)
    for name, kw in (("batch_norm", dict(running_mean=None, running_var=None, training=True)),
                     ("instance_norm", {}), ("group_norm", dict(num_groups=2))):
        fn = getattr(refnorm, f"{name}_double_backward")
        got = fn({"x": a, "bias": rng.normal(size=4)}, dy, x, **kw, weight=None, bias=bias)
        ones = fn({"x": a}, dy, x, **kw, weight=np.ones(4), bias=bias)
        assert sorted(got) == ["bias", "dy", "x"]
        assert np.array_equal(got["bias"], np.zeros(4))
        np.testing.assert_allclose(got["x"], ones["x"], rtol=0, atol=1e-14 * np.abs(ones["x"]).max())
        # the bias cotangent reaches dy only: d2dy gains it per channel
        np.testing.assert_allclose(got["dy"] - ones["dy"],
                                   np.broadcast_to((got["dy"] - ones["dy"])[:1, :, :1], x.shape), atol=1e-14)


def test_single_element_sets():
    """LayerNorm over one element: y = bias, so every derivative but the bias's is 0."""
    x, w, b = np.array([[3.0], [-2.0]]), np.array([1.5]), np.array([0.25])
    t = {"x": np.array([[0.5], [2.0]]), "weight": np.array([-1.0]), "bias": np.array([0.75])}
    y, ty = refnorm.layer_norm_jvp(t, x, 1, w, b)
    assert np.array_equal(ty, np.full((2, 1), 0.75))
    d = refnorm.layer_norm_double_backward({"x": np.array([[1.0], [-1.0]]), "weight": np.array([2.0])},
                                           np.array([[0.3], [0.7]]), x, 1, w, b)
    assert all(np.array_equal(v, np.zeros_like(v)) for v in d.values())


def test_inputs_are_not_modified_and_results_are_new_arrays():
    rng = np.random.default_rng(6)
    x, w, b, dy = rng.normal(size=(4, 6)), rng.normal(size=6), rng.normal(size=6), rng.normal(size=(4, 6))
    t = {"x": rng.normal(size=(4, 6)), "weight": rng.normal(size=6)}
    frozen = [a.copy() for a in (x, w, b, dy, t["x"], t["weight"])]
    refnorm.layer_norm_jvp(t, x, 6, w, b)
    out = refnorm.layer_norm_double_backward(t, dy, x, 6, w, b)
    for a, f in zip((x, w, b, dy, t["x"], t["weight"]), frozen):
        assert np.array_equal(a, f)
    assert not any(np.shares_memory(v, a) for v in out.values() for a in (x, w, b, dy))


# ----------------------------------------------------------------------------- the exact oracle

#: measured worst errors are <= 1.5 ulp of the terms' magnitude (ty 1.41 for eval
#: BatchNorm); each formula rounds at most ~8 times after its compensated
#: reductions, each rounding at most 1/2 ulp of a term, so 8 ulp bounds them all
BOUND_ULPS = 8


def _oracle_cases():
    rng = np.random.default_rng(17)
    ln = dict(x=-2.3 + 0.5 * rng.standard_normal((3, 9)), normalized_shape=9, weight=1 + 0.5 * rng.standard_normal(9),
              bias=0.3 * rng.standard_normal(9), eps=1e-5)
    bn = dict(x=4.0 + 0.1 * rng.standard_normal((4, 3, 5)), running_mean=rng.normal(size=3),
              running_var=0.5 + rng.random(3), weight=1 + 0.5 * rng.standard_normal(3), bias=rng.normal(size=3),
              momentum=0.1, eps=1e-3)
    rms = dict(x=rng.standard_normal((2, 11)), normalized_shape=11, weight=rng.normal(size=11), eps=1e-6)
    return [("layer_norm", ln), ("batch_norm", {**bn, "training": True}), ("batch_norm", {**bn, "training": False}),
            ("rms_norm", rms)]


@pytest.mark.parametrize("op,kw", _oracle_cases(), ids=["ln", "bn-train", "bn-eval", "rms"])
def test_against_the_exact_oracle(op, kw):
    spec = refnorm.registry()[op]
    rng = np.random.default_rng(3)
    dirs = {a: rng.standard_normal(np.shape(kw[a])) for a in spec.differentiable if kw.get(a) is not None}
    dy = rng.standard_normal(np.shape(kw["x"]))
    ex = getattr(O, f"{op}_jvp")(dirs, **kw)
    _, ty = spec.jvp(dirs, **kw)
    worst = {"ty": float(np.max(O.ulps(ty, ex["t"], ex["mag"])))}
    ex2 = getattr(O, f"{op}_double_backward")(dirs, dy, **kw)
    got2 = spec.double_backward(dirs, dy, **kw)
    for k in ("dy", "x", "weight"):
        worst["d2" + k] = float(np.max(O.ulps(got2[k], ex2[k], ex2["mag"][k])))
    assert max(worst.values()) <= BOUND_ULPS, f"{op}: worst ulps of the terms' magnitude {worst}"
