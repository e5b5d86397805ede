"""Nonlinearity gains for Scaled Weight Standardization / NF-Nets.

A gain ``gamma`` makes ``gamma * phi(z)`` have unit variance when ``z ~ N(0, 1)``:

.. math:: \\gamma_\\phi = \\mathrm{Var}_{z\\sim N(0,1)}[\\phi(z)]^{-1/2}

Two sources (docs/ops/weight_standardization.md#ws-gains):

* ``source="deepmind"`` (default): the constants of DeepMind's
  ``nfnets/base.py`` (``nonlinearities``), copied verbatim into timm's
  ``_nonlin_gamma``.  They are external constants and are reproduced as
  printed; they lie 0.03-0.09 % above the analytic values (consistent with a
  Monte-Carlo estimate).
* ``source="analytic"``: ``Var[phi(z)]^(-1/2)`` computed here in float64 by
  composite Gauss-Legendre quadrature of the Gaussian integrals
  ``E[phi(z)] = int phi(z) pdf(z) dz`` and ``E[(phi(z) - E phi)^2]`` (two passes,
  no cancellation) on ``[-38, 38]`` split into unit panels whose end points
  include every kink of the supported functions (0 and 6), 40 nodes a panel.
  On each panel the integrand is analytic, so the rule converges to machine
  precision; the tail beyond 38 is below ``exp(-722)``.  The Legendre nodes
  are computed by Newton's method on the three-term recurrence (no scipy).

Conventions of the analytic functions (as the JAX functions DeepMind used):
``leaky_relu`` negative slope 0.01; ``elu``/``celu`` alpha 1; ``selu`` with
the Klambauer et al. constants; ``gelu`` is the exact (erf) GELU (the
analytic value docs/ops/weight_standardization.md#ws-gains compares with
DeepMind's ``gelu`` constant); ``gelu_tanh`` the tanh approximation (``jax.nn.gelu``'s
default); ``glu`` is ``a * sigmoid(b)`` with ``a, b`` independent N(0, 1)
halves, so ``Var = E[sigmoid(b)^2]``.  ``log_softmax`` has no analytic gain
(it depends on the length of the softmax axis): asking for it is an error.
"""

from __future__ import annotations

import functools
import math
from types import MappingProxyType

import numpy as np

#: DeepMind ``nfnets/base.py`` constants, verbatim (docs/ops/weight_standardization.md#ws-gains).
DEEPMIND_GAINS = MappingProxyType({
    "identity": 1.0,
    "celu": 1.270926833152771,
    "elu": 1.2716004848480225,
    "gelu": 1.7015043497085571,
    "glu": 1.8484294414520264,
    "leaky_relu": 1.70590341091156,
    "log_sigmoid": 1.9193484783172607,
    "log_softmax": 1.0002083778381348,
    "relu": 1.7139588594436646,
    "relu6": 1.7131484746932983,
    "selu": 1.0008515119552612,
    "sigmoid": 4.803835391998291,
    "silu": 1.7881293296813965,
    "soft_sign": 2.338853120803833,
    "softplus": 1.9203323125839233,
    "tanh": 1.5939117670059204,
})

_ALIASES = {"swish": "silu"}

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _sigmoid(z):
    e = np.exp(-np.abs(z))  # stable for both signs
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(z):
    return np.logaddexp(0.0, z)


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


_erf = np.frompyfunc(math.erf, 1, 1)

#: The elementwise functions of the analytic table (float64 NumPy).
ANALYTIC_FUNCTIONS = MappingProxyType({
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "relu6": lambda z: np.minimum(np.maximum(z, 0.0), 6.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "elu": _elu,
    "celu": _elu,  # alpha = 1: celu == elu
    "selu": lambda z: _SELU_SCALE * _elu(z, _SELU_ALPHA),
    "silu": lambda z: z * _sigmoid(z),
    "gelu": lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)).astype(np.float64)),
    "gelu_tanh": lambda z: 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3))),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "log_sigmoid": lambda z: -_softplus(-z),
    "soft_sign": lambda z: z / (1.0 + np.abs(z)),
    "glu": _sigmoid,  # Var[a * sigmoid(b)] = E[a^2] E[sigmoid(b)^2] - 0 = E[sigmoid(b)^2]: see _variance
})

_KINKS = (0.0, 6.0)  # every non-smooth point of the functions above
_HALF_WIDTH = 38.0  # pdf(38) ~ 1e-314: the tail is below float64's range
_NODES = 40


@functools.lru_cache(maxsize=None)
def _gauss_legendre(n: int):
    """Nodes and weights of the n-point Gauss-Legendre rule on [-1, 1]
    (Newton's method on P_n from the recurrence; converged to ~1 ulp)."""
    i = np.arange(1, n + 1)
    x = np.cos(np.pi * (i - 0.25) / (n + 0.5))
    for _ in range(100):
        p0, p1 = np.ones_like(x), x.copy()
        for k in range(2, n + 1):  # (k) P_k = ((2k-1) x P_{k-1} - (k-1) P_{k-2}) / k
            p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
        dp = n * (x * p1 - p0) / (x * x - 1.0)  # P_n'
        dx = p1 / dp
        x = x - dx
        if np.max(np.abs(dx)) < 1e-16:
            break
    p0, p1 = np.ones_like(x), x.copy()
    for k in range(2, n + 1):
        p0, p1 = p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k
    dp = n * (x * p1 - p0) / (x * x - 1.0)
    w = 2.0 / ((1.0 - x * x) * dp * dp)
    return x, w


@functools.lru_cache(maxsize=None)
def _gaussian_rule():
    """Nodes z and weights w with sum w f(z) ~= E_{z~N(0,1)} f(z) for f
    analytic between the panel ends (integer points, which include the kinks)."""
    ends = np.union1d(np.arange(-_HALF_WIDTH, _HALF_WIDTH + 1.0), _KINKS)
    t, tw = _gauss_legendre(_NODES)
    a, b = ends[:-1, None], ends[1:, None]
    z = 0.5 * (b - a) * t + 0.5 * (a + b)  # (P, n) mapped nodes
    w = 0.5 * (b - a) * tw * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return z.reshape(-1), w.reshape(-1)


def _variance(name: str) -> float:
    z, w = _gaussian_rule()
    phi = ANALYTIC_FUNCTIONS[name](z)
    if name == "glu":  # a * sigmoid(b), a and b independent N(0, 1): Var = E[sigmoid^2]
        return float(math.fsum(w * phi * phi))
    mean = math.fsum(w * phi)  # pass 1: E[phi]
    dev = phi - mean
    return float(math.fsum(w * dev * dev))  # pass 2: E[(phi - E phi)^2]


def analytic_gain(name: str) -> float:
    """``Var_{z~N(0,1)}[phi(z)]^(-1/2)`` by quadrature (see the module docstring);
    ``nonlinearity_gain(name, source="analytic")``, with the same argument checks."""
    return nonlinearity_gain(name, source="analytic")


def nonlinearity_gain(name, source="deepmind"):
    """The gain ``gamma`` of the nonlinearity ``name`` (``"swish"`` = ``"silu"``).

    ``source="deepmind"``: DeepMind's published constant (:data:`DEEPMIND_GAINS`).
    ``source="analytic"``: ``Var_{z~N(0,1)}[phi(z)]^(-1/2)`` computed by
    quadrature in float64 (:data:`ANALYTIC_FUNCTIONS`, plus ``gelu_tanh``).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__} {source!r}")
    key = _ALIASES.get(name, name)
    if source == "deepmind":
        if key not in DEEPMIND_GAINS:
            raise ValueError(f"name must be one of {sorted(set(DEEPMIND_GAINS) | set(_ALIASES))} for "
                             f"source='deepmind', got {name!r}")
        return DEEPMIND_GAINS[key]
    if source == "analytic":
        if key == "log_softmax":
            raise ValueError("name 'log_softmax' has no analytic gain: its variance depends on the length of "
                             "the softmax axis (use source='deepmind')")
        if key not in ANALYTIC_FUNCTIONS:
            raise ValueError(f"name must be one of {sorted(set(ANALYTIC_FUNCTIONS) | set(_ALIASES))} for "
                             f"source='analytic', got {name!r}")
        return 1.0 / math.sqrt(_variance(key))
    raise ValueError(f"source must be 'deepmind' or 'analytic', got {source!r}")


__all__ = ["ANALYTIC_FUNCTIONS", "DEEPMIND_GAINS", "analytic_gain", "nonlinearity_gain"]
