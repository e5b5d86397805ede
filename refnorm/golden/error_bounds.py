r"""First-order running error bounds: the tolerance model of the seed layers.

The standard normalizers' tolerances (:mod:`refnorm.golden.tolerance`) are
written out by hand from one error analysis shared by all five.  The seed
layers (PN-Act, GN+, weight standardization, BLN) are compositions -- an
activation inside a normalization, two normalizations in a row, an
eps-on-the-std normalization of a weight, a mix of a batch and a feature
normalization -- so their bounds are obtained mechanically by *running error
analysis* (Wilkinson 1965; Higham, *Accuracy and Stability of Numerical
Algorithms*, 2nd ed., section 3.3): the op's formula (the same staged formula
as the refnorm kernel, docs/ops/index.md#seed-layers) is evaluated once in float64 on the stored
inputs, and every intermediate carries, next to its value ``v``, a bound ``e``
of the error of the same quantity computed by a backend whose every operation
rounds with unit roundoff ``u``:

=======================  ==================================================================
operation                error bound of the result (first order)
=======================  ==================================================================
input, exact constant    ``0`` (inputs are stored exactly; 1, 2, K, n are exact)
rounded constant c       ``u |c|`` (eps, the BLN offset: not representable in binary)
``a +- b``               ``e_a + e_b + u |a +- b|``
``a * b``                ``|b| e_a + |a| e_b + u |a b|``
``a / b``                ``(e_a + |a/b| e_b) / |b| + u |a/b|``
``sqrt(a)``              ``min(e_a / (2 sqrt a), sqrt(e_a)) + u sqrt(a)`` (exact at a = 0)
``max(a, c)``            ``max(e_a, e_c)`` (1-Lipschitz)
``|a|``, ``max_i a_i``   ``e_a``, ``max_i e_i`` (exact operations, 1-Lipschitz)
``a^c`` (library pow)    ``|c| a^(c-1) e_a + L u a^c`` (+ ``|c ln a| a^c u`` when the exponent
                         ``c = 1/p`` is itself rounded)
sum of K terms t_i       ``sum e_i + f(K) u sum|t_i|``, ``f(K) = 6 sqrt(K) + 1`` (the
                         probabilistic bound of Higham & Mary used by the standard model)
mean                     the sum, then a division by the exact integer K
saved statistic s        ``+ u_out |s|`` (a backend may round a saved mean/rstd to the
                         case dtype before normalizing with it, as the standard model
                         allows; the variance is taken about the unrounded mean)
=======================  ==================================================================

Elementwise library functions (exp, tanh, erf, erfc, erfinv) are assumed within
``LIB_ULPS = 4`` ulp (the largest maximum error the CUDA math library documents
for these single-precision functions, ``erfcf``; glibc and SLEEF are within
1-2 ulp).  The activations are bounded for every common formulation at once:

* ReLU: exact; ``relu(u)`` is 1-Lipschitz (error ``e_u`` if u can be positive,
  else 0); its derivative may flip between 0 and 1 when ``|u| <= e_u`` (error 1).
* sigmoid: ``(L + 2) u sigma + (L/2 + 1) u`` -- relative for ``1/(1 + exp(-u))``,
  absolute for ``(1 + tanh(u/2))/2`` (refnorm's own form); likewise
  ``Phi(u)`` for ``erfc(-u/sqrt 2)/2`` and ``(1 + erf(u/sqrt 2))/2``.
* SiLU ``u sigma``, SiLU' ``sigma (1 + u (1 - sigma))``, GELU ``u Phi``, GELU'
  ``Phi + u pdf``: propagated ``|phi'| e_u`` (``|phi''| e_u``) plus the
  evaluation errors of sigma/Phi/pdf and the products.
* PN's proxy quantiles ``q_k = sqrt(2) erfinv(p_k)``, ``p_k = 2(k - 1/2)/K - 1``
  as the authors' ``get_rand`` computes them: ``p_k`` within ``3u``, so
  ``e_q = sqrt(pi/2) exp(q^2/2) 3u + (L + 2) u |q|`` (erfinv is ill-conditioned
  near +-1: 64 ulp at the outermost of K = 200 points).

Forward mode and second order (:class:`Dual`, :func:`seed_derivatives`): the
same programs run on dual numbers, a primal Bound and a tangent Bound, the
tangent of every operation being itself a rounded operation of the backend,
bounded with the rules above: ``t(a +- b) = ta +- tb``, ``t(a b) = ta b + a tb``,
``t(a/b) = (ta - (a/b) tb)/b``, ``t(sqrt a) = ta/(2 sqrt a)``, ``t(phi(u)) =
phi'(u) tu`` and ``t(phi'(u)) = phi''(u) tu`` (:func:`activation2`), a saved
statistic's tangent rounded to the case dtype with it.  With the tangents
``t<argument>`` as the direction, the tangent of ``y`` bounds ``ty``; with the
cotangent ``dy`` and the second-order cotangents ``dd<argument>`` as the
direction, the tangent of ``y`` bounds ``d2dy`` and that of the gradient ``d<p>``
bounds ``d2<p>``: for ``S = <dy, y>`` the double backward's result for ``p`` is
the derivative of ``dS/dp`` along the direction (the Hessian of S is symmetric).

A golden tolerance of a seed layer is then ``scale = e(u_acc + 2^-53) +
u_out |expected|`` per element and ``rtol = c = 2`` (the standard model's
safety factor): ``e`` is linear in u, so evaluating it at ``u_acc + 2^-53`` adds
the bound of the backend's evaluation (``u_acc``: 2^-53 for float64, 2^-24 --
float32 accumulation -- otherwise) to that of a plain float64 evaluation, which
bounds refnorm's own error (its kernels are compensated and double-double, more
accurate than plain float64); ``u_out |expected|`` is the final rounding of the
output to the case dtype.  A bound is first order: it is meaningless where an
error is as large as the quantity it perturbs (a division by a std that
rounding can make 0), and the catalogue avoids such data (no constant sets
for GN+ or for WS's eps-on-the-std form, whose std derivative is singular there).

In the chain of :mod:`refnorm.golden` this module comes after the rounding
model (:mod:`refnorm.golden.rounding`, whose ``f(K)`` it uses for sums) and
the catalogue (the layout of a case, for :func:`derivatives`), and before
:mod:`refnorm.golden.tolerance`, which evaluates it for every seed-layer case
and for the forward-mode and second-order outputs of the others.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _libm
from .._registry import get, grad_name, second_cotangent_name, second_grad_name, tangent_name
from ..reference.proxy_norm import proxy_quantiles
from ..reference.weight_standardization import resolve_options
from .catalogue import const_stats, has_running_update, layout, running_factors
from .dtypes import DTYPES
from .rounding import growth

LIB_ULPS = 4.0
_SQRT2PI = math.sqrt(2.0 * math.pi)


class Bound:
    """A float64 value ``v`` and the first-order error bound ``e >= 0`` of the
    same quantity computed with unit roundoff ``u`` (see the module docstring)."""

    __array_priority__ = 1000  # numpy scalars/arrays on the left defer to Bound

    def __init__(self, v, e, u: float):
        self.v = np.asarray(v, dtype=np.float64)
        self.e = np.broadcast_to(np.asarray(e, dtype=np.float64), self.v.shape).copy()
        self.u = u

    # -- construction
    def lift(self, o) -> "Bound":
        return o if isinstance(o, Bound) else Bound(o, 0.0, self.u)

    # -- arithmetic
    def __add__(self, o):
        if isinstance(o, Dual):
            return NotImplemented
        o = self.lift(o)
        v = self.v + o.v
        return Bound(v, self.e + o.e + self.u * np.abs(v), self.u)

    __radd__ = __add__

    def __sub__(self, o):
        if isinstance(o, Dual):
            return NotImplemented
        o = self.lift(o)
        v = self.v - o.v
        return Bound(v, self.e + o.e + self.u * np.abs(v), self.u)

    def __rsub__(self, o):
        return self.lift(o) - self

    def __neg__(self):
        return Bound(-self.v, self.e, self.u)

    def __mul__(self, o):
        if isinstance(o, Dual):
            return NotImplemented
        o = self.lift(o)
        v = self.v * o.v
        return Bound(v, np.abs(o.v) * self.e + np.abs(self.v) * o.e + self.u * np.abs(v), self.u)

    __rmul__ = __mul__

    def __truediv__(self, o):
        if isinstance(o, Dual):
            return NotImplemented
        o = self.lift(o)
        v = self.v / o.v
        return Bound(v, (self.e + np.abs(v) * o.e) / np.abs(o.v) + self.u * np.abs(v), self.u)

    def __rtruediv__(self, o):
        return self.lift(o) / self

    def sqrt(self):
        v = np.sqrt(self.v)
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = np.where(v > 0, self.e / (2.0 * np.where(v > 0, v, 1.0)), np.inf)
        return Bound(v, np.minimum(lin, np.sqrt(self.e)) + self.u * v, self.u)

    def abs(self):
        return Bound(np.abs(self.v), self.e, self.u)

    def pow(self, c: float, c_rounded: bool = False):
        """``a^c`` by a library pow within ``LIB_ULPS`` ulp (``a >= 0``); ``c_rounded``:
        the exponent (``1/p``) is itself rounded to the working precision."""
        v = _libm.pow(self.v, c)
        with np.errstate(divide="ignore", invalid="ignore"):
            prop = np.where(self.e > 0, abs(c) * _libm.pow(self.v, c - 1.0) * self.e, 0.0)
            e = prop + LIB_ULPS * self.u * np.abs(v)
            if c_rounded:
                lg = np.where(self.v > 0, np.abs(c * _libm.log(np.where(self.v > 0, self.v, 1.0))), 0.0)
                e = e + lg * np.abs(v) * self.u
        return Bound(v, e, self.u)

    def amax(self, axis, keepdims=False):
        return Bound(self.v.max(axis=axis, keepdims=keepdims), self.e.max(axis=axis, keepdims=keepdims), self.u)

    def maximum(self, o):
        if isinstance(o, Dual):
            return o.lift(self).maximum(o)
        o = self.lift(o)
        return Bound(np.maximum(self.v, o.v), np.maximum(self.e, o.e), self.u)

    # -- reductions
    def sum(self, axis, keepdims=False):
        axis = axis if isinstance(axis, tuple) else (axis,)
        K = math.prod(self.v.shape[a] for a in axis)
        v = self.v.sum(axis=axis, keepdims=keepdims)
        e = (self.e.sum(axis=axis, keepdims=keepdims)
             + growth(K) * self.u * np.abs(self.v).sum(axis=axis, keepdims=keepdims))
        return Bound(v, e, self.u)

    def mean(self, axis, keepdims=False):
        axis = axis if isinstance(axis, tuple) else (axis,)
        K = math.prod(self.v.shape[a] for a in axis)
        return self.sum(axis, keepdims) / float(K)

    # -- shape
    def reshape(self, *shape):
        return Bound(self.v.reshape(*shape), self.e.reshape(*shape), self.u)

    def __getitem__(self, idx):
        return Bound(self.v[idx], self.e[idx], self.u)

    @property
    def shape(self):
        return self.v.shape


def where(cond, a, b):
    """``a`` where ``cond``, else ``b`` (a fixed selection: on duals it selects the tangents too)."""
    if isinstance(a, Dual) or isinstance(b, Dual):
        a, b = (a if isinstance(a, Dual) else b.lift(a)), (b if isinstance(b, Dual) else a.lift(b))
        if a.t is None and b.t is None:
            return Dual(where(cond, a.p, b.p), None)
        return Dual(where(cond, a.p, b.p), where(cond, a.tangent(), b.tangent()))
    return Bound(np.where(cond, a.v, b.v), np.where(cond, a.e, b.e), a.u)


def saved(s, u_out: float):
    """A saved statistic that a backend may round to the case dtype before use
    (on a dual, its tangent too: the tangent of a statistic is rounded with it)."""
    if isinstance(s, Dual):
        return Dual(saved(s.p, u_out), None if s.t is None else saved(s.t, u_out))
    return Bound(s.v, s.e + u_out * np.abs(s.v), s.u)


def const(c: float, u: float) -> Bound:
    """A constant rounded once to the working precision (exact if it is a dyadic
    number with few bits, e.g. 1.0, 0.5, an integer)."""
    c = float(c)
    m, _ = math.frexp(c)
    exact = c == 0.0 or (m * 2 ** 24).is_integer()
    return Bound(c, 0.0 if exact else u * abs(c), u)


# ----------------------------------------------------------------------------- forward mode


def _tsum(a: Bound | None, b: Bound | None) -> Bound | None:
    """The sum of two tangents, None standing for an exact zero (no rounding)."""
    if a is None:
        return b
    return a if b is None else a + b


class Dual:
    """Forward-mode running error analysis: a primal :class:`Bound` ``p`` and
    the :class:`Bound` ``t`` of its tangent along a direction (None: exactly
    zero, the value depends on no input that has one).

    Each rule is written with Bound arithmetic, because a backend evaluates
    the tangent with rounded operations too: ``t(a b) = ta b + a tb``,
    ``t(a/b) = (ta - (a/b) tb)/b``, ``t(sqrt a) = ta/(2 sqrt a)``, a sum or mean
    of tangents is a rounded sum (``f(K)``), ``t(max(a, c))`` the tangent of the
    larger one (and their difference where rounding can swap them); a constant,
    a Bound or an array is a dual with tangent None.  The primal is computed
    exactly as without tangents (a program run on duals bounds the same
    primal values)."""

    __array_ufunc__ = None  # numpy arrays and scalars on the left defer to Dual
    __array_priority__ = 1001

    def __init__(self, p: Bound, t: Bound | None):
        if t is not None and t.v.shape != p.v.shape:  # a tangent from a broadcast factor only
            t = Bound(np.broadcast_to(t.v, p.v.shape), np.broadcast_to(t.e, p.v.shape), t.u)
        self.p, self.t = p, t

    @property
    def u(self) -> float:
        return self.p.u

    @property
    def shape(self):
        return self.p.shape

    def lift(self, o) -> "Dual":
        if isinstance(o, Dual):
            return o
        return Dual(o if isinstance(o, Bound) else Bound(o, 0.0, self.u), None)

    def tangent(self) -> Bound:
        """The tangent as a Bound (an exact zero for None)."""
        return Bound(np.zeros(self.p.v.shape), 0.0, self.u) if self.t is None else self.t

    # -- arithmetic
    def __add__(self, o):
        o = self.lift(o)
        return Dual(self.p + o.p, _tsum(self.t, o.t))

    __radd__ = __add__

    def __sub__(self, o):
        o = self.lift(o)
        return Dual(self.p - o.p, _tsum(self.t, None if o.t is None else -o.t))

    def __rsub__(self, o):
        return self.lift(o) - self

    def __neg__(self):
        return Dual(-self.p, None if self.t is None else -self.t)

    def __mul__(self, o):
        o = self.lift(o)
        return Dual(self.p * o.p, _tsum(None if self.t is None else self.t * o.p,
                                        None if o.t is None else self.p * o.t))

    __rmul__ = __mul__

    def __truediv__(self, o):
        o = self.lift(o)
        q = self.p / o.p
        if o.t is None:
            return Dual(q, None if self.t is None else self.t / o.p)
        num = -(q * o.t) if self.t is None else self.t - q * o.t
        return Dual(q, num / o.p)

    def __rtruediv__(self, o):
        return self.lift(o) / self

    def sqrt(self):
        r = self.p.sqrt()
        return Dual(r, None if self.t is None else self.t / (r * 2.0))

    def abs(self):
        return Dual(self.p.abs(), None if self.t is None else self.t * np.sign(self.p.v))

    def pow(self, c: float, c_rounded: bool = False):
        r = self.p.pow(c, c_rounded)
        return Dual(r, None if self.t is None else self.t * self.p.pow(c - 1.0) * float(c))

    def amax(self, axis, keepdims=False):
        """The tangent of a maximum: the mean of the tangents of the maximal elements
        (ties share it evenly, as PyTorch's amax and autograd's max)."""
        m = self.p.amax(axis, keepdims)
        if self.t is None:
            return Dual(m, None)
        mask = self.p.v == self.p.v.max(axis=axis, keepdims=True)
        k = mask.sum(axis=axis, keepdims=True).astype(np.float64)
        t = piecewise(lambda b: Bound(np.where(mask, b.v, 0.0), np.where(mask, b.e, 0.0), b.u), self.t)
        return Dual(m, t.sum(axis, keepdims=True) / (k if keepdims else np.squeeze(k, axis)))

    def maximum(self, o):
        o = self.lift(o)
        m = self.p.maximum(o.p)
        if self.t is None and o.t is None:
            return Dual(m, None)
        ta, tc = self.tangent(), o.tangent()
        first = self.p.v >= o.p.v
        swap = np.abs(self.p.v - o.p.v) <= self.p.e + o.p.e  # rounding may pick the other one
        e = np.where(first, ta.e, tc.e) + np.where(swap, np.abs(ta.v - tc.v), 0.0)
        return Dual(m, Bound(np.where(first, ta.v, tc.v), e, self.u))

    # -- reductions
    def sum(self, axis, keepdims=False):
        return Dual(self.p.sum(axis, keepdims), None if self.t is None else self.t.sum(axis, keepdims))

    def mean(self, axis, keepdims=False):
        return Dual(self.p.mean(axis, keepdims), None if self.t is None else self.t.mean(axis, keepdims))

    # -- shape
    def reshape(self, *shape):
        return Dual(self.p.reshape(*shape), None if self.t is None else self.t.reshape(*shape))

    def __getitem__(self, idx):
        return Dual(self.p[idx], None if self.t is None else self.t[idx])


def primal(b):
    """The primal Bound of a dual (a Bound as it is): for a program that reads ``.v``/``.e``."""
    return b.p if isinstance(b, Dual) else b


def piecewise(f, b):
    """A map of Bounds that selects or zeroes elements by a fixed condition,
    applied to a Bound, or to a dual's primal and tangent alike (it is linear)."""
    if isinstance(b, Dual):
        return Dual(f(b.p), None if b.t is None else f(b.t))
    return f(b)


def _var(a, t, u: float):
    """An input: a Bound, or a dual when it has a tangent ``t`` (stored exactly)."""
    b = Bound(a, 0.0, u)
    return b if t is None else Dual(b, Bound(np.asarray(t, dtype=np.float64).reshape(b.shape), 0.0, u))


def _arg(inputs, name, u: float, tangents):
    """A parameter: the float64 array, or a dual when it has a tangent."""
    a = _x(inputs, name)
    return a if not tangents or name not in tangents else _var(a, tangents[name], u)


def _b(a, u: float):
    """An array as a Bound (a Bound or a dual as it is)."""
    return a if isinstance(a, (Bound, Dual)) else Bound(a, 0.0, u)


# ----------------------------------------------------------------------------- activations


def _sigmoid(v):
    e = _libm.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _normal_cdf(v):
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return 0.5 * erfc(-v / math.sqrt(2.0)) if v.size else np.zeros_like(v)


def activation(name: str, x):
    """``(phi(x), phi'(x))`` as Bounds, for PN's activations (module docstring);
    for a dual ``x``, duals with tangents ``phi'(x) tx`` and ``phi''(x) tx``."""
    if isinstance(x, Dual):
        phi, dphi = activation(name, x.p)
        if x.t is None:
            return Dual(phi, None), Dual(dphi, None)
        return Dual(phi, dphi * x.t), Dual(dphi, activation2(name, x.p) * x.t)
    u, L = x.u, LIB_ULPS
    v = x.v
    with np.errstate(all="ignore"):
        if name == "relu":
            phi = Bound(np.where(v <= 0, 0.0, v), np.where(v + x.e > 0, x.e, 0.0), u)
            flip = (np.abs(v) <= x.e) & (x.e > 0)
            dphi = Bound(np.where(v > 0, 1.0, 0.0), np.where(flip, 1.0, 0.0), u)
            return phi, dphi
        if name in ("silu", "swish"):
            sg = _sigmoid(v)
            e_sg = (L + 2) * u * sg + (L / 2 + 1) * u
            p = v * sg
            d1 = sg * (1.0 + v * (1.0 - sg))
            d2 = sg * (1.0 - sg) * (2.0 + v * (1.0 - 2.0 * sg))
            phi = Bound(p, np.abs(d1) * x.e + np.abs(v) * e_sg + u * np.abs(p), u)
            dphi = Bound(d1, np.abs(d2) * x.e + (1.0 + np.abs(v)) * e_sg + 4 * u * (sg + np.abs(v) * sg * (1 - sg)), u)
            return phi, dphi
        if name == "gelu":
            cdf = _normal_cdf(v)
            pdf = _libm.exp(-0.5 * v * v) / _SQRT2PI
            e_cdf = (L + 2) * u * cdf + (L / 2 + 1) * u
            p = v * cdf
            d1 = cdf + v * pdf
            d2 = pdf * (2.0 - v * v)
            phi = Bound(p, np.abs(d1) * x.e + np.abs(v) * e_cdf + u * np.abs(p), u)
            dphi = Bound(d1, np.abs(d2) * x.e + e_cdf + (L + 3) * u * np.abs(v) * pdf
                         + 3 * u * (cdf + np.abs(v) * pdf), u)
            return phi, dphi
    raise ValueError(f"no error model for activation {name!r}")


def activation2(name: str, x: Bound) -> Bound:
    """``phi''(x)`` as a Bound, for the tangent of ``phi'`` (forward mode and
    second order): ReLU 0 (as refnorm and autograd take it); SiLU
    ``sigma (1 - sigma)(2 + x (1 - 2 sigma))``, GELU ``pdf (2 - x^2)``, each with
    the propagated ``|phi^(3)| e_x``, the error of sigma (the partial derivative
    in sigma is at most ``2 + 1.5|x|``) or of pdf (``exp`` within L ulp, its
    argument ``x^2/2`` relative ``u``), and the roundings of the products."""
    u, L = x.u, LIB_ULPS
    v = x.v
    with np.errstate(all="ignore"):
        if name == "relu":
            return Bound(np.zeros_like(v), 0.0, u)
        if name in ("silu", "swish"):
            sg = _sigmoid(v)
            e_sg = (L + 2) * u * sg + (L / 2 + 1) * u
            s1 = sg * (1.0 - sg)
            d2 = s1 * (2.0 + v * (1.0 - 2.0 * sg))
            d3 = s1 * ((1.0 - 2.0 * sg) * (3.0 + v * (1.0 - 2.0 * sg)) - 2.0 * v * s1)
            e = (np.abs(d3) * x.e + (2.0 + 1.5 * np.abs(v)) * e_sg
                 + 6 * u * s1 * (2.0 + np.abs(v) * np.abs(1.0 - 2.0 * sg)))
            return Bound(d2, e, u)
        if name == "gelu":
            pdf = _libm.exp(-0.5 * v * v) / _SQRT2PI
            w = 2.0 - v * v
            d2 = pdf * w
            d3 = v * pdf * (v * v - 4.0)
            e = np.abs(d3) * x.e + pdf * ((L + 4 + 0.5 * v * v) * np.abs(w) + 2.0 + 2.0 * v * v) * u
            return Bound(d2, e, u)
    raise ValueError(f"no error model for activation {name!r}")


def quantiles(K: int, u: float) -> Bound:
    """PN's proxy points ``q_k = sqrt(2) erfinv(2(k - 1/2)/K - 1)`` with the error of
    computing them in working precision (module docstring)."""
    q = proxy_quantiles(K)
    e = math.sqrt(math.pi / 2.0) * _libm.exp(0.5 * q * q) * 3.0 * u + (LIB_ULPS + 2) * u * np.abs(q)
    return Bound(q, e, u)


# ----------------------------------------------------------------------------- the seed layers


def _x(inputs, name="x"):
    return np.asarray(inputs[name], dtype=np.float64)


def proxy_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """PN-Act (docs/ops/proxy_norm.md#pn-backward), as :mod:`refnorm.ops.proxy_norm` computes it
    (on duals for the arguments in ``tangents``)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    w, b, ps, pss = (_arg(inputs, k, u, tangents) for k in ("weight", "bias", "proxy_shift", "proxy_scale"))
    K = int(a["num_points"])
    eps = const(a["eps"], u)

    def col(p):
        return p.reshape(1, C, 1)

    uu = x * col(w) + col(b)  # (1)
    z, d = activation(a["activation"], uu)  # (2)
    q = quantiles(K, u).reshape(1, K)  # (3)
    Y = (_b(pss, u).reshape(C, 1) + 1.0) * q + ps.reshape(C, 1)  # (4) (C, K)
    uk = Y * w.reshape(C, 1) + b.reshape(C, 1)
    P, dk = activation(a["activation"], uk)  # (5)
    m_acc = P.mean(1)  # (6) (C,)
    Pa = P - m_acc.reshape(C, 1)  # (7)
    v = (Pa * Pa).mean(1)  # (8) biased
    s = saved(1.0 / (v + eps).sqrt(), u_out)  # (9)
    m = saved(m_acc, u_out)
    Pc = P - m.reshape(C, 1)
    y = (z - m.reshape(1, C, 1)) * s.reshape(1, C, 1)  # (10)
    out = {"y": y.reshape(x0.shape), "mean": m, "rstd": s}
    if "dy" in inputs:
        G = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        s3 = s.reshape(1, C, 1)
        out["dx"] = (((G * s3) * d) * col(w)).reshape(x0.shape)  # term x
        ax = (0, 2)
        sg = G.sum(ax)
        sgz = (G * (z - m.reshape(1, C, 1))).sum(ax)
        sgd = (G * d).sum(ax)
        sgdx = ((G * d) * x).sum(ax)
        dLdm = -(s * sg)  # mean path
        dLdv = (sgz * -0.5) * (s * s * s)  # scale path, dL/ds * ds/dv
        t1, t1y, t1q = dk.sum(1), (dk * Y).sum(1), (dk * q).sum(1)
        pd = Pc * dk
        t2, t2y, t2q = pd.sum(1), (pd * Y).sum(1), (pd * q).sum(1)
        c1 = dLdm / float(K)
        c2 = (dLdv * 2.0) / float(K)
        chain_1 = c1 * t1 + c2 * t2
        chain_y = c1 * t1y + c2 * t2y
        chain_q = c1 * t1q + c2 * t2q
        out["dweight"] = s * sgdx + chain_y
        out["dbias"] = s * sgd + chain_1
        out["dproxy_shift"] = chain_1 * w
        out["dproxy_scale"] = chain_q * w
    return out


def gn_plus(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """GN+ (docs/ops/gn_plus.md#gnplus-backward), as :mod:`refnorm.ops.gn_plus` computes it
    (on duals for the arguments in ``tangents``)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    S = x.shape[2]
    G = int(a["num_groups"])
    eps = const(a["eps"], u)

    def gn_view(t):
        return t.reshape(N, G, (C // G) * S), (2,)

    def bn_view(t):
        return t, ((0,) if a["batch_stats"] == "position" else (0, 2))

    class Norm:
        def __init__(self, view, t):
            self.view = view
            tv, self.axis = view(t)
            self.n = math.prod(tv.shape[i] for i in self.axis)
            mean = tv.mean(self.axis, keepdims=True)
            ta = tv - mean
            std = ((ta * ta).sum(self.axis, keepdims=True) / float(self.n - 1)).sqrt()
            self.std = saved(std, u_out)
            self.tc = tv - saved(mean, u_out)
            self.den = self.std + eps
            self.out = (self.tc / self.den).reshape(N, C, S)

        def T(self, g):
            """N^T(g): the backward map (ops/gn_plus.py docstring)."""
            gv, _ = self.view(g)
            c1 = gv.mean(self.axis, keepdims=True)  # term 1
            c2 = (gv * self.tc).sum(self.axis, keepdims=True) / ((self.std * float(self.n - 1)) * (self.den * self.den))
            return ((gv - c1) / self.den - c2 * self.tc).reshape(N, C, S)  # term 2

    if a["variant"] == "gn_first":
        ngn = Norm(gn_view, x)
        nbn = Norm(bn_view, ngn.out)
    elif a["variant"] == "bn_first":
        nbn = Norm(bn_view, x)
        ngn = Norm(gn_view, nbn.out)
    else:
        ngn, nbn = Norm(gn_view, x), Norm(bn_view, x)
    A, Bb = ngn.out, nbn.out
    mix = float(np.reshape(_x(inputs, "mix"), ()))
    lam_v = 1.0 / (1.0 + math.exp(-mix))
    lam = Bound(lam_v, (LIB_ULPS + 2) * u * lam_v, u)  # 1/(1 + exp(-mix))
    if "mix" in tangents:  # t(lam) = lam (1 - lam) tmix
        lam = Dual(lam, (lam * (1.0 - lam)) * Bound(float(np.reshape(tangents["mix"], ())), 0.0, u))
    oml = 1.0 - lam
    w, b = (_arg(inputs, k, u, tangents).reshape(1, C, 1) for k in ("weight", "bias"))
    zz = lam * A + oml * Bb  # (4)
    y = zz * w + b  # (5)
    out = {"y": y.reshape(x0.shape)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        h = dy * w
        h_a, h_b = lam * h, oml * h
        out["dweight"] = (dy * zz).sum((0, 2))
        out["dbias"] = dy.sum((0, 2))
        dmix = (lam * oml) * (h * (A - Bb)).sum((0, 1, 2))
        out["dmix"] = dmix.reshape(np.shape(inputs["mix"]))
        if a["variant"] == "parallel":
            dx = ngn.T(h_a) + nbn.T(h_b)
        elif a["variant"] == "gn_first":
            dx = ngn.T(h_a + nbn.T(h_b))
        else:
            dx = nbn.T(h_b + ngn.T(h_a))
        out["dx"] = dx.reshape(x0.shape)
    return out


def weight_standardization(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Weight standardization (docs/ops/weight_standardization.md#ws-styles), as :mod:`refnorm.ops.weight_standardization`
    (on duals for the arguments in ``tangents``)."""
    a = spec.attrs
    tangents = tangents or {}
    W0 = _x(inputs, "weight")
    C = W0.shape[0]
    W = _var(W0, tangents.get("weight"), u).reshape(C, -1)
    n = W.shape[1]
    est, mode, eps_v, fan = resolve_options(a["style"], a.get("estimator"), a.get("eps_mode"), a["eps"],
                                            a.get("fan_in_scaling"))
    nd = n - 1 if est == "unbiased" else n
    eps = const(eps_v, u)
    sc = float(n) if fan else 1.0
    mean_acc = W.mean(1, keepdims=True)  # (2)
    wa = W - mean_acc  # (3)
    var = (wa * wa).sum(1, keepdims=True) / float(nd)  # (4)-(5)
    mean = saved(mean_acc, u_out)
    wc = W - mean
    if mode == "floor":
        sv = var * sc
        r = 1.0 / sv.maximum(eps).sqrt()  # (7) rsqrt(max(s v, eps))
    elif mode == "variance":
        r = 1.0 / ((var + eps) * sc).sqrt()
    else:
        std = var.sqrt()
        r = 1.0 / ((std + eps) * Bound(sc, 0.0, u).sqrt())
    r = saved(r, u_out)
    gain = inputs.get("gain")
    g = None if gain is None else _arg(inputs, "gain", u, tangents).reshape(C, 1)
    y = wc * r  # (8)
    if g is not None:
        y = y * g  # (9)
    out = {"y": y.reshape(W0.shape), "mean": mean.reshape(C), "scale": r.reshape(C)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(C, n), 0.0, u)
        gd = dy if g is None else dy * g
        c1 = gd.mean(1, keepdims=True)
        c2 = (gd * wc).sum(1, keepdims=True)
        c4 = (dy * wc).sum(1, keepdims=True)
        if mode == "std":
            kv = ((r * r) * -0.5) * Bound(sc, 0.0, u).sqrt() / std
        else:
            kv = ((r * r) * r) * (-0.5 * sc)
            if mode == "floor":
                svp, epsp = primal(sv), primal(eps)
                active = svp.v < epsp.v
                ambiguous = np.abs(svp.v - epsp.v) <= svp.e + epsp.e

                def floor(kv):
                    zero = Bound(np.zeros_like(kv.v), np.where(ambiguous, np.abs(kv.v) + kv.e, 0.0), u)
                    return where(active, zero, Bound(kv.v, np.where(ambiguous, np.abs(kv.v) + kv.e, kv.e), u))

                kv = piecewise(floor, kv)
        c3 = (kv * 2.0) * c2 / float(nd)
        out["dweight"] = (r * (gd - c1) + c3 * wc).reshape(W0.shape)
        if g is not None:
            out["dgain"] = (r * c4).reshape(C)
    return out


def batch_layer_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Batch Layer Normalization (docs/ops/batch_layer_norm.md#bln-backward), as :mod:`refnorm.ops.batch_layer_norm`
    (on duals for the arguments in ``tangents``)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    x = _var(x0, tangents.get("x"), u)
    nd = x0.ndim
    fa = a.get("feature_axis", -1) % nd
    d = x0.shape[fa]
    pshape = tuple(d if i == fa else 1 for i in range(nd))
    eps = const(a["eps"], u)
    training = a.get("training", True)
    flags = tuple(a.get("flags", (True, True, False, False))) if not training else (False,) * 4
    f_axes = (fa,)
    b_axes = (0,) if a.get("batch_stats", "position") == "position" else tuple(i for i in range(nd) if i != fa)

    def branch(axes, use_mean, use_var, key):
        K = math.prod(x0.shape[i] for i in axes)
        mean_acc = x.mean(axes, keepdims=True)
        xa = x - mean_acc
        rstd = saved(1.0 / ((xa * xa).mean(axes, keepdims=True) + eps).sqrt(), u_out)
        mean = saved(mean_acc, u_out)
        m_use = Bound(_x(inputs, f"moving_{key}_mean"), 0.0, u) if use_mean else mean
        r_use = (1.0 / (Bound(_x(inputs, f"moving_{key}_var"), 0.0, u) + eps).sqrt()) if use_var else rstd
        return dict(K=K, axes=axes, mean=mean, m_use=m_use, r_use=r_use, xc_use=x - m_use, const_mean=use_mean,
                    const_var=use_var)

    F = branch(f_axes, flags[2], flags[3], "feature")
    Bs = branch(b_axes, flags[0], flags[1], "batch")
    xh_F = F["xc_use"] * F["r_use"]  # (7)
    xh_B = Bs["xc_use"] * Bs["r_use"]  # (6)
    Bc = x0.shape[0] if a.get("batch_size") is None else int(a["batch_size"])
    off = const(a.get("weight_offset", 1e-4), u)
    inv_b = Bound(1.0, 0.0, u) / float(Bc)
    w_F = inv_b - off  # (8)
    w_B = 1.0 - (inv_b + off)  # (9)
    sqrt_d = Bound(float(d), 0.0, u).sqrt() if a.get("sqrt_d_scale", True) else Bound(1.0, 0.0, u)
    z = w_F * xh_F + w_B * xh_B  # (10)
    weight, bias = inputs.get("weight"), inputs.get("bias")
    gam = None if weight is None else _arg(inputs, "weight", u, tangents).reshape(pshape)
    num = z if gam is None else z * gam  # (11)
    y = num / sqrt_d  # (12)
    if bias is not None:
        y = y + _arg(inputs, "bias", u, tangents).reshape(pshape)  # (13)
    out = {"y": y, "batch_mean": Bs["m_use"], "batch_rstd": Bs["r_use"], "feature_mean": F["m_use"],
           "feature_rstd": F["r_use"]}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy"), 0.0, u)
        gdy = dy if gam is None else dy * gam
        dx = None
        for br, wt in ((F, w_F), (Bs, w_B)):
            g = (wt / sqrt_d) * gdy
            c1 = g.mean(br["axes"], keepdims=True) if not br["const_mean"] else Bound(0.0, 0.0, u)
            if br["const_var"]:
                c3 = Bound(0.0, 0.0, u)
            else:
                r = br["r_use"]
                c3 = ((r * r) * r) * (g * br["xc_use"]).mean(br["axes"], keepdims=True)
            term = br["r_use"] * (g - c1) - c3 * (x - br["mean"])  # terms 1-3
            dx = term if dx is None else dx + term
        out["dx"] = dx
        p_axes = tuple(i for i in range(nd) if i != fa)
        if weight is not None:
            out["dweight"] = (dy * z).sum(p_axes) / sqrt_d
        if bias is not None:
            out["dbias"] = dy.sum(p_axes)
    return out


def _tanh_sech2(z):
    """``(tanh z, sech^2 z)`` of a Bound, or of a dual with tangents ``s tz`` and ``s' tz``
    (``s' = -2 t s``).  ``t`` is a library function within L ulp (``(L + 1) u |t|`` with the
    propagated ``s e_z``); ``s`` is bounded as a backend computes it from its rounded ``t``,
    ``1 - t t`` (PyTorch's tanh_backward): the absolute error ``2 |t| e_t`` of that form, which is
    large relative to ``s`` where ``|z|`` is large, bounds refnorm's cancellation-free
    ``4 e^{-2|z|}/(1 + e^{-2|z|})^2`` too; ``s'`` likewise as ``-2 t s`` from those two."""
    if isinstance(z, Dual):
        t, s = _tanh_sech2(z.p)
        if z.t is None:
            return Dual(t, None), Dual(s, None)
        return Dual(t, s * z.t), Dual(s, ((t * s) * -2.0) * z.t)
    u, L = z.u, LIB_ULPS
    tv = _libm.tanh(z.v)
    sv = 1.0 - tv * tv
    prop = np.where(sv == 0.0, 0.0, sv * z.e)  # z = +-inf (e_z = inf): t = +-1 exactly, flat there
    t = Bound(tv, prop + (L + 1) * u * np.abs(tv), u)
    return t, 1.0 - t * t


def dyt(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Dynamic Tanh (docs/ops/dyt.md#dyt-backward), as :mod:`refnorm.ops.dyt` computes it (on
    duals for the arguments in ``tangents``): ``z = alpha x``, ``y = w tanh(z) + b``; backward
    ``q = (w dy) s``, ``dx = q alpha``, ``dalpha = sum q x``, ``dw = sum dy t``, ``db = sum dy``."""
    tangents = tangents or {}
    x0 = _x(inputs)
    nd = x0.ndim
    C = x0.shape[-1]
    x = _var(x0, tangents.get("x"), u)
    alpha = _arg(inputs, "alpha", u, tangents)
    al = alpha.reshape(()) if isinstance(alpha, Dual) else Bound(np.reshape(alpha, ()), 0.0, u)
    z = al * x  # (1)
    t, s = _tanh_sech2(z)  # (2)
    w = None if inputs.get("weight") is None else _b(_arg(inputs, "weight", u, tangents), u).reshape(C)
    b = None if inputs.get("bias") is None else _b(_arg(inputs, "bias", u, tangents), u).reshape(C)
    y = t if w is None else t * w  # (3)
    if b is not None:
        y = y + b  # (4)
    out = {"y": y}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy"), 0.0, u)
        g = dy if w is None else dy * w
        q = g * s
        out["dx"] = q * al
        out["dalpha"] = (q * x).sum(tuple(range(nd))).reshape(np.shape(inputs["alpha"]))
        lead = tuple(range(nd - 1))
        if w is not None:
            out["dweight"] = (dy * t).sum(lead) if lead else dy * t
        if b is not None:
            out["dbias"] = dy.sum(lead) if lead else dy
    return out


def normalize(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Lp normalization (docs/ops/normalize.md#normalize-backward) on the view ``(pre, n, post)``, as
    the plain formula a backend computes (refnorm's power-of-two scaling is exact); on duals for ``x``."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    k = int(a.get("dim", 1)) % x0.ndim
    s = x0.shape
    v3 = (math.prod(s[:k]), s[k], math.prod(s[k + 1:]))
    x = _var(x0, tangents.get("x"), u).reshape(v3)
    p = float(a.get("p", 2.0))
    eps = const(a.get("eps", 1e-12), u)
    ax = x.abs()  # (1)
    if p == math.inf:
        N = ax.amax(1, keepdims=True)  # (2)
    else:
        # each slice scaled by 2^-k, 2^k near max |x| (as refnorm does; a power of two: exact
        # apart from the product's own rounding counted here), so that |x|^p neither overflows nor underflows
        amax = np.abs(x0.reshape(v3)).max(axis=1, keepdims=True)
        two_k = np.ldexp(1.0, np.frexp(np.where(amax > 0, amax, 1.0))[1])
        ax = ax * (1.0 / two_k)
        if p == 2.0:
            S = (ax * ax).sum(1, keepdims=True).sqrt()
        elif p == 1.0:
            S = ax.sum(1, keepdims=True)
        else:
            inv = 1.0 / p
            S = ax.pow(p).sum(1, keepdims=True).pow(inv, not const(inv, u).e == 0.0)
        N = S * two_k
    d = saved(N.maximum(eps), u_out)  # (3) clamp_min, possibly rounded to the case dtype
    y = x / d  # (4)
    out = {"y": y.reshape(s), "norm": d.reshape(s[:k] + s[k + 1:])}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(v3), 0.0, u)
        c = (dy * y).sum(1, keepdims=True)
        sg = np.sign(x0.reshape(v3))
        if p == 2.0:
            g = y
        elif p == 1.0:
            g = Bound(sg, 0.0, u)
        elif p == math.inf:
            av = np.abs(x0.reshape(v3))
            mask = av == av.max(axis=1, keepdims=True)
            g = Bound(sg * mask / mask.sum(axis=1, keepdims=True), 0.0, u)
        else:
            g = y.abs().pow(p - 1.0) * sg
        cg = c * g
        Np, ep = primal(N), primal(eps)
        active = Np.v < ep.v
        ambiguous = np.abs(Np.v - ep.v) <= Np.e + ep.e

        def clamp(t):
            zero = Bound(np.zeros_like(t.v), np.where(ambiguous, np.abs(t.v) + t.e, 0.0), u)
            return where(active, zero, Bound(t.v, np.where(ambiguous, np.abs(t.v) + t.e, t.e), u))

        out["dx"] = ((dy - piecewise(clamp, cg)) / d).reshape(s)
    return out


def filter_response_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """FRN + TLU (docs/ops/filter_response_norm.md#frn-backward), as :mod:`refnorm.ops.filter_response_norm`
    computes it (on duals for the arguments in ``tangents``).  The TLU's masks are taken
    from the float64 ``z``; where rounding can put ``z`` on the other side of ``tau``
    (``|z - tau| <= e_z + e_tau``) a masked value may be taken whole or not at all:
    its error bound grows by its magnitude (as weight standardization's floor)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    eps = const(a["eps"], u)
    w, b = (_b(_arg(inputs, k, u, tangents), u).reshape(1, C, 1) for k in ("weight", "bias"))
    has_tau = inputs.get("tau") is not None
    nu2 = (x * x).mean(2, keepdims=True)  # (2)
    r = saved(1.0 / (nu2 + eps).sqrt(), u_out)  # (3)
    xhat = x * r  # (4)
    z = xhat * w + b  # (5)
    y = z
    if has_tau:
        tau = _b(_arg(inputs, "tau", u, tangents), u).reshape(1, C, 1)
        y = z.maximum(tau)  # (6)
        zp, tp = primal(z), primal(tau)
        tv = np.broadcast_to(tp.v, zp.v.shape)
        mz_v = np.where(zp.v < tv, 0.0, np.where(zp.v == tv, 0.5, 1.0))
        ambiguous = np.abs(zp.v - tv) <= zp.e + np.broadcast_to(tp.e, zp.v.shape)

        def mask(m):
            def f(v):
                return Bound(m * v.v, m * v.e + np.where(ambiguous, np.abs(v.v), 0.0), u)
            return f
    out = {"y": y.reshape(x0.shape), "rstd": r.reshape(N, C)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        dz = piecewise(mask(mz_v), dy) if has_tau else dy
        g = dz * w
        c2 = (g * xhat).mean(2, keepdims=True)
        out["dx"] = (r * (g - xhat * c2)).reshape(x0.shape)
        out["dweight"] = (dz * xhat).sum((0, 2))
        out["dbias"] = dz.sum((0, 2))
        if has_tau:
            out["dtau"] = piecewise(mask(1.0 - mz_v), dy).sum((0, 2))
    return out


def _lrn_windows(C: int, size: int, transposed: bool):
    """``(idx, mask)`` of shape ``(C, size)``: the channels of the window of each channel ``c``,
    ``W(c) = [c - size // 2, c + (size - 1) // 2]`` (``transposed``: the channels whose window
    holds ``c``, ``[c - (size - 1) // 2, c + size // 2]``), clipped, and which of them lie in
    ``[0, C)`` (the others are PyTorch's zero padding)."""
    first = (size - 1) // 2 if transposed else size // 2
    j = np.arange(C)[:, None] - first + np.arange(size)[None, :]
    mask = (j >= 0) & (j < C)
    return np.clip(j, 0, max(C - 1, 0)), mask


def local_response_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Local Response Normalization (docs/ops/local_response_norm.md#lrn-backward), as
    :mod:`refnorm.ops.local_response_norm` computes it (on duals for ``x``): per column ``(n, s)``,
    ``b_c = k + alpha (sum_{W(c)} x_j^2) / size`` (a sum of ``size`` terms, PyTorch's zero padding
    exact), ``div = b^beta`` (library pow; the saved statistic), ``y = x / div``; backward
    ``q = dy y / b``, ``dx = dy / div - g x sum_{W'(i)} q_c`` with ``g = 2 alpha beta / size``."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    s = x0.shape
    N, C, S = s[0], s[1], math.prod(s[2:])
    x = _var(x0, tangents.get("x"), u).reshape(N, C, S)
    size = int(a["size"])
    alpha = const(a.get("alpha", 1e-4), u)
    beta = float(a.get("beta", 0.75))
    k = const(a.get("k", 1.0), u)
    idx, mask = _lrn_windows(C, size, False)
    idx_t, mask_t = _lrn_windows(C, size, True)

    def window(t, ix, m):
        """``sum`` over the window of every channel: ``(N, C, S)`` -> ``(N, C, size, S)`` -> sum."""
        g = piecewise(lambda b: Bound(np.where(m[None, :, :, None], b.v, 0.0),
                                      np.where(m[None, :, :, None], b.e, 0.0), u), t[:, ix, :])
        return g.sum(2)

    total = window(x * x, idx, mask)  # (2)-(4) sum of squares over W(c)
    base = (total / float(size)) * alpha + k  # (5)
    div = saved(base.pow(beta, not const(beta, u).e == 0.0), u_out)  # (6)
    y = x / div  # (7)
    out = {"y": y.reshape(s), "div": div.reshape(s)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(N, C, S), 0.0, u)
        g = (alpha * (2.0 * beta)) / float(size)
        q = (dy * y) / base
        out["dx"] = (dy / div - (x * window(q, idx_t, mask_t)) * g).reshape(s)
    return out


def weight_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Weight Normalization (docs/ops/weight_norm.md#weight-norm-backward) as PyTorch's
    ``_weight_norm`` and its ``_weight_norm_differentiable_backward`` compute it (on duals for the
    arguments in ``tangents``), on the view ``(pre, C, post)`` of the layout (``(1, 1, size)`` for the
    whole tensor): ``n = sqrt(sum v^2)`` per slice (refnorm scales by a power of two first, exact),
    ``w = v (g / n)``; backward ``s = sum dy v``, ``dg = s / n``, ``dv = (g / n) (dy - v (s / (n n)))``."""
    tangents = tangents or {}
    V0 = _x(inputs, "v")
    view = layout(spec).view
    C = view[1]
    x = _var(V0, tangents.get("v"), u).reshape(*view)
    g0 = np.asarray(inputs["g"], dtype=np.float64)
    g = _b(_arg(inputs, "g", u, tangents), u).reshape(1, C, 1)
    n = saved((x * x).sum((0, 2), keepdims=True).sqrt(), u_out)  # (1)-(2) the norm, saved
    scale = g / n  # (3)
    y = x * scale  # (4)
    out = {"y": y.reshape(V0.shape), "norm": n.reshape(layout(spec).stats["norm"])}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(view), 0.0, u)
        sm = (dy * x).sum((0, 2), keepdims=True)
        out["dg"] = (sm / n).reshape(g0.shape)
        out["dv"] = (scale * (dy - x * (sm / (n * n)))).reshape(V0.shape)
    return out


def evo_norm_b0(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """EvoNorm-B0 (docs/ops/evo_norm_b0.md#evo-b0-backward), as :mod:`refnorm.ops.evo_norm_b0` computes it
    (on duals for the arguments in ``tangents``): two-pass variances, ``left = sqrt(var + eps)``
    (``running_var`` in evaluation, exact), ``istd = sqrt(s2 + eps)``, ``d = max(left, v x + istd)``.
    The maximum's masks are taken from the float64 values; where rounding can swap ``left`` and
    ``right`` (``|left - right| <= e_left + e_right``) a masked value may be taken whole or not at
    all: its bound grows by its magnitude (as FRN's TLU)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    S = x0[0, 0].size
    eps = const(a.get("eps", 1e-3), u)
    w, b, v = (_b(_arg(inputs, k, u, tangents), u).reshape(1, C, 1) for k in ("weight", "bias", "v"))
    training = bool(a.get("training", True))
    if training:
        xc = x - x.mean((0, 2), keepdims=True)  # (1)
        var = (xc * xc).mean((0, 2), keepdims=True)
    else:
        var = Bound(_x(inputs, "running_var").reshape(1, C, 1), 0.0, u)
    left = (var + eps).sqrt()  # (2)
    xi = x - x.mean(2, keepdims=True)
    istd = ((xi * xi).mean(2, keepdims=True) + eps).sqrt()  # (3)
    right = x * v + istd  # (4)
    d = right.maximum(left) if isinstance(right, Dual) else left.maximum(right)  # (5)
    xn = x / d  # (6)
    y = xn * w + b  # (7)
    out = {"y": y.reshape(x0.shape)}
    if "dy" in inputs:
        lp, rp = primal(left), primal(right)
        lv = np.broadcast_to(lp.v, rp.v.shape)
        mr_v = np.where(lv > rp.v, 0.0, np.where(lv == rp.v, 0.5, 1.0))
        ambiguous = np.abs(lv - rp.v) <= np.broadcast_to(lp.e, rp.v.shape) + rp.e

        def mask(m):
            def f(t):
                return Bound(m * t.v, m * t.e + np.where(ambiguous, np.abs(t.v), 0.0), u)
            return f
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        g = dy * w
        dd = -((g * xn) / d)
        dr = piecewise(mask(mr_v), dd)
        dx = g / d + dr * v + (dr.sum(2, keepdims=True) / istd) * (xi / float(S))
        if training:
            gl = piecewise(mask(1.0 - mr_v), dd).sum((0, 2), keepdims=True)
            dx = dx + (gl / left) * (xc / float(N * S))
        out["dx"] = dx.reshape(x0.shape)
        out["dweight"] = (dy * xn).sum((0, 2))
        out["dbias"] = dy.sum((0, 2))
        out["dv"] = (dr * x).sum((0, 2))
    return out


def _sigmoid_gate(a):
    """``(sg, q)`` = ``(sigmoid(a), sg (1 - sg))`` as Bounds (EvoNorm-S0's gate): ``sg`` a library
    evaluation as PN's SiLU bounds it (``(L + 2) u sg + (L/2 + 1) u`` with the propagated
    ``q e_a``), ``q`` as a backend forms it from its rounded ``sg`` (PyTorch's sigmoid_backward
    ``(1 - sg) sg``: its absolute error also bounds refnorm's cancellation-free ``e/(1 + e)^2``);
    on a dual, tangents ``q ta`` and ``q (1 - 2 sg) ta``."""
    if isinstance(a, Dual):
        sg, q = _sigmoid_gate(a.p)
        if a.t is None:
            return Dual(sg, None), Dual(q, None)
        return Dual(sg, q * a.t), Dual(q, (q * (1.0 - sg * 2.0)) * a.t)
    u, L = a.u, LIB_ULPS
    s = _sigmoid(a.v)
    sg = Bound(s, s * (1.0 - s) * a.e + (L + 2) * u * s + (L / 2 + 1) * u, u)
    return sg, sg * (1.0 - sg)


def evo_norm_s0(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """EvoNorm-S0 (docs/ops/evo_norm_s0.md#evo-norm-s0-backward) on the view ``(N, G, Q, S)``, as
    :mod:`refnorm.ops.evo_norm_s0` computes it (on duals for the arguments in ``tangents``): two-pass
    group mean and biased variance, ``r = 1/sqrt(var + eps)``, ``z = (x sg) r``, ``y = w z + b``;
    backward ``g = w dy``, ``dx = r (g sp - xhat mean(g z))``, ``dweight = sum dy z``,
    ``dbias = sum dy``, ``dv = sum g r x^2 q``."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C, G = x0.shape[0], x0.shape[1], int(a["num_groups"])
    Q = C // G
    x = _var(x0, tangents.get("x"), u).reshape(N, G, Q, -1)
    eps = const(a.get("eps", 1e-5), u)
    w, b, v = (_b(_arg(inputs, k, u, tangents), u).reshape(1, G, Q, 1) for k in ("weight", "bias", "v"))
    mean = x.mean((2, 3), keepdims=True)  # (2)
    xc = x - mean  # (3)
    var = (xc * xc).mean((2, 3), keepdims=True)  # (4)
    r = saved(1.0 / (var + eps).sqrt(), u_out)  # (5)
    av = x * v
    sg, q = _sigmoid_gate(av)  # (6)
    z = (x * sg) * r  # (7)
    y = z * w + b  # (8)
    out = {"y": y.reshape(x0.shape), "mean": saved(mean, u_out).reshape(N, G), "rstd": r.reshape(N, G)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        g = dy * w
        xhat = xc * r
        c2 = (g * z).mean((2, 3), keepdims=True)
        sp = sg + av * q
        out["dx"] = (r * (g * sp - xhat * c2)).reshape(x0.shape)
        out["dweight"] = (dy * z).sum((0, 3)).reshape(C)
        out["dbias"] = dy.sum((0, 3)).reshape(C)
        out["dv"] = (g * ((r * (x * x)) * q)).sum((0, 3)).reshape(C)
    return out


def _clip(a, lo: float, hi: float):
    """``clip(a, lo, hi)`` of a Bound (1-Lipschitz: the error of ``a``; the limits are exact or rounded
    constants whose own rounding is covered by ``u |result|``)."""
    lo_b, hi_b = const(lo, a.u), const(hi, a.u)
    return -((-(a.maximum(lo_b))).maximum(-hi_b))


def batch_renorm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """Batch Renormalization (docs/ops/batch_renorm.md#brn-backward), as :mod:`refnorm.ops.batch_renorm`
    computes it (on duals for the arguments in ``tangents``), staged as Algorithm 1: ``r``, ``d`` are
    primal Bounds (their tangents dropped: the paper's stop_gradient), ``xhat = xhat0 r + d``,
    ``y = w xhat + b``; backward ``dx = (rstd (dy - mean dy - xhat0 mean(dy xhat0))) (w r)``,
    ``dweight = sum dy xhat``, ``dbias = sum dy``; eval is BatchNorm's inference.  With batch statistics
    and running statistics, the PyTorch running update ``f mean + (1 - f) running_mean`` (unbiased
    variance, ``f`` the case's momentum or ``1/(num_batches_tracked + 1)``)."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    K = x.shape[0] * x.shape[2]
    eps = const(a.get("eps", 1e-5), u)
    ax = (0, 2)
    rm = Bound(_x(inputs, "running_mean").reshape(1, C, 1), 0.0, u)
    rv = Bound(_x(inputs, "running_var").reshape(1, C, 1), 0.0, u)
    has_w, has_b = inputs.get("weight") is not None, inputs.get("bias") is not None
    w = _b(_arg(inputs, "weight", u, tangents), u).reshape(1, C, 1) if has_w else None
    b = _b(_arg(inputs, "bias", u, tangents), u).reshape(1, C, 1) if has_b else None
    training = bool(a.get("training", False))
    if training:
        mean = x.mean(ax, keepdims=True)  # (2)
        xc = x - mean  # (3)
        ss = (xc * xc).sum(ax, keepdims=True)
        var = ss / float(K)  # (4) biased
        rstd = saved(1.0 / (var + eps).sqrt(), u_out)  # 1 / sigma_B
        m = saved(mean, u_out)
        sigma = (rv + eps).sqrt()  # (1)
        r_max, d_max = float(a.get("r_max", 3.0)), float(a.get("d_max", 5.0))
        r = _clip(primal((1.0 / rstd) / sigma), 1.0 / r_max, r_max)  # (6) stop_gradient
        d = _clip(primal((m - rm) / sigma), -d_max, d_max)  # (7) stop_gradient
        xhat0 = (x - m) * rstd
        xhat = xhat0 * r + d  # (8)
    else:
        rstd = saved(1.0 / (rv + eps).sqrt(), u_out)
        m = saved(rm, u_out)
        r = Bound(np.ones((1, C, 1)), 0.0, u)
        xhat0 = xhat = (x - m) * rstd
    y = xhat if w is None else xhat * w  # (9)
    y = y if b is None else y + b  # (10)
    out = {"y": y.reshape(x0.shape), "mean": m.reshape(C), "rstd": rstd.reshape(C)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        w_eff = r if w is None else w * r
        if training:
            c1 = dy.mean(ax, keepdims=True)
            c2 = (dy * xhat0).mean(ax, keepdims=True)
            dx = (rstd * ((dy - c1) - xhat0 * c2)) * w_eff
        else:
            dx = (dy * rstd) * w_eff
        out["dx"] = dx.reshape(x0.shape)
        if has_w:
            out["dweight"] = (dy * xhat).sum(ax)
        if has_b:
            out["dbias"] = dy.sum(ax)
    if has_running_update(spec):
        f = const(running_factors(spec)["torch"], u)
        out["new_running_mean_torch"] = (f * primal(mean) + (1.0 - f) * rm).reshape(C)
        var_u = primal(ss) / float(K - 1)
        out["new_running_var_torch"] = (f * var_u + (1.0 - f) * rv).reshape(C)
    return out


def ada_layer_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """adaLN (docs/ops/ada_layer_norm.md#ada-layer-norm-backward), as :mod:`refnorm.ops.ada_layer_norm`
    computes it (on duals for the arguments in ``tangents``): LayerNorm without affine on the
    ``(N, M, D)`` view (two-pass statistics, the variance about the unrounded mean), then
    ``y = xhat (1 + scale) + shift`` per sample; backward ``g = (1 + scale) dy``,
    ``dx = r (g - mean g - xhat mean(g xhat))``, ``dscale = sum_m dy xhat``, ``dshift = sum_m dy``."""
    a = spec.attrs
    tangents = tangents or {}
    x0 = _x(inputs)
    ns = a["normalized_shape"]
    ns = (int(ns),) if isinstance(ns, (int, np.integer)) else tuple(int(d) for d in ns)
    N, D = x0.shape[0], math.prod(ns)
    M = math.prod(x0.shape[1: x0.ndim - len(ns)])
    x = _var(x0, tangents.get("x"), u).reshape(N, M, D)
    eps = const(a.get("eps", 1e-6), u)
    sc, sh = (_b(_arg(inputs, k, u, tangents), u).reshape(N, 1, D) for k in ("scale", "shift"))
    m_acc = x.mean(2, keepdims=True)  # (1)
    xc = x - m_acc  # (2)
    var = (xc * xc).mean(2, keepdims=True)  # (3) biased
    r = saved(1.0 / (var + eps).sqrt(), u_out)  # (4)
    m = saved(m_acc, u_out)
    xhat = (x - m) * r  # (5)
    gain = sc + 1.0  # (6)
    y = xhat * gain + sh  # (7)
    lead = x0.shape[: x0.ndim - len(ns)]
    out = {"y": y.reshape(x0.shape), "mean": m.reshape(lead), "rstd": r.reshape(lead)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(N, M, D), 0.0, u)
        g = dy * gain  # (b1)
        c1 = g.mean(2, keepdims=True)  # (b2)
        c2 = (g * xhat).mean(2, keepdims=True)  # (b3)
        out["dx"] = (r * ((g - c1) - xhat * c2)).reshape(x0.shape)  # (b4)
        out["dscale"] = (dy * xhat).sum(1).reshape((N,) + ns)  # (b5)
        out["dshift"] = dy.sum(1).reshape((N,) + ns)  # (b6)
    return out


def adaptive_instance_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """AdaIN (docs/ops/adaptive_instance_norm.md#adain-backward), as :mod:`refnorm.ops.adaptive_instance_norm`
    computes it (on duals for the arguments in ``tangents``): per (n, c) the two-pass mean and unbiased
    variance of the content (M positions) and of the style (Ms positions), ``sigma = sqrt(var + eps)``,
    ``y = s_std ((x - mean) rstd) + s_mean``; backward with ``A = sum dy``, ``B = sum dy xhat``:
    ``dx = (rstd s_std) ((dy - A/M) - xhat B/(M - 1))``, ``dstyle = A/Ms + (s - s_mean) B/((Ms - 1) s_std)``."""
    tangents = tangents or {}
    x0, s0 = _x(inputs), _x(inputs, "style")
    N, C = x0.shape[0], x0.shape[1]
    x = _var(x0, tangents.get("x"), u).reshape(N, C, -1)
    s = _var(s0, tangents.get("style"), u).reshape(N, C, -1)
    M, Ms = x.shape[2], s.shape[2]
    eps = const(spec.attrs.get("eps", 1e-5), u)

    def moments(f, n):
        mean_acc = f.mean(2, keepdims=True)  # (2)
        fc = f - mean_acc  # (3) about the unrounded mean
        var = (fc * fc).sum(2, keepdims=True) / float(n - 1)  # (4) unbiased
        return mean_acc, (var + eps).sqrt()  # (5)

    mx, sx = moments(x, M)
    ms, ss = moments(s, Ms)
    mean, r = saved(mx, u_out), saved(1.0 / sx, u_out)
    s_mean, s_std = saved(ms, u_out), saved(ss, u_out)
    xhat = (x - mean) * r  # (6)
    y = xhat * s_std + s_mean  # (7)
    out = {"y": y.reshape(x0.shape), "mean": mean.reshape(N, C), "rstd": r.reshape(N, C),
           "style_mean": s_mean.reshape(N, C), "style_std": s_std.reshape(N, C)}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(x.shape), 0.0, u)
        A = dy.sum(2, keepdims=True)
        B = (dy * xhat).sum(2, keepdims=True)
        out["dx"] = ((r * s_std) * ((dy - A / float(M)) - xhat * (B / float(M - 1)))).reshape(x0.shape)
        out["dstyle"] = (A / float(Ms) + (s - s_mean) * (B / (s_std * float(Ms - 1)))).reshape(s0.shape)
    return out


def derivatives(spec, inputs, expected, u: float, u_out: float) -> dict[str, Bound]:
    """Forward mode (``t<output>``) and second order (``d2<key>``) of the
    standard normalizers and the fused residual adds, as
    :mod:`refnorm.ops._derivatives` computes them (docs/autodiff.md), on the
    reduction sets of the case's canonical view: the statistics as the
    forward's (two-pass, saved mean and rstd possibly rounded to the case
    dtype; running statistics as constants), then

    * ``ty = w r ((t - mean t) - xhat mean(xhat t)) + tw xhat + tb``
      (RMSNorm without ``mean t``; constants: ``w r t + tw xhat + tb``);
    * with ``g = w dy``, ``c = gw dy``: ``d2dy = w r ((a - abar) - xhat alpha)
      + gw xhat + gb``, ``d2x = r ((c - cbar) - xhat kappa) - r^2 (beta (a - abar)
      + alpha (g - gbar) + (mean(a g) - abar gbar - 3 alpha beta) xhat)``,
      ``d2weight = sum dy r ((a - abar) - xhat alpha)``, ``d2bias = 0``.

    A fused op normalizes its rounded sum ``h`` (the stored output) along
    ``th = tx + tresidual``; its ``d2dh = ddx + ddresidual`` and
    ``d2x = d2residual`` (the normalization's second order at ``h``)."""
    op = get(spec.op)
    lay = layout(spec)
    ts, fs = lay.to_sets, lay.from_sets
    a = spec.attrs
    fused = op.normalized is not None and op.normalized in op.outputs
    z0 = expected[op.normalized] if fused else _x(inputs, op.primary)
    X = Bound(ts(np.asarray(z0, dtype=np.float64)), 0.0, u)
    nsets = X.shape[0]

    def elem(name):
        arr = inputs.get(name)
        return None if arr is None else Bound(ts(np.asarray(arr, dtype=np.float64)), 0.0, u)

    def param(name):
        arr = inputs.get(name)
        return None if arr is None else Bound(ts(np.array(lay.param_view(np.asarray(arr, dtype=np.float64)))), 0.0, u)

    eps_v = a.get("eps")
    if eps_v is None:
        dt = a.get("residual_dtype") or spec.dtype
        eps_v = op.eps_default(DTYPES[dt])
    eps = const(eps_v, u)
    if const_stats(spec):
        mean = Bound(np.resize(_x(inputs, "running_mean"), nsets)[:, None], 0.0, u)
        # constant statistics: the derivatives are elementwise compositions, which a backend
        # (PyTorch's eval-mode double backward) may evaluate in the case dtype: rstd and the
        # elementwise products rounded to d
        r = saved(1.0 / (Bound(np.resize(_x(inputs, "running_var"), nsets)[:, None], 0.0, u) + eps).sqrt(), u_out)
        mode = "const"
    elif op.center:
        mean_acc = X.mean(1, keepdims=True)
        xa = X - mean_acc
        r = saved(1.0 / ((xa * xa).mean(1, keepdims=True) + eps).sqrt(), u_out)
        mean = saved(mean_acc, u_out)
        mode = "batch"
    else:
        r = saved(1.0 / ((X * X).mean(1, keepdims=True) + eps).sqrt(), u_out)
        mean = None
        mode = "rms"
    xhat = (X if mean is None else X - mean) * r
    w = param("weight")
    offset = a.get(op.weight_offset, 0.0) if op.weight_offset else 0.0
    if w is not None and offset:
        w = w + const(offset, u)

    def scaled(v):
        return v if w is None else w * v

    def project(t, tmean=True):
        """``(t - mean t) - xhat mean(xhat t)`` (the terms the mode has)."""
        if mode == "const":
            return t
        out = t - xhat * (xhat * t).mean(1, keepdims=True)
        return out - t.mean(1, keepdims=True) if mode == "batch" else out

    def plus(*terms):
        terms = [t for t in terms if t is not None]
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out

    def scale_shift(t, tw, tb):
        """Constant statistics: ``y = x * scale + shift`` with ``scale = w r``,
        ``shift = b - m scale`` formed in the case dtype (as PyTorch's eval
        kernels do), so its tangent is ``t scale + (x tscale + tshift)``,
        ``tscale = tw r``, ``tshift = tb - m tscale``, each rounded to d: the
        errors are relative to ``|x|`` and ``|m|``, not ``|x - m|`` (the
        forward model's scale-shift kappa)."""
        terms = []
        if t is not None:
            terms.append(t * saved(scaled(r), u_out))
        if tw is not None:
            tscale = saved(tw * r, u_out)
            terms.append(X * tscale - saved(mean * tscale, u_out))
        if tb is not None:
            terms.append(tb)
        return plus(*terms) if terms else None

    out = {}
    if any(tangent_name(n) in inputs for n in op.differentiable):
        tx = elem(tangent_name(op.primary))
        if fused:
            tr = elem(tangent_name("residual"))
            tx = tr if tx is None else (tx if tr is None else tx + tr)
            th = tx if tx is not None else Bound(np.zeros(X.shape), 0.0, u)
            out[tangent_name("h")] = Bound(fs(th.v), fs(th.e), u)
        tw, tb = param(tangent_name("weight")), param(tangent_name("bias"))
        if mode == "const":
            ty = scale_shift(tx, tw, tb)
        else:
            txh = None if tx is None else r * project(tx)
            ty = plus(None if txh is None else scaled(txh), None if tw is None else tw * xhat, tb)
        if ty is None:
            ty = Bound(np.zeros(X.shape), 0.0, u)
        out[tangent_name("y")] = Bound(fs(ty.v), fs(ty.e), u)
    if any(second_cotangent_name(n) in inputs for n in op.differentiable) and "dy" in inputs:
        A = elem(second_cotangent_name(op.primary))
        if fused:
            ar = elem(second_cotangent_name("residual"))
            A = ar if A is None else (A if ar is None else A + ar)
        if A is None:
            A = Bound(np.zeros(X.shape), 0.0, u)
        Gw, Gb = param(second_cotangent_name("weight")), param(second_cotangent_name("bias"))
        DY = elem("dy")
        g = scaled(DY)
        c = None if Gw is None else Gw * DY
        if mode == "const":
            pa = saved(r * A, u_out)
            d2x = saved(r * c, u_out) if c is not None else Bound(np.zeros(X.shape), 0.0, u)
        else:
            alpha = (xhat * A).mean(1, keepdims=True)
            beta = (xhat * g).mean(1, keepdims=True)
            mag = (A * g).mean(1, keepdims=True)
            if mode == "batch":
                abar, gbar = A.mean(1, keepdims=True), g.mean(1, keepdims=True)
                Ac, gc, mag = A - abar, g - gbar, mag - abar * gbar
            else:
                Ac, gc = A, g
            pa = r * (Ac - xhat * alpha)
            quad = (r * r) * ((beta * Ac + alpha * gc) + (mag - 3.0 * alpha * beta) * xhat)
            d2x = (0.0 - quad) if c is None else r * project(c) - quad
        if mode == "const":  # dL/ddy is the JVP along (a, gw, gb): the same scale-shift form
            d2dy = scale_shift(A, Gw, Gb)
        else:
            d2dy = plus(scaled(pa), None if Gw is None else Gw * xhat, Gb)
        out[second_grad_name("dy")] = Bound(fs(d2dy.v), fs(d2dy.e), u)
        d2x_in = Bound(fs(d2x.v), fs(d2x.e), u)
        if fused:
            out[second_grad_name("dh")] = Bound(fs(A.v), fs(A.e), u)
            out[second_grad_name("residual")] = d2x_in
        out[second_grad_name(op.primary)] = d2x_in
        if "weight" in inputs and inputs["weight"] is not None:
            prod = DY * pa
            full = Bound(fs(prod.v), fs(prod.e), u)
            axes = tuple(i for i in range(full.v.ndim) if i not in lay.param_axes)
            out[second_grad_name("weight")] = full.sum(axes) if axes else full
        if "bias" in inputs and inputs["bias"] is not None:
            # identically 0 (the backward does not read the bias); a framework that differentiates
            # through the bias (forward over forward) sums terms that cancel: u * sum |dy r P(a)|
            noise = DY * pa
            full = Bound(np.abs(fs(noise.v)) * u, 0.0, u)
            axes = tuple(i for i in range(full.v.ndim) if i not in lay.param_axes)
            tot = full.v.sum(axis=axes) if axes else full.v
            out[second_grad_name("bias")] = Bound(np.zeros(inputs["bias"].shape), tot, u)
    return out


def scale_norm(spec, inputs, u: float, u_out: float, tangents=None) -> dict:
    """ScaleNorm (docs/ops/scale_norm.md#scale-norm-backward), as :mod:`refnorm.ops.scale_norm` computes it
    (on duals for the arguments in ``tangents``): ``n = sqrt(sum x^2)`` (refnorm scales by a power of two
    first, which is exact and changes no bound), ``r = 1/max(n, eps)``, ``y = g (x r)``; backward
    ``dx = g (r (dy - ind xhat <dy, xhat>))``, ``dg = sum <dy, xhat>``, with ``ind`` the clamp's derivative
    (1 where ``n >= eps``, 0 where the clamp is active, either where rounding can move ``n`` across eps)."""
    tangents = tangents or {}
    X0 = _x(inputs, "x")
    d = X0.shape[-1]
    x = _var(X0, tangents.get("x"), u).reshape(-1, d)
    g0 = np.asarray(inputs["g"], dtype=np.float64)
    g = _arg(inputs, "g", u, tangents).reshape(())
    eps = const(spec.attrs["eps"], u)
    n = (x * x).sum(1, keepdims=True).sqrt()  # (1)-(2)
    c = n.maximum(eps)  # (3) max(n, eps); a tie takes n's tangent (torch's clamp)
    r = saved(1.0 / c, u_out)  # (4) rnorm
    xhat = x * r  # (5)
    y = xhat * g  # (6)
    out = {"y": y.reshape(X0.shape), "rnorm": r.reshape(X0.shape[:-1])}
    if "dy" in inputs:
        dy = Bound(_x(inputs, "dy").reshape(-1, d), 0.0, u)
        cdot = (dy * xhat).sum(1, keepdims=True)
        proj = xhat * cdot
        np_, ep = primal(n), primal(eps)
        active = np_.v < ep.v
        ambiguous = np.abs(np_.v - ep.v) <= np_.e + ep.e

        def clamp(p):
            e = np.where(ambiguous, np.abs(p.v) + p.e, p.e)
            return where(active, Bound(np.zeros_like(p.v), e, u), Bound(p.v, e, u))

        proj = piecewise(clamp, proj)
        out["dx"] = ((r * (dy - proj)) * g).reshape(X0.shape)
        out["dg"] = cdot.sum((0, 1)).reshape(g0.shape)
    return out


PROGRAMS = {"proxy_norm": proxy_norm, "gn_plus": gn_plus, "weight_standardization": weight_standardization,
            "batch_layer_norm": batch_layer_norm,
            "dyt": dyt,
            "scale_norm": scale_norm,
            "normalize": normalize,
            "filter_response_norm": filter_response_norm,
            "local_response_norm": local_response_norm,
            "weight_norm": weight_norm,
            "evo_norm_b0": evo_norm_b0,
            "evo_norm_s0": evo_norm_s0,
            "batch_renorm": batch_renorm,
            "ada_layer_norm": ada_layer_norm,
            "adaptive_instance_norm": adaptive_instance_norm,
            }



def bounds(spec, inputs: dict, u: float, u_out: float) -> dict[str, Bound]:
    """Every output of a seed-layer case as a :class:`Bound` at unit roundoff ``u``."""
    with np.errstate(all="ignore"):
        return PROGRAMS[spec.op](spec, inputs, u, u_out)


def _tangent_bound(d, shape) -> Bound | None:
    """The tangent of a program's output as a Bound of ``shape``; None where it is structurally 0."""
    if not isinstance(d, Dual) or d.t is None:
        return None
    return Bound(np.broadcast_to(d.t.v, shape), np.broadcast_to(d.t.e, shape), d.u)


def seed_derivatives(spec, inputs: dict, u: float, u_out: float) -> dict[str, Bound]:
    """Forward mode (``t<output>``) and second order (``d2<key>``) of a
    seed-layer case, by running its program (:data:`PROGRAMS`) on :class:`Dual`
    numbers:

    * with the tangents ``t<argument>`` as the directions: ``ty`` is the
      tangent of ``y``;
    * with ``dy`` and the second-order cotangents ``dd<argument>`` as the
      directions: for ``S = <dy, y>`` the backward's ``d<p>`` is ``dS/dp``, and
      the double backward's result for ``p``, ``d/dp <dd, dS/d.>``, is the
      derivative of ``d<p>`` along ``dd`` (the Hessian of S is symmetric), so
      ``d2<p>`` is the tangent of the program's ``d<p>``, and ``d2dy``, the
      derivative of ``<dd, J^T dy>`` in ``dy``, is ``J dd``, the tangent of ``y``.

    A ``d2<p>`` that is identically 0 (``d2bias`` of GN+ and BLN: the backward
    does not read the bias) gets the round-off of a framework that
    differentiates through it anyway, as :func:`derivatives` gives ``d2bias``:
    ``u sum |dy d2dy|`` over the positions that share the parameter element."""
    op = get(spec.op)
    prog = PROGRAMS[spec.op]
    given = [a for a in op.differentiable if a in inputs and inputs[a] is not None]
    x_shape = np.shape(inputs[op.primary])
    out = {}
    with np.errstate(all="ignore"):
        tangents = {a: inputs[tangent_name(a)] for a in given if tangent_name(a) in inputs}
        if tangents:
            fwd = {k: v for k, v in inputs.items() if k not in op.cotangents}  # no backward needed
            res = prog(spec, fwd, u, u_out, tangents)
            for o in op.outputs:
                t = _tangent_bound(res[o], x_shape)
                out[tangent_name(o)] = t if t is not None else Bound(np.zeros(x_shape), 0.0, u)
        cot = {a: inputs[second_cotangent_name(a)] for a in given if second_cotangent_name(a) in inputs}
        if cot and any(c in inputs for c in op.cotangents):
            res = prog(spec, inputs, u, u_out, cot)
            for o in op.outputs:
                t = _tangent_bound(res[o], x_shape)
                out[second_grad_name(grad_name(o))] = t if t is not None else Bound(np.zeros(x_shape), 0.0, u)
            dy = _x(inputs, op.cotangents[0])
            noise = np.abs(dy * out[second_grad_name(op.cotangents[0])].v) * u
            lay = layout(spec)
            for a in given:
                shape = np.shape(inputs[a])
                t = _tangent_bound(res[grad_name(a)], shape)
                if t is None:  # identically 0: the round-off of terms that cancel
                    if tuple(shape) == tuple(x_shape):
                        tot = noise
                    elif tuple(shape) == lay.param_shape:
                        tot = lay.param_sum(noise)
                    else:
                        tot = np.full(shape, noise.sum())
                    t = Bound(np.zeros(shape), tot, u)
                out[second_grad_name(a)] = t
    return out


__all__ = ["Bound", "Dual", "LIB_ULPS", "PROGRAMS", "activation", "activation2", "bounds", "derivatives", "quantiles",
           "seed_derivatives"]
