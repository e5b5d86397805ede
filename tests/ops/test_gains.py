"""Nonlinearity gains: DeepMind constants verbatim, analytic gains by quadrature
against the analytic values of the gain table (docs/ops/weight_standardization.md#ws-gains),
closed forms and mpmath quadrature."""

from __future__ import annotations

import math

import pytest

from refnorm.ops.gains import ANALYTIC_FUNCTIONS, DEEPMIND_GAINS, analytic_gain, nonlinearity_gain

mpmath = pytest.importorskip("mpmath")

# Tolerances (local: quadrature is not in tests/_tolerances.py's kernel/backward table).
QUAD_VS_MPMATH = 4e-15  # both float64-accurate: a few u of the gain after 1/sqrt
SPEC_PRINTED = 6e-11  # the table has 10 decimals: half a unit of the last digit

# the gain table (docs/ops/weight_standardization.md#ws-gains): name -> (DeepMind constant,
# analytic Var^(-1/2), rel. diff)
SPEC_TABLE = {
    "relu": (1.7139588594436646, 1.7128585504, 6.4e-4),
    "silu": (1.7881293296813965, 1.7871872221, 5.3e-4),
    "gelu": (1.7015043497085571, 1.7009262434, 3.4e-4),
    "tanh": (1.5939117670059204, 1.5925374197, 8.6e-4),
    "sigmoid": (4.803835391998291, 4.8013133720, 5.3e-4),
    "elu": (1.2716004848480225, 1.2708434179, 6.0e-4),
}
SPEC_OTHER = {"identity": 1.0, "celu": 1.270926833152771, "glu": 1.8484294414520264,
              "leaky_relu": 1.70590341091156, "log_sigmoid": 1.9193484783172607,
              "log_softmax": 1.0002083778381348, "relu6": 1.7131484746932983, "selu": 1.0008515119552612,
              "soft_sign": 2.338853120803833, "softplus": 1.9203323125839233}


def test_deepmind_constants_verbatim():
    expect = {**{k: v[0] for k, v in SPEC_TABLE.items()}, **SPEC_OTHER}
    assert dict(DEEPMIND_GAINS) == expect
    for k, v in expect.items():
        assert nonlinearity_gain(k) == v
    assert nonlinearity_gain("swish") == nonlinearity_gain("silu") == 1.7881293296813965


@pytest.mark.parametrize("name", list(SPEC_TABLE))
def test_analytic_matches_spec_column(name):
    dm, an, rel = SPEC_TABLE[name]
    got = nonlinearity_gain(name, source="analytic")
    assert abs(got - an) <= SPEC_PRINTED, (name, got, an)
    assert abs((dm - got) / got - rel) <= 0.051e-4, (name, (dm - got) / got, rel)  # 2 digits in the table


def test_closed_forms():
    assert math.isclose(nonlinearity_gain("relu", "analytic"), math.sqrt(2.0 / (1.0 - 1.0 / math.pi)),
                        rel_tol=4 * 2.0 ** -53)
    assert math.isclose(nonlinearity_gain("identity", "analytic"), 1.0, rel_tol=4 * 2.0 ** -53)
    # leaky relu, slope a: E = (1-a)/sqrt(2 pi), E[phi^2] = (1+a^2)/2
    a = 0.01
    var = (1 + a * a) / 2 - (1 - a) ** 2 / (2 * math.pi)
    assert math.isclose(nonlinearity_gain("leaky_relu", "analytic"), var ** -0.5, rel_tol=4 * 2.0 ** -53)
    assert nonlinearity_gain("celu", "analytic") == nonlinearity_gain("elu", "analytic")  # alpha = 1


def _mp_functions():
    mp = mpmath
    sig = lambda z: 1 / (1 + mp.exp(-z))  # noqa: E731
    elu = lambda z, al=1: z if z > 0 else al * mp.expm1(z)  # noqa: E731
    selu_a = mp.mpf("1.6732632423543772848170429916717")
    selu_s = mp.mpf("1.0507009873554804934193349852946")
    return {
        "identity": lambda z: z, "relu": lambda z: max(z, 0), "relu6": lambda z: min(max(z, 0), 6),
        "leaky_relu": lambda z: z if z >= 0 else z / 100, "elu": elu, "celu": elu,
        "selu": lambda z: selu_s * elu(z, selu_a), "silu": lambda z: z * sig(z),
        "gelu": lambda z: z * (1 + mp.erf(z / mp.sqrt(2))) / 2,
        "gelu_tanh": lambda z: z * (1 + mp.tanh(mp.sqrt(2 / mp.pi) * (z + mp.mpf("0.044715") * z ** 3))) / 2,
        "tanh": mp.tanh, "sigmoid": sig, "softplus": lambda z: mp.log1p(mp.exp(z)),
        "log_sigmoid": lambda z: -mp.log1p(mp.exp(-z)), "soft_sign": lambda z: z / (1 + abs(z)), "glu": sig,
    }


@pytest.mark.parametrize("name", sorted(ANALYTIC_FUNCTIONS))
def test_analytic_vs_mpmath(name):
    mp = mpmath
    f = _mp_functions()[name]
    with mp.workdps(30):
        pdf = lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
        pts = [-mp.inf, -10, 0, 6, 10, mp.inf]
        m1 = mp.quad(lambda z: f(z) * pdf(z), pts)
        m2 = mp.quad(lambda z: f(z) ** 2 * pdf(z), pts)
        var = m2 if name == "glu" else m2 - m1 * m1
        want = float(1 / mp.sqrt(var))
    got = nonlinearity_gain(name, "analytic")
    assert abs(got - want) <= QUAD_VS_MPMATH * want, (name, got, want, (got - want) / want)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: nonlinearity_gain("mish"), ValueError, "name must be one of"),
    (lambda: nonlinearity_gain("mish", "analytic"), ValueError, "name must be one of"),
    (lambda: nonlinearity_gain("log_softmax", "analytic"), ValueError, "no analytic gain"),
    (lambda: nonlinearity_gain("relu", "timm"), ValueError, "source must be 'deepmind' or 'analytic'"),
    (lambda: nonlinearity_gain(1), TypeError, "name must be a str"),
    (lambda: nonlinearity_gain("relu", None), TypeError, "source must be a str"),
    (lambda: analytic_gain("rellu"), ValueError, "name must be one of"),
    (lambda: analytic_gain("log_softmax"), ValueError, "no analytic gain"),
    (lambda: analytic_gain(None), TypeError, "name must be a str"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
