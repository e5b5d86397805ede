"""Diagnostics of the seed papers: signal-propagation metrics and the power decomposition.

NumPy, float64 (inputs of dtype float16, bfloat16, float32 or float64 are
upcast exactly), no input is modified.  Layout: ``(N, C, *spatial)`` (NCHW),
batch axis 0, channel axis 1 by default (``channel_axis`` selects another one,
e.g. ``-1`` for NHWC; it may not be the batch axis 0).  Every other axis is a
*position* axis; with no position axis (``(N, C)``) each instance has one
position.  Below ``x[n, c, p]`` denotes the input viewed as ``(N, C, S)``,
``S = prod(spatial)``, and ``M = N * S``.

Signal-propagation metrics (docs/papers.md#papers-signal-metrics; DeepMind ``nfnets/base.py``
``signal_metrics``, "Characterizing signal propagation to close the
performance gap in unnormalized ResNets", Brock, De, Smith, ICLR 2021):
per-channel statistics over the batch and spatial positions, averaged over
channels::

    m_c               = (1/M) sum_{n,p} x[n,c,p]                        # channel mean
    avg_sq_mean(x)    = (1/C) sum_c m_c^2                               # average channel squared mean
    avg_var(x)        = (1/C) sum_c (1/(M - d)) sum_{n,p} (x[n,c,p] - m_c)^2   # average channel variance
    res_avg_var(f)    = avg_var(f)                                      # f = residual-branch output

``d = 0`` (biased, the DeepMind default, ``jnp.var``) or ``d = 1``
(``estimator="unbiased"``, ``torch.var``'s default used by the ICLR 2022 blog
post).  ``res_avg_var`` is measured on the output of the residual branch
``f_i`` *before* any skip gain, stochastic depth or ``alpha`` scaling.

Power decomposition of pre-activations (docs/papers.md#papers-power-decomposition;
"Proxy-Normalizing Activations to Match Batch Normalization while Removing Batch Dependence",
Labatie et al., NeurIPS 2021; *paper-inspired*: the definitions below are
derived from the paper's abstract and figure captions, not checked against its
text).  For pre-activations ``y[n, c, p]`` (instance ``n``, channel ``c``,
position ``p``), all estimators biased::

    mu_c(n)     = (1/S) sum_p y[n,c,p]                    # instance mean
    s2_c(n)     = (1/S) sum_p (y[n,c,p] - mu_c(n))^2      # instance variance, s_c(n) = sqrt(s2_c(n))
    mu_c        = (1/N) sum_n mu_c(n)                     # channel (dataset) mean

    P(y)                  = (1/C) sum_c (1/M) sum_{n,p} y[n,c,p]^2        # total power
    channel_mean_power    = (1/C) sum_c mu_c^2
    instance_mean_var     = (1/C) sum_c (1/N) sum_n (mu_c(n) - mu_c)^2    # Var_n mu_c(n)
    instance_var_mean     = (1/C) sum_c (1/N) sum_n s2_c(n)               # E_n s2_c(n)
    instance_std_var      = (1/C) sum_c Var_n s_c(n)                      # spread of instance stds

with the exact identity (law of total variance, twice; equal sizes S)::

    P(y) = channel_mean_power + instance_mean_var + instance_var_mean

which holds in floating point to rounding (each term is computed two-pass).
Failure modes: (i) LayerNorm's *channel-wise collapse*,
``channel_mean_power / P(y) -> 1`` with depth (each channel nearly constant);
(ii) InstanceNorm's *lack of variability of instance statistics*: IN forces
``mu_c(n) = 0`` and ``s_c(n) ~ 1`` for every ``n``, so ``instance_mean_var``
and ``instance_std_var`` vanish.  ``instance_std_var <= instance_var_mean``
always (``Var s <= E s^2``), so ``instance_std_var / instance_var_mean`` is a
relative spread in ``[0, 1]``.

NaN or infinite inputs propagate to the results.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from . import _validate as V

_ESTIMATORS = ("biased", "unbiased")


# --- argument checks ----------------------------------------------------------

def _as_ncs(name: str, value, channel_axis) -> np.ndarray:
    """``value`` as a float64 ``(N, C, S)`` view (batch axis 0, channel axis moved to 1)."""
    arr = V.as_float_array(name, value)  # TypeError naming the argument for non-float input
    if arr.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (N, C, *spatial), got shape {tuple(arr.shape)}")
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be an int, got {type(channel_axis).__name__} {channel_axis!r}")
    ax = int(channel_axis)
    if not -arr.ndim <= ax < arr.ndim:
        raise ValueError(f"channel_axis must be in [-{arr.ndim}, {arr.ndim}) for {name} of shape "
                         f"{tuple(arr.shape)}, got {ax}")
    ax %= arr.ndim
    if ax == 0:
        raise ValueError(f"channel_axis must not be the batch axis 0 of {name}, got {channel_axis}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty (every axis of size >= 1), got shape {tuple(arr.shape)}")
    x = np.moveaxis(V.to_f64(arr), ax, 1)
    return x.reshape(x.shape[0], x.shape[1], -1)


def _check_estimator(estimator) -> int:
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, 'biased' or 'unbiased', got {type(estimator).__name__} "
                        f"{estimator!r}")
    if estimator not in _ESTIMATORS:
        raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")
    return 0 if estimator == "biased" else 1


def _check_per_channel(per_channel) -> bool:
    return V.check_bool("per_channel", per_channel)


def _reduce(v: np.ndarray, per_channel: bool):
    """The channel average as a Python float, or the ``(C,)`` array itself."""
    return v if per_channel else float(np.mean(v))


def _channel_variance(name, x3, d) -> np.ndarray:
    """Per-channel variance over (N, S), two-pass, divisor ``M - d``: shape ``(C,)``."""
    M = x3.shape[0] * x3.shape[2]
    if M - d <= 0:
        raise ValueError(f"estimator 'unbiased' needs at least 2 values per channel (N * prod(spatial) >= 2), "
                         f"got {name} with {M}")
    m = x3.mean(axis=(0, 2), keepdims=True)
    dev = x3 - m
    return np.sum(dev * dev, axis=(0, 2)) / (M - d)


# --- signal-propagation metrics (NF-nets) -------------------------------------

def avg_channel_squared_mean(x, *, channel_axis=1, per_channel=False):
    """Average channel squared mean (DeepMind ``avg_sq_mean``; module docstring).

    .. math:: \\frac{1}{C}\\sum_c \\Big(\\frac{1}{N S}\\sum_{n,p} x_{n,c,p}\\Big)^2

    Parameters
    ----------
    x : array of shape ``(N, C, *spatial)``, real floating dtype
        Activations (e.g. a residual stream ``h_i`` after block ``i``).
    channel_axis : int, default 1
        The channel axis (not 0, the batch axis); every other axis is a position axis.
    per_channel : bool, default False
        Return the ``(C,)`` array of squared channel means instead of its average.

    Returns
    -------
    float, or float64 array of shape ``(C,)`` when ``per_channel``.
    """
    per_channel = _check_per_channel(per_channel)
    x3 = _as_ncs("x", x, channel_axis)
    m = x3.mean(axis=(0, 2))
    return _reduce(m * m, per_channel)


def avg_channel_variance(x, *, estimator="biased", channel_axis=1, per_channel=False):
    """Average channel variance (DeepMind ``avg_var``; module docstring).

    .. math:: \\frac{1}{C}\\sum_c \\frac{1}{N S - d}\\sum_{n,p} (x_{n,c,p} - m_c)^2,
              \\quad m_c = \\frac{1}{N S}\\sum_{n,p} x_{n,c,p}

    Parameters
    ----------
    x : array of shape ``(N, C, *spatial)``, real floating dtype
    estimator : ``"biased"`` (default, ``d = 0``, DeepMind) or ``"unbiased"`` (``d = 1``)
    channel_axis : int, default 1
    per_channel : bool, default False
        Return the ``(C,)`` array of channel variances instead of its average.

    Returns
    -------
    float, or float64 array of shape ``(C,)`` when ``per_channel``.
    """
    d = _check_estimator(estimator)
    per_channel = _check_per_channel(per_channel)
    x3 = _as_ncs("x", x, channel_axis)
    return _reduce(_channel_variance("x", x3, d), per_channel)


def residual_variance(residual, *, estimator="biased", channel_axis=1, per_channel=False):
    """Residual-branch average channel variance (DeepMind ``res_avg_var``; module docstring).

    The average channel variance (:func:`avg_channel_variance`) of the output
    ``f_i(.)`` of a residual branch, *before* the skip gain, stochastic depth
    and ``alpha`` scaling: in ``h_{i+1} = h_i + alpha * f_i(h_i / beta_i)``
    pass ``f_i(h_i / beta_i)``.

    Parameters
    ----------
    residual : array of shape ``(N, C, *spatial)``, real floating dtype
    estimator : ``"biased"`` (default) or ``"unbiased"``
    channel_axis : int, default 1
    per_channel : bool, default False

    Returns
    -------
    float, or float64 array of shape ``(C,)`` when ``per_channel``.
    """
    d = _check_estimator(estimator)
    per_channel = _check_per_channel(per_channel)
    x3 = _as_ncs("residual", residual, channel_axis)
    return _reduce(_channel_variance("residual", x3, d), per_channel)


def signal_metrics(x, residual=None, *, estimator="biased", channel_axis=1):
    """The three signal-propagation-plot metrics at one depth, as DeepMind's ``signal_metrics``.

    Parameters
    ----------
    x : array of shape ``(N, C, *spatial)``
        The activations after a block (the residual stream).
    residual : array of shape ``(N, C', *spatial')`` or None
        The output of that block's residual branch (before skip gain / alpha).
    estimator : ``"biased"`` (default) or ``"unbiased"``, for both variances
    channel_axis : int, default 1 (for both arrays)

    Returns
    -------
    dict with float values ``"avg_sq_mean"``, ``"avg_var"`` and, when
    ``residual`` is given, ``"res_avg_var"``.
    """
    out = {"avg_sq_mean": avg_channel_squared_mean(x, channel_axis=channel_axis),
           "avg_var": avg_channel_variance(x, estimator=estimator, channel_axis=channel_axis)}
    if residual is not None:
        out["res_avg_var"] = residual_variance(residual, estimator=estimator, channel_axis=channel_axis)
    return out


# --- power decomposition (Proxy Normalization) -------------------------------

def _ratio(a, b):
    if np.ndim(a) == 0:
        return float(a) / float(b) if b != 0 else math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b != 0, np.asarray(a) / np.where(b != 0, b, 1.0), np.nan)


class PowerDecomposition(NamedTuple):
    """The power decomposition of pre-activations (module docstring).

    ``power == channel_mean_power + instance_mean_var + instance_var_mean`` up
    to rounding.  Each field is a float (channel average) or, with
    ``per_channel=True``, a float64 array of shape ``(C,)``.
    """

    #: ``P(y) = E_{n,p,c} y^2``, the total power.
    power: float | np.ndarray
    #: ``E_c mu_c^2``: the power of the channel means (channel-wise constant part).
    channel_mean_power: float | np.ndarray
    #: ``E_c Var_n mu_c(n)``: variance of the instance means.
    instance_mean_var: float | np.ndarray
    #: ``E_c E_n s2_c(n)``: mean of the instance variances.
    instance_var_mean: float | np.ndarray
    #: ``E_c Var_n s_c(n)``: spread of the instance standard deviations (not a term of the sum).
    instance_std_var: float | np.ndarray

    @property
    def collapse(self):
        """``channel_mean_power / power``, the channel-wise collapse fraction in ``[0, 1]`` (NaN if power is 0)."""
        return _ratio(self.channel_mean_power, self.power)

    @property
    def relative_std_spread(self):
        """``instance_std_var / instance_var_mean`` in ``[0, 1]`` (NaN if every instance is constant)."""
        return _ratio(self.instance_std_var, self.instance_var_mean)

    def fractions(self) -> dict:
        """The three terms of the sum divided by ``power``: ``{"channel_mean", "instance_mean", "instance_var"}``."""
        return {"channel_mean": self.collapse,
                "instance_mean": _ratio(self.instance_mean_var, self.power),
                "instance_var": _ratio(self.instance_var_mean, self.power)}


def power_decomposition(y, *, channel_axis=1, per_channel=False) -> PowerDecomposition:
    """Power decomposition of pre-activations ``y`` (Proxy Normalization paper; module docstring).

    .. math::

        P(y) = \\mathrm{E}_{n,p,c}[y^2]
             = \\mathrm{E}_c[\\mu_c^2] + \\mathrm{E}_c[\\mathrm{Var}_n \\mu_c(n)]
               + \\mathrm{E}_c[\\mathrm{E}_n \\sigma_c^2(n)]

    with instance statistics over the positions (spatial axes) of each
    ``(n, c)``, dataset statistics over the instances ``n``, all biased; plus
    the spread of the instance standard deviations
    :math:`\\mathrm{E}_c[\\mathrm{Var}_n \\sigma_c(n)]`.

    Parameters
    ----------
    y : array of shape ``(N, C, *spatial)``, real floating dtype
        Pre-activations of a dataset (or a large batch) of ``N`` instances.
        Without spatial axes (``(N, C)``) every instance variance is 0.
    channel_axis : int, default 1
        The channel axis (not 0); every axis other than 0 and it is a position axis.
    per_channel : bool, default False
        Return ``(C,)`` arrays (each channel's terms) instead of channel averages.

    Returns
    -------
    PowerDecomposition
        ``(power, channel_mean_power, instance_mean_var, instance_var_mean,
        instance_std_var)``, with the properties ``collapse`` and
        ``relative_std_spread`` and the method ``fractions()``.
    """
    per_channel = _check_per_channel(per_channel)
    y3 = _as_ncs("y", y, channel_axis)  # (N, C, S)
    mu_n = y3.mean(axis=2)  # (N, C) instance means
    dev = y3 - mu_n[:, :, None]
    s2_n = np.mean(dev * dev, axis=2)  # (N, C) instance variances (two-pass)
    mu = mu_n.mean(axis=0)  # (C,) channel means
    dmu = mu_n - mu
    s_n = np.sqrt(s2_n)
    ds = s_n - s_n.mean(axis=0)
    terms = (np.mean(y3 * y3, axis=(0, 2)),  # power
             mu * mu,  # channel-mean power
             np.mean(dmu * dmu, axis=0),  # Var_n mu_c(n)
             s2_n.mean(axis=0),  # E_n s2_c(n)
             np.mean(ds * ds, axis=0))  # Var_n s_c(n)
    return PowerDecomposition(*(_reduce(t, per_channel) for t in terms))


__all__ = [
    "PowerDecomposition",
    "avg_channel_squared_mean",
    "avg_channel_variance",
    "power_decomposition",
    "residual_variance",
    "signal_metrics",
]
