r"""The tolerance model of the golden corpus: derived from rounding-error
analysis, never guessed.

A backend under test computes in the case dtype d.  We assume what a correct
backend does (PyTorch CPU does it): it reads d, **accumulates in float32 for
the half types** (float64 for float64, float32 for float32), and rounds each
output once to d.  Unit roundoffs: ``u_out = 2^-p(d)`` (p = 53, 24, 11, 8 for
float64, float32, float16, bfloat16) and ``u_acc = 2^-53`` (float64) or
``2^-24`` (everything else).  refnorm itself is within ~1 float64 ulp
(double-double kernels), which adds ``u_ref = 2^-52`` to every relative
tolerance.

Sums.  A sum of K terms in any order has error ``<= f(K) u_acc sum|t_i|``.  The
worst-case (deterministic) bound has f = K - 1, far above what any real
summation shows; we use the probabilistic bound of Higham & Mary (SIAM J.
Sci. Comput. 41(5), 2019; sharper form 2020) with lambda = 6:
``f(K) = 6 sqrt(K) + 1``, exceeded with probability below ``2 exp(-18) ~ 3e-8``
per sum under their model of independent rounding errors.  (Pairwise/cascade
sums, as in PyTorch, are much better; sequential float32 loops are covered.)

Per case, from the stored inputs and the float64 statistics (sets of K
elements, ``rstd = 1/sqrt(var + eps)``):

* conditioning ``kappa = max over sets of mean|x| * rstd`` (``|mean|/std``,
  eps-regularised; 0 for RMSNorm; with running statistics
  ``max(mean|x|, |running_mean|) * rstd`` per channel, because the usual
  scale-shift form ``x*(w*rstd) + (b - running_mean*w*rstd)`` rounds relative
  to |x|, not |x - running_mean|);
* mean error, in units of the set's std:
  ``eps_m = (f(K) + 4) u_acc kappa + u_out kappa`` -- the sum, the centring or
  scale-shift roundings, and a backend that rounds the *saved* mean to d
  before normalizing or back-propagating (PyTorch CPU does this for
  float16/bfloat16 BatchNorm/InstanceNorm forwards and LayerNorm backwards;
  ONNX ``stash_type`` allows it);
* relative rstd error: the variance has relative error
  ``(f(K) + 3) u_acc (1 + kappa)`` (the updating/Welford algorithms used by
  PyTorch and cuDNN are kappa-linear: Chan, Golub & LeVeque 1983) plus, for a
  mean error delta, ``((f(K) + 4) u_acc kappa)^2`` (the centred sum of squares
  grows by K delta^2); halved by the square root; plus the sqrt/division
  roundings and a saved rstd rounded to d:
  ``eps_r = ((f(K)+3) u_acc (1+kappa) + ((f(K)+4) u_acc kappa)^2)/2 + 2 u_acc + u_out``
  (running statistics: ``eps_r = 3 u_acc + u_out``).

Element i passes iff ``|a_i - e_i| <= atol + rtol * s_i`` with the scale s_i:

=========  ==================================================  ====================================================
output     scale s_i                                           tolerance (c = 2, a safety factor for 2nd-order terms)
=========  ==================================================  ====================================================
y          ``|w xhat| + |b|`` (tensor; ``|y|`` without bias)    rtol = c (u_out + eps_r + 4 u_acc) + u_ref;
                                                               atol = c max|w| eps_m
mean       ``mean|x|`` of the set (tensor)                     rtol = c ((f(K) + 1) u_acc + u_out) + u_ref
rstd       ``|rstd|``                                          rtol = c (eps_r + u_out) + u_ref
dx         ``rstd (|g| + mean|g| + |xhat| mean|g xhat|)``,     rtol = c (u_out + (f(K) + 6) u_acc + 2 eps_r
           g = w dy (tensor; RMSNorm without mean|g|;          + eps_m (1 + max|xhat|)) + u_ref
           running statistics: ``rstd |g|``)
dweight    ``sum |dy xhat|`` over the M reduced positions      rtol = c (u_out + (f(M) + 2) u_acc + eps_r) + u_ref;
           (tensor)                                            atol = c eps_m max(sum|dy|)
dbias      ``sum |dy|`` (tensor)                               rtol = c (u_out + f(M) u_acc) + u_ref
new running mean  ``(1-m)|old| + m mean|x|`` (tensor)          rtol = c (u_out + (f(K) + 3) u_acc) + u_ref
new running var   ``|expected|`` (sum of non-negative terms)   rtol = c (u_out + (f(K) + 5) u_acc) + u_ref;
                                                               atol = c m (f(K) u_acc max mean|x|)^2 K/(K-1)
=========  ==================================================  ====================================================

Every tolerance of a value case also has ``atol += c 2^(emin - p)``: below the
smallest normal number of d an output's final rounding is absolute, half the
subnormal spacing, not ``u_out`` relative (a float16 ``y`` of 7e-6 rounds by up
to 3e-8, 0.4 % of it).

Each term is a first-order bound: the output rounding (u_out relative to the
output, which is at most s_i); the input rounding of intermediate
element-wise operations (a few u_acc); the sums (f u_acc relative to the sum
of magnitudes, which is exactly what the scale tensors hold); and the
propagated statistic errors (eps_m in units of the std, so relative to |w|,
and eps_r relative to every rstd-proportional term).  Because the scales are
sums of magnitudes, the check stays meaningful where the output cancels
(E14: y = w xhat + b ~ 0; dx ~ 0).

Exact tier (E28): inputs are constructed so that mean, var, rstd, dbias and
dweight are exactly representable and independent of the summation order in
d; they are compared bitwise (``atol = rtol = 0, ulp = 0``); y and dx, whose
exact value needs one final rounding, within 1 ulp of d (``ulp = 1``).
``ulp = k`` admits ``|a - e| <= k * spacing_d(e)`` (spacing_d(e): the distance
from |e| to the next larger magnitude in d).

Seed layers (PN, GN+, WS, BLN).  The same backend model (accumulation in
u_acc, one rounding of each output to d, saved statistics possibly rounded to
d, refnorm's own error added), but the bound of each element is derived
mechanically, by running error analysis of the layer's staged formula
(:mod:`refnorm.golden.error_bounds`): every output gets the scale tensor
``s_i = e_i(u_acc + 2^-53) + u_out |e_i|`` (an absolute first-order bound) and
``atol = 0, rtol = c``.  Calibrated by tests/golden/test_tolerance.py (a'): a
float32 PyTorch transcription of each layer passes every case at <= ~0.5 of
its tolerance, and small convention errors (eps moved by 1e-5, a biased std)
fail most cases.

Their forward mode (``ty``) and second order (``d2dy``, ``d2<p>``) are bounded
by running the same programs on dual numbers (a primal and a tangent, each a
running error bound; :class:`refnorm.golden.error_bounds.Dual`): ``ty`` is the
tangent of ``y`` along the tangents ``t<argument>``; with the cotangent ``dy``
and the second-order cotangents ``dd<argument>`` as the direction, ``d2dy`` is
the tangent of ``y`` and ``d2<p>`` the tangent of the gradient ``d<p>`` (the
Hessian of ``<dy, y>`` is symmetric).  Same scale and ``rtol = c``; calibrated
by (a'') of tests/golden/test_tolerance.py: torch.func.jvp and autograd's
double backward of the float32 transcriptions pass at <= 0.5 of the tolerance,
the same with one argument's direction dropped or the statistics detached fail.

In the chain of :mod:`refnorm.golden` the model comes after the catalogue (it
asks which outputs a case has) and the rounding model
(:mod:`refnorm.golden.rounding`: ``u_out``, ``u_acc``, ``f(K)``), with the
running error analysis of :mod:`refnorm.golden.error_bounds`; building a case
(:mod:`refnorm.golden.build`) attaches its tolerances.  The rule that applies a
tolerance, :func:`compare`, lives in :mod:`refnorm.golden.comparison` (it is
importable from here too) so that checking a backend never needs this model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._registry import get, registry
from . import error_bounds as EB
from .catalogue import const_stats, has_running_update, layout, output_shapes, running_factors
from .comparison import Comparison, compare
from .dtypes import EMIN, PRECISION
from .rounding import LAMBDA, acc_roundoff, growth, unit_roundoff

__all__ = ["EXACT_STATS", "LAMBDA", "SAFETY", "U_REF", "Comparison", "acc_roundoff", "compare", "growth",
           "scale_tensor_outputs", "tolerances", "unit_roundoff"]

SAFETY = 2.0  # c: covers second-order terms and the constants of the first-order analysis
U_REF = 2.0 ** -52  # refnorm's own error (<= ~1 float64 ulp)

EXACT_STATS = ("mean", "rstd", "dbias", "dweight")


# ----------------------------------------------------------------------------- structure of a case


def _nanmax(a, default=0.0) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else default


@dataclass
class _Analysis:
    K: int  # reduction length of the statistics (0: running statistics)
    xhat: np.ndarray  # float64, shaped like x
    rstd_full: np.ndarray  # rstd broadcast over x
    set_mean_abs: np.ndarray | None  # mean|x| per set, shaped like the mean output
    kappa: float
    to_sets: object
    from_sets: object


def _normalized(spec, inputs, expected) -> np.ndarray:
    """The values the normalization sees: the primary input, or the output the
    record names (a fused residual add normalizes its rounded sum ``h``)."""
    op = get(spec.op)
    name = op.normalized or op.primary
    return (expected if name in op.outputs else inputs)[name].astype(np.float64)


def _summed_inputs(spec) -> list[str]:
    """The inputs of a fused residual add (the differentiable arguments summed
    into the normalized output): their gradients all equal the cotangent of ``h``."""
    op = get(spec.op)
    if op.normalized is None or op.normalized not in op.outputs:
        return []
    return [a for a in op.differentiable if spec.shapes.get(a) == spec.shapes[op.primary]]


def _analyse(spec, inputs, expected) -> _Analysis:
    x = _normalized(spec, inputs, expected)
    rstd = expected["rstd"]
    if const_stats(spec):
        C = x.shape[1]
        shape = [1] * x.ndim
        shape[1] = C
        rm = inputs["running_mean"].astype(np.float64).reshape(shape)
        r = rstd.reshape(shape)
        with np.errstate(all="ignore"):
            xhat = (x - rm) * r
            axes = tuple(i for i in range(x.ndim) if i != 1)
            ch_abs = np.abs(x).mean(axis=axes) if x.size else np.zeros(C)
            # scale-shift form y = x*(w*rstd) + (b - rm*w*rstd): rounding relative to |x|, |rm|
            kappa = _nanmax(np.maximum(ch_abs, np.abs(rm.reshape(C))) * np.abs(rstd.reshape(C)))
        return _Analysis(0, xhat, np.broadcast_to(r, x.shape), None, kappa, None, None)
    lay = layout(spec)
    to_sets, from_sets = lay.to_sets, lay.from_sets
    sets = to_sets(x)
    S, K = sets.shape
    r = rstd.reshape(S, 1)
    center = get(spec.op).center
    with np.errstate(all="ignore"):
        if not center:
            xh = sets * r
        else:
            xh = (sets - expected["mean"].reshape(S, 1)) * r
        mean_abs = np.abs(sets).mean(axis=1) if K else np.zeros(S)
        kappa = 0.0 if not center else _nanmax(mean_abs * rstd.reshape(S))
    rfull = from_sets(np.broadcast_to(r, (S, K)).copy())
    lead = expected["rstd"].shape
    return _Analysis(K, from_sets(xh), rfull, mean_abs.reshape(lead), kappa, to_sets, from_sets)


def scale_tensor_outputs(spec) -> list[str]:
    """Outputs whose tolerance uses a stored scale tensor ``<name>.scale``."""
    if spec.tier == "exact" or spec.expect.get("kind") == "error":
        return []
    if get(spec.op).tolerance == "running_error":  # every output: the scale is its running error bound
        return list(output_shapes(spec))
    out = [k for k in output_shapes(spec) if k in derivative_outputs(spec)]  # running error bounds too
    if "bias" in spec.shapes:
        out.append("y")
    if get(spec.op).center:
        out.append("mean")
    if "dy" in spec.shapes:
        out += ["d" + a for a in _summed_inputs(spec)] or ["dx"]
        if "weight" in spec.shapes:
            out.append("dweight")
        if "bias" in spec.shapes:
            out.append("dbias")
    if has_running_update(spec):
        out += [f"new_running_mean_{c}" for c in running_factors(spec)]
    return out


def _tol(atol, rtol, ulp, scale, derivation):
    for v in (atol, rtol):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"tolerance {v} is not finite and >= 0 ({derivation})")
    return {"atol": float(atol), "rtol": float(rtol), "ulp": ulp, "scale": scale, "derivation": derivation}


def _g(x: float) -> str:
    return f"{x:.3g}"


def tolerances(spec, inputs: dict, expected: dict) -> tuple[dict, dict]:
    """(output -> tolerance dict, output -> float64 scale tensor) for a built case.

    Every tolerance of a value case (but a bitwise one) also admits the rounding of an output
    below the smallest normal number of the dtype, which is absolute: half the
    subnormal spacing, ``2^(emin - p)`` (``atol += c 2^(emin - p)``; the relative
    ``u_out |e|`` of the model does not hold there)."""
    tols, scales = _model(spec, inputs, expected)
    if spec.tier != "exact":
        dt = spec.dtype
        under = SAFETY * math.ldexp(1.0, EMIN[dt] - PRECISION[dt])
        for t in tols.values():
            if t["atol"] == 0.0 and t["rtol"] == 0.0:  # bitwise (h, a rounded sum): exact by construction
                continue
            t["atol"] = float(t["atol"] + under)
            t["derivation"] += (f"; atol += c*2^(emin-p) = {_g(under)} (the output rounding below the smallest "
                                f"normal of {dt} is absolute: half the subnormal spacing)")
    return tols, scales


def _model(spec, inputs: dict, expected: dict) -> tuple[dict, dict]:
    if not expected:
        return {}, {}
    if get(spec.op).tolerance == "running_error":
        return _seed_tolerances(spec, inputs, expected)
    derived = {k: v for k, v in expected.items() if k in derivative_outputs(spec)}
    if derived:  # forward mode and second order: running error bounds of their staged formula
        rest = {k: v for k, v in expected.items() if k not in derived}
        tols, scales = _model(spec, inputs, rest)
        t2, s2 = _derivative_tolerances(spec, inputs, expected, derived)
        return {**tols, **t2}, {**scales, **s2}
    dt = spec.dtype
    if spec.tier == "exact":
        tols = {}
        for name in expected:
            if name in EXACT_STATS:
                tols[name] = _tol(0.0, 0.0, 0, "expected",
                                  "exact tier (E28): exactly representable and order-independent in "
                                  f"{dt} by construction; bitwise")
            elif name in ("y", "dx"):
                tols[name] = _tol(0.0, 0.0, 1, "expected",
                                  f"exact tier (E28): all intermediates exact, one final rounding to {dt}: 1 ulp")
            else:
                raise ValueError(f"{spec.id}: no exact-tier tolerance for {name!r}")
        return tols, {}

    c = SAFETY
    uo, ua = unit_roundoff(dt), acc_roundoff(dt)
    A = _analyse(spec, inputs, expected)
    const = const_stats(spec)
    lay = layout(spec)
    K = A.K
    fK = growth(K)
    # mean error in units of the std: the sum (f(K)), the centring / scale-shift
    # roundings (4 u_acc), and a backend that rounds the saved mean to d (u_out)
    eps_mc = (fK + 4) * ua * A.kappa
    eps_m = eps_mc + uo * A.kappa
    # rstd: variance error (two-pass: (f+3)u_acc + eps_mc^2; Welford/updating
    # algorithms: (f+3)u_acc*kappa), halved by the sqrt; sqrt/div roundings;
    # a saved rstd rounded to d
    eps_r = 3 * ua + uo if const else 0.5 * ((fK + 3) * ua * (1 + A.kappa) + eps_mc ** 2) + 2 * ua + uo
    common = (f"u_out=2^-{PRECISION[dt]}, u_acc={'2^-53' if dt == 'float64' else '2^-24 (float32 accumulation)'}, "
              f"K={K}, f(K)=6*sqrt(K)+1={_g(fK)}, kappa=max mean|x|*rstd={_g(A.kappa)}, "
              f"eps_m=(f(K)+4)*u_acc*kappa+u_out*kappa={_g(eps_m)}, "
              f"eps_r=((f(K)+3)u_acc(1+kappa)+((f(K)+4)u_acc*kappa)^2)/2+2u_acc+u_out={_g(eps_r)}, c={c:g}")

    x = _normalized(spec, inputs, expected)
    w = inputs.get("weight")
    b = inputs.get("bias")
    w64 = None if w is None else w.astype(np.float64)
    off = get(spec.op).weight_offset
    if w64 is not None and off is not None and spec.attrs.get(off, 0.0) != 0.0:
        w64 = spec.attrs[off] + w64  # the scale offset + weight (exact model input: refnorm rounds it once too)
    wfull = lay.param_view(w64)
    maxw = _nanmax(np.abs(w64), 1.0) if w is not None else 1.0
    if w is not None and w.size == 0:
        maxw = 1.0
    tols, scales = {}, {}
    with np.errstate(all="ignore"):
        # ---- y
        rtol = c * (uo + eps_r + 4 * ua) + U_REF
        atol = c * maxw * eps_m
        d = f"rtol=c*(u_out+eps_r+4u_acc)={_g(rtol)}, atol=c*max|w|*eps_m={_g(atol)}; " + common
        if b is not None:
            wx = A.xhat if wfull is None else wfull * A.xhat
            scales["y"] = np.abs(wx) + np.abs(lay.param_view(b.astype(np.float64)))
            tols["y"] = _tol(atol, rtol, None, "tensor", "scale=|w*xhat|+|b|; " + d)
        else:
            tols["y"] = _tol(atol, rtol, None, "expected", "scale=|y|=|w*xhat|; " + d)
        # ---- statistics
        if "mean" in expected:
            if const:
                scales["mean"] = np.abs(expected["mean"])
                rtol = c * uo + U_REF
                tols["mean"] = _tol(0.0, rtol, None, "tensor",
                                    f"running mean passed through: rtol=c*u_out={_g(rtol)}; " + common)
            else:
                scales["mean"] = A.set_mean_abs.copy()
                rtol = c * ((fK + 1) * ua + uo) + U_REF
                tols["mean"] = _tol(0.0, rtol, None, "tensor",
                                    f"scale=mean|x| of the set; rtol=c*((f(K)+1)u_acc+u_out)={_g(rtol)}; " + common)
        rtol = c * (eps_r + uo) + U_REF
        tols["rstd"] = _tol(0.0, rtol, None, "expected", f"rtol=c*(eps_r+u_out)={_g(rtol)}; " + common)
        # ---- backward
        if "dx" in expected:
            dy = inputs["dy"].astype(np.float64)
            g = dy if wfull is None else wfull * dy
            if const:
                scales["dx"] = A.rstd_full * np.abs(g)
                rtol = c * (uo + 4 * ua + eps_r) + U_REF
                tols["dx"] = _tol(0.0, rtol, None, "tensor",
                                  f"running statistics: dx=rstd*w*dy; scale=rstd*|g|; rtol=c*(u_out+4u_acc+eps_r)="
                                  f"{_g(rtol)}; " + common)
            else:
                Kd = max(K, 1)
                ag = A.to_sets(np.abs(g))
                agx = A.to_sets(np.abs(g * A.xhat))
                m_g = ag.sum(axis=1, keepdims=True) / Kd
                m_gx = agx.sum(axis=1, keepdims=True) / Kd
                xh_sets = np.abs(A.to_sets(A.xhat))
                terms = ag + xh_sets * m_gx
                if get(spec.op).center:
                    terms = terms + m_g
                scales["dx"] = A.from_sets(np.ascontiguousarray(terms)) * A.rstd_full
                X = _nanmax(np.abs(A.xhat))
                rtol = c * (uo + (fK + 6) * ua + 2 * eps_r + eps_m * (1 + X)) + U_REF
                tols["dx"] = _tol(0.0, rtol, None, "tensor",
                                  "scale=rstd*(|g|+mean|g|+|xhat|*mean|g*xhat|), g=w*dy; "
                                  f"rtol=c*(u_out+(f(K)+6)u_acc+2eps_r+eps_m(1+max|xhat|))={_g(rtol)}, "
                                  f"max|xhat|={_g(X)}; " + common)
            summed = _summed_inputs(spec)
            if summed:  # a fused residual add: dx = dresidual = the norm's input gradient + dh
                dh = inputs.get("dh")
                extra = 0.0 if dh is None else np.abs(dh.astype(np.float64))
                scales["dx"] = scales["dx"] + extra
                t = dict(tols["dx"])
                t["derivation"] = ("the gradient of h, the norm's input gradient + dh: its scale + |dh|; "
                                   + t["derivation"])
                for a in summed:
                    tols["d" + a] = dict(t)
                    scales["d" + a] = scales["dx"].copy()
            M = x.size // max(1, (w.size if w is not None else (b.size if b is not None else 1)))
            fM = growth(M)
            if "dweight" in expected:
                scales["dweight"] = lay.param_sum(np.abs(dy * A.xhat))
                sum_dy = lay.param_sum(np.abs(dy))
                rtol = c * (uo + (fM + 2) * ua + eps_r) + U_REF
                atol = c * eps_m * _nanmax(sum_dy)
                tols["dweight"] = _tol(atol, rtol, None, "tensor",
                                       f"scale=sum|dy*xhat| over M={M} positions, f(M)={_g(fM)}; "
                                       f"rtol=c*(u_out+(f(M)+2)u_acc+eps_r)={_g(rtol)}, "
                                       f"atol=c*eps_m*max sum|dy|={_g(atol)}; " + common)
            if "dbias" in expected:
                scales["dbias"] = lay.param_sum(np.abs(dy))
                rtol = c * (uo + fM * ua) + U_REF
                tols["dbias"] = _tol(0.0, rtol, None, "tensor",
                                     f"scale=sum|dy| over M={M} positions, f(M)={_g(fM)}; "
                                     f"rtol=c*(u_out+f(M)u_acc)={_g(rtol)}; " + common)
        # ---- running statistics
        if any(k.startswith("new_running_") for k in expected):
            rm = inputs["running_mean"].astype(np.float64)
            if A.set_mean_abs.shape == rm.shape:  # one set per channel (BatchNorm)
                ch_abs = expected["mean"] * 0 + A.set_mean_abs
            else:  # sets per (sample, channel) (InstanceNorm): the mean over the samples
                ch_abs = np.nanmean(A.set_mean_abs, axis=0) if A.set_mean_abs.shape[0] else np.zeros(rm.shape)
            Kr = K
            fR = growth(Kr)
            max_abs = _nanmax(ch_abs)
            for conv, m in running_factors(spec).items():
                name = f"new_running_mean_{conv}"
                scales[name] = (1 - m) * np.abs(rm) + m * ch_abs
                rtol = c * (uo + (fR + 3) * ua) + U_REF
                tols[name] = _tol(0.0, rtol, None, "tensor",
                                  f"new=(1-m)*old+m*batch_mean, m={m:g}; scale=(1-m)|old|+m*mean|x|; "
                                  f"rtol=c*(u_out+(f(K)+3)u_acc)={_g(rtol)}; " + common)
                name = f"new_running_var_{conv}"
                rtol = c * (uo + (fR + 5) * ua) + U_REF
                bessel = Kr / (Kr - 1) if Kr > 1 else 1.0
                atol = c * m * (fR * ua * max_abs) ** 2 * bessel
                tols[name] = _tol(atol, rtol, None, "expected",
                                  f"new=(1-m)*old+m*batch_var, m={m:g}, all terms >= 0; "
                                  f"rtol=c*(u_out+(f(K)+5)u_acc)={_g(rtol)}, "
                                  f"atol=c*m*(f(K)u_acc max mean|x|)^2*K/(K-1)={_g(atol)}; " + common)
        if "h" in expected and _summed_inputs(spec):
            tols["h"] = _tol(0.0, 0.0, 0, "expected",
                             "h = x + residual rounded once to residual_dtype: exactly determined; bitwise")
    scales = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in scales.items()}
    for k in list(scales):
        if tols[k]["scale"] != "tensor":
            del scales[k]
    return tols, scales


# ----------------------------------------------------------------------------- the seed layers

#: the staged formula of each running-error program, as the derivation text names it
FORMULAS = {
    "proxy_norm": "u = w x + b, z = phi(u); proxy Y = beta~ + (1 + gamma~) q, P = phi(w Y + b); m = mean P, "
                  "v = mean (P - m)^2, s = 1/sqrt(v + eps); y = (z - m) s; backward as in docs/ops/proxy_norm.md#pn-backward",
    "gn_plus": "GN and BN0 as (t - mean)/(std_unbiased + eps) chained by the variant, z = lam a + (1 - lam) b, "
               "lam = 1/(1 + exp(-mix)), y = z w + b; backward of ops/gn_plus.py (N^T maps)",
    "weight_standardization": "mean, wc = W - mean, var = sum wc^2/(n - delta), scale r by the eps mode, "
                              "W_hat = gain wc r; backward dW = r (gd - mean gd) + c3 wc, dgain = r sum dy wc",
    "batch_layer_norm": "two-pass batch and feature statistics (or the moving ones), xhat_B, xhat_F, "
                        "w_F = 1/B - o, w_B = 1 - (1/B + o), y = gamma (w_F xhat_F + w_B xhat_B)/sqrt(d) + beta; "
                        "backward as two normalization backwards (docs/ops/batch_layer_norm.md#bln-backward)",
    "dyt": "z = alpha x, t = tanh(z) (library, L ulp), s = 1 - t^2 from the rounded t, y = t w + b; backward "
           "q = w dy s, dx = q alpha, dalpha = sum q x, dw = sum dy t, db = sum dy",
    "scale_norm": "n = sqrt(sum x^2), r = 1/max(n, eps), y = g x r; backward dx = g r (dy - ind xhat <dy, xhat>), "
                  "dg = sum <dy, xhat>, ind = 0 where the clamp is active",
    "normalize": "N = ||x||_p along dim (sum |x|^p by pow, then ^(1/p); p = inf: max |x|), d = max(N, eps), "
                 "y = x / d; backward dx = (dy - [N >= eps] c g) / d, c = sum dy y, g = dN/dx",
    "filter_response_norm": "nu2 = mean x^2 per (n, c), r = 1/sqrt(nu2 + eps), z = w x r + b, y = max(z, tau); "
                            "backward dz = mz dy (TLU mask, 1/2 at a tie), dx = r (w dz - xhat mean(w dz xhat)), "
                            "dweight = sum dz xhat, dbias = sum dz, dtau = sum (1 - mz) dy",
    "local_response_norm": "b = k + alpha (sum of x^2 over the window of size channels) / size, div = b^beta "
                           "(library pow), y = x / div; backward dx = dy / div - (2 alpha beta / size) x "
                           "sum over the windows holding the channel of dy y / b",
    "weight_norm": "n = sqrt(sum v^2) over every dim but dim (the whole tensor for dim -1), w = v (g / n); "
                   "backward s = sum dy v, dg = s / n, dv = (g / n) (dy - v s / n^2)",
    "evo_norm_b0": "y = w x / max(sqrt(var_c + eps), v x + sqrt(s2_nc + eps)) + b, two-pass variances; "
                   "backward of docs/ops/evo_norm_b0.md#evo-b0-backward",
    "evo_norm_s0": "two-pass group mean and biased var per (n, g), r = 1/sqrt(var + eps), sg = sigmoid(v x), "
                   "z = x sg r, y = w z + b; backward dx = r (w dy sp - xhat mean(w dy z)), sp = sg + v x sg (1 - sg), "
                   "dweight = sum dy z, dbias = sum dy, dv = sum w dy r x^2 sg (1 - sg)",
    "batch_renorm": "mu_B, var_B (biased) per channel, rstd = 1/sqrt(var_B + eps), sigma = sqrt(running_var + eps), "
                    "r = clip((1/rstd)/sigma, 1/r_max, r_max), d = clip((mu_B - running_mean)/sigma, -d_max, d_max) "
                    "(constants), y = w ((x - mu_B) rstd r + d) + b (eval: BN inference); backward "
                    "dx = rstd (dy - mean dy - xhat0 mean(dy xhat0)) w r, dweight = sum dy xhat, dbias = sum dy; "
                    "running update f mean + (1 - f) old (unbiased variance)",
    "ada_layer_norm": "LayerNorm without affine per row (two-pass mean, biased var, r = 1/sqrt(var + eps)), "
                      "y = xhat (1 + scale) + shift per sample; backward g = (1 + scale) dy, "
                      "dx = r (g - mean g - xhat mean(g xhat)), dscale = sum_mid dy xhat, dshift = sum_mid dy",
    "adaptive_instance_norm": "per (n, c) mean and sigma = sqrt(unbiased var + eps) of x (M) and of style (Ms), "
                              "y = s_std (x - mean) rstd + s_mean; backward A = sum dy, B = sum dy xhat, "
                              "dx = rstd s_std (dy - A/M - xhat B/(M-1)), "
                              "dstyle = A/Ms + (s - s_mean) B/((Ms-1) s_std)",
}


def _check_programs() -> None:
    """Every op whose tolerance route is ``"running_error"`` has a program in
    :mod:`refnorm.golden.error_bounds` and its formula here; a registered op
    without them is refused when the tolerance model is imported."""
    for name, spec in registry().items():
        if spec.tolerance != "running_error":
            continue
        if name not in EB.PROGRAMS:
            raise LookupError(f"op {name!r} has tolerance route 'running_error' but refnorm/golden/error_bounds.py "
                              "has no program for it (PROGRAMS)")
        if name not in FORMULAS:
            raise LookupError(f"op {name!r} has tolerance route 'running_error' but refnorm/golden/tolerance.py "
                              "has no formula for it (FORMULAS)")


_check_programs()


def derivative_outputs(spec) -> set[str]:
    """The names of the forward-mode and second-order outputs an op's case may store."""
    op = get(spec.op)
    return set(op.tangent_outputs) | set(op.second_grad_names())


DERIVATIVE_FORMULA = ("forward mode ty = w r ((t - mean t) - xhat mean(xhat t)) + tw xhat + tb and second order "
                      "d2dy = w r P(a) + gw xhat + gb, d2x = r P(gw dy) - r^2 (beta (a - abar) + alpha (g - gbar) "
                      "+ (mean(a g) - abar gbar - 3 alpha beta) xhat), d2weight = sum dy r P(a) "
                      "(refnorm/ops/_derivatives.py), on the forward's two-pass statistics")


def _derivative_tolerances(spec, inputs: dict, expected: dict, derived: dict) -> tuple[dict, dict]:
    """Forward-mode and second-order outputs of the standard ops and the
    variants: per-element running error bounds
    (:func:`refnorm.golden.error_bounds.derivatives`), as for the seed layers."""
    if spec.tier == "exact":
        raise ValueError(f"{spec.id}: no exact-tier tolerance for forward mode or second order")
    dt = spec.dtype
    uo, ua = unit_roundoff(dt), acc_roundoff(dt)
    with np.errstate(all="ignore"):
        b = EB.derivatives(spec, inputs, expected, ua + 2.0 ** -53, uo)
    return _bound_tolerances(spec, derived, b, DERIVATIVE_FORMULA)


SEED_DERIVATIVE_FORMULA = ("; ty, d2*: the same program on dual numbers, each tangent operation rounded "
                           "(t(ab) = ta b + a tb, t(a/b) = (ta - (a/b) tb)/b, t(sqrt a) = ta/(2 sqrt a), "
                           "t(phi(u)) = phi' tu, t(phi'(u)) = phi'' tu): ty = t(y) along t<argument>; with dy, "
                           "along dd<argument>: d2dy = t(y), d2<p> = t(d<p>); an identically zero d2<p> "
                           "(GN+, BLN bias): u sum|dy d2dy|")


def _seed_tolerances(spec, inputs: dict, expected: dict) -> tuple[dict, dict]:
    """Seed layers: per-element first-order running error bounds
    (:mod:`refnorm.golden.error_bounds`): ``scale = e(u_acc + 2^-53) +
    u_out |expected|`` and ``rtol = c``.  Forward mode (``ty``) and second
    order (``d2*``) from the same program run on dual numbers
    (:func:`refnorm.golden.error_bounds.seed_derivatives`): ``ty`` is the
    tangent of ``y`` along the tangents ``t<argument>``; with the cotangent
    ``dy``, along the second-order cotangents ``dd<argument>``, ``d2dy`` is the
    tangent of ``y`` and ``d2<p>`` that of the gradient ``d<p>``."""
    if spec.tier == "exact":
        raise ValueError(f"{spec.id}: the seed layers have no exact tier")
    dt = spec.dtype
    uo, ua = unit_roundoff(dt), acc_roundoff(dt)
    derived = {k: v for k, v in expected.items() if k in derivative_outputs(spec)}
    rest = {k: v for k, v in expected.items() if k not in derived}
    b = EB.bounds(spec, inputs, ua + 2.0 ** -53, uo)
    tols, scales = _bound_tolerances(spec, rest, b, FORMULAS[spec.op])
    if derived:
        d = EB.seed_derivatives(spec, inputs, ua + 2.0 ** -53, uo)
        t2, s2 = _bound_tolerances(spec, derived, d, FORMULAS[spec.op] + SEED_DERIVATIVE_FORMULA)
        tols = {k: (t2 if k in derived else tols)[k] for k in expected}
        scales = {k: (s2 if k in derived else scales)[k] for k in expected}
    return tols, scales


def _bound_tolerances(spec, expected: dict, b: dict, formula: str) -> tuple[dict, dict]:
    """``scale = e + u_out |expected|`` per element from the bounds ``b`` (at
    ``u = u_acc + 2^-53``), ``rtol = c``; refuses a bound that does not hold
    refnorm's own value (it would be the bound of another function)."""
    dt = spec.dtype
    uo = unit_roundoff(dt)
    tols, scales = {}, {}
    for name, exp in expected.items():
        if name not in b:
            raise ValueError(f"{spec.id}: no error bound for output {name!r}")
        bd = b[name]
        v = np.broadcast_to(bd.v, exp.shape)
        e = np.broadcast_to(bd.e, exp.shape)
        fin = np.isfinite(exp)
        # self-check: refnorm's value lies within the bound of a plain float64
        # evaluation of the same formula (else the bound is for another function)
        with np.errstate(all="ignore"):
            off = fin & ~(np.abs(v - exp) <= e)
        if np.any(off) or np.any(fin & ~np.isfinite(e)):
            i = np.unravel_index(int(np.argmax(off | (fin & ~np.isfinite(e)))), exp.shape)
            raise ValueError(f"{spec.id}: error bound of {name!r} inconsistent at {i}: refnorm {exp[i]!r}, "
                             f"float64 formula {v[i]!r}, bound {e[i]!r}")
        with np.errstate(all="ignore"):
            sc = np.where(fin, e + uo * np.abs(exp), 0.0)
        scales[name] = np.array(sc, dtype=np.float64, order="C")  # keeps a 0-d shape
        with np.errstate(all="ignore"):
            rel = float(np.max(sc[fin] / np.maximum(np.abs(exp[fin]), np.finfo(float).tiny))) if fin.any() else 0.0
        tols[name] = _tol(0.0, SAFETY, None, "tensor",
                          f"scale = per-element first-order running error bound (Wilkinson; "
                          f"refnorm/golden/error_bounds.py) of {formula}, evaluated with "
                          f"u = u_acc + 2^-53 (u_acc={'2^-53' if dt == 'float64' else '2^-24 (float32 accumulation)'}"
                          f"; + 2^-53: refnorm's float64 evaluation), sums f(K)=6*sqrt(K)+1, library functions "
                          f"{EB.LIB_ULPS:g} ulp, saved statistics rounded to {dt}; plus u_out=2^-{PRECISION[dt]} "
                          f"|e| (output rounding); rtol = c = {SAFETY:g}; max scale/|e| = {_g(rel)}")
    return tols, scales
