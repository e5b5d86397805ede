"""Input construction for the golden cases: bit-reproducible on any machine.

Random numbers
--------------
Every tensor draws from its own stream, the raw 64-bit output of
``numpy.random.PCG64(numpy.random.SeedSequence([seed, k]))``, where ``seed``
is the case seed and ``k`` the tensor's stream number (:func:`stream`: the
fixed numbers of :data:`STREAMS`, which never change, or, for any other
tensor name, ``1000 + crc32(name) % 2**20``).
Only the *BitGenerator* output is used, which NumPy keeps stable across
versions; NumPy's distributions (``standard_normal`` ...) and transcendental
functions are never used, since neither is promised stable across versions
or CPUs.  Raw words ``r`` are mapped with integer / IEEE-exact arithmetic:

* uniform on [0, 1): ``(r >> 11) * 2**-53`` (exact);
* approximately standard normal (Irwin-Hall, 12 terms):
  ``z = (sum of (r_j >> 32) over 12 consecutive words) * 2**-32 - 6``; the sum
  is an exact integer below 2**36 and the scaling and subtraction are exact,
  so z is exact (mean 0, variance 1, support [-6, 6]);
* integers in [0, m): ``r % m``.

Values are then formed in float64 (``loc + scale * z`` is two correctly
rounded IEEE operations, never fused) and rounded once to the storage dtype
with round-to-nearest-even (:func:`round_to`; bfloat16 by an exact
power-of-two quantisation because ``ml_dtypes`` converts float64 via float32,
which double-rounds).

Tensor recipes (``recipe[name] = {"kind": ..., params}``)
----------------------------------------------------------
``normal``      ``loc + scale * z``
``uniform``     ``low + (high - low) * u``
``constant``    ``value`` everywhere
``values``      an explicit nested list (exact in the dtype, or rounded once)
``exact_x``     benchdnn-style constructed input (E28): see :func:`exact_sets`
``exact_running_mean`` / ``exact_running_var``  per channel ``±2**a`` and ``4**k - eps``
``pow2_gamma``  ``2**(c % 7) / 8`` at flat index c (benchdnn)
``pow2_beta``   ``((c % 3) - 1) * 2**(c % 7) / 512`` (benchdnn)
``pm_pow2``     ``±2**e``, e uniform in ``exp = [lo, hi]``, random sign
``cancel_bias`` (bias only) ``-weight * xhat`` of reduction set ``row`` rounded to
                the dtype: y of that set is ~0 (E14, output cancellation); for
                an op whose affine is per element of a set (LayerNorm-like)

Any recipe may add ``"set": [[index, value], ...]`` (values are numbers or the
strings ``"nan"``, ``"inf"``, ``"-inf"``; applied after rounding),
``"scale_pow2": e`` (multiply by ``2**e`` after rounding; exact) and
``"dtype": d`` (the tensor is stored in ``d`` instead of the case dtype: a
model's float32 weights with bfloat16 activations; not for the normalized
input or the cotangents, which define the case dtype).

In the chain of :mod:`refnorm.golden` this module comes after the dtype facts
(:mod:`refnorm.golden.dtypes`) and before the catalogue, which records
:data:`GENERATOR` in every case.  Where an input's reduction sets lie comes
from the op's own layout (:attr:`refnorm.OpSpec.layout`).
"""

from __future__ import annotations

import bisect
import math

import numpy as np

import zlib

from .._registry import get
from .calls import call_arguments
from .._dtypes import round_to  # re-exported: the rounding of every stored input
from .dtypes import PRECISION

GENERATOR = "pcg64-seedsequence([seed,stream])-raw; uniform=(r>>11)*2^-53; normal=irwin-hall-12 (r>>32); v1"

#: recipes that read other tensors of the case (drawn after the others)
DEPENDENT_KINDS = ("cancel_bias",)

STREAMS = {"x": 0, "weight": 1, "bias": 2, "running_mean": 3, "running_var": 4, "dy": 5,
           # the seed layers' own inputs (new streams: the ones above never change)
           "proxy_shift": 6, "proxy_scale": 7, "mix": 8, "gain": 9, "moving_batch_mean": 10,
           "moving_batch_var": 11, "moving_feature_mean": 12, "moving_feature_var": 13}


def tensor_stream(name: str) -> int:
    """The stream number of the tensor ``name``: :data:`STREAMS`, or, for a
    name not listed there (a new op's input), ``1000 + crc32(name) % 2**20``,
    so that a new op needs no entry and no listed stream ever moves."""
    if name in STREAMS:
        return STREAMS[name]
    return 1000 + zlib.crc32(name.encode("utf-8")) % (1 << 20)


# ----------------------------------------------------------------------------- random streams


def raw(seed: int, stream: int, n: int) -> np.ndarray:
    """``n`` raw 64-bit words of the (seed, stream) generator."""
    bg = np.random.PCG64(np.random.SeedSequence([int(seed), int(stream)]))
    return bg.random_raw(int(n)).astype(np.uint64)


def uniform(seed: int, stream: int, n: int) -> np.ndarray:
    """Exact uniforms on [0, 1): ``(r >> 11) * 2**-53``."""
    return (raw(seed, stream, n) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def normal(seed: int, stream: int, n: int) -> np.ndarray:
    """Irwin-Hall approximately-normal values, exact in float64."""
    r = (raw(seed, stream, 12 * n) >> np.uint64(32)).reshape(n, 12)
    s = r.sum(axis=1, dtype=np.uint64)  # exact integer < 12 * 2**32
    return s.astype(np.float64) * 2.0 ** -32 - 6.0


def integers(seed: int, stream: int, n: int, m: int) -> np.ndarray:
    return (raw(seed, stream, n) % np.uint64(m)).astype(np.int64)


# ----------------------------------------------------------------------------- rounding


# ----------------------------------------------------------------------------- reduction structure


def reduction_view(op: str, shape, attrs: dict):
    """(to_sets, from_sets): maps between the op's normalized input of
    ``shape`` and its (num_sets, K) view (the op's :attr:`OpSpec.layout`)."""
    spec = get(op)
    lay = spec.layout_of({spec.primary: tuple(shape)}, attrs)
    return lay.to_sets, lay.from_sets


# ----------------------------------------------------------------------------- exact construction


def _solve_deviations(K: int, T: int, start: np.ndarray) -> np.ndarray:
    """Integers D (length K) with sum(D) == 0 and sum(D**2) == K*T, starting
    from ``start`` and repaired by moves (D_i += 1, D_j -= 1), which keep the
    sum and change sum(D**2) by 2*(D_i - D_j + 1).  Deterministic.

    Each move wants ``D_i - D_j == want = delta/2 - 1`` (``delta`` the
    missing part of sum(D**2)) and takes, among the distinct values present:

    * an exact pair ``(a, a - want)``, the one with the smallest ``a``
      (``a == b`` needs two entries holding it);
    * else a partial step in the direction of ``delta`` that does not
      overshoot: the difference closest to ``want`` (``0 <= diff < want``
      when growing, ``want < diff < -1`` when shrinking), smallest ``a``
      among equals;
    * else the extremes (largest and smallest value) pushed apart.

    ``D_i`` is the first entry holding ``a``, ``D_j`` the first other entry
    holding ``b``.  At most 5000 moves; the values are tracked incrementally
    (entries per value, sum of squares), so a move costs O(distinct values).
    The moves are a function of D alone, so a D seen before means they cycle
    and can never reach the target: that is detected (Brent's method on an
    exactly checked state) and reported as the 5000-move limit would be.
    """
    D = [int(v) for v in start]
    s = sum(D)
    i = 0
    while s != 0:  # make the sum zero
        step = -1 if s > 0 else 1
        D[i % K] += step
        s += step
        i += 1
    target = K * T
    pos: dict[int, list[int]] = {}  # value -> ascending indices holding it
    for idx, d in enumerate(D):
        pos.setdefault(d, []).append(idx)
    sq = sum(d * d for d in D)
    coef = [int(c) for c in np.random.default_rng(0).integers(1, 1 << 60, size=K, dtype=np.int64)]
    h = sum(c * d for c, d in zip(coef, D))  # a hash of D, kept up to date by the moves
    saved_h, saved, lam, power = h, list(D), 0, 1
    for _ in range(5000):
        delta = target - sq
        if delta == 0:
            return np.array(D, dtype=np.int64)
        if delta % 2:
            raise ValueError("parity: K*T must be even when sum(D) == 0")
        want = delta // 2 - 1  # needed D_i - D_j
        vals = sorted(pos)
        best = None
        for a in vals:  # exact pair, smallest a
            b = a - want
            if b in pos and (a != b or len(pos[a]) >= 2):
                best = (a, b)
                break
        if best is None:  # partial step: the admissible difference closest to want
            diffs = [a - b for a in vals for b in vals if a != b or len(pos[a]) >= 2]
            ok = [d for d in diffs if (0 <= d < want if delta > 0 else want < d < -1)]
            if ok:
                dbest = max(ok) if delta > 0 else min(ok)
                a = next(a for a in vals if a - dbest in pos and (dbest != 0 or len(pos[a]) >= 2))
                best = (a, a - dbest)
        if best is None:  # widen: push the extremes apart
            a, b = vals[-1], vals[0]
            best = (a, b) if delta > 0 else (b, a)
        a, b = best
        ia = pos[a][0]
        ib = next(j for j in pos[b] if j != ia)
        for idx, old, new in ((ia, a, a + 1), (ib, b, b - 1)):
            D[idx] = new
            sq += new * new - old * old
            pos[old].remove(idx)
            if not pos[old]:
                del pos[old]
            bisect.insort(pos.setdefault(new, []), idx)
        h += coef[ia] - coef[ib]
        if h == saved_h and D == saved:
            break  # a cycle: the target is unreachable
        lam += 1
        if lam == power:
            saved_h, saved, lam, power = h, list(D), 0, 2 * power
    raise ValueError(f"could not construct deviations for K={K}, T={T}")


def exact_sets(num_sets: int, K: int, dtype: str, params: dict, seed: int, stream: int, *,
               center: bool = True, eps: float = 1 / 16):
    """benchdnn-style reduction sets (E28), each ``m + q*D``:

    * ``var + eps = 4**k`` with k from ``var_plus_eps_exp4`` and ``eps = 1/16``,
      so ``rstd = 2**-k`` is exact; q = 2**-2 (K even) or 2**-3 (K odd), and the
      integers D satisfy ``sum D = 0`` and ``sum D**2 = K*T``,
      ``T = (4**k - eps) / q**2``, so mean = m and var = T q**2 exactly;
    * ``m = ±2**a``, a from ``mean_exp`` (RMSNorm: m = 0, so the mean square
      is the variance);
    * a candidate (a, k) is used only if every partial sum of x and of
      (x - m)**2, in any order, is an integer multiple of the quantum below
      2**p (p = the dtype's precision): ``K*(|m|/q + max|D|) <= 2**p`` and
      ``sum D**2 <= 2**p``.  Then sums, mean, variance and rstd are exact in
      that dtype in every summation order.

    Returns (x_sets float64 (num_sets, K), means, var_plus_eps) per set.
    """
    p = PRECISION[dtype]
    e = 2 if K % 2 == 0 else 3
    q = 2.0 ** -e
    kexps = list(params.get("var_plus_eps_exp4", [-1, 0, 1]))
    aexps = list(params.get("mean_exp", [-2, 4])) if center else [None]
    r = integers(seed, stream, 3 * num_sets + K * num_sets, 1 << 30)
    out = np.empty((num_sets, K))
    means, vpe = np.empty(num_sets), np.empty(num_sets)
    for s in range(num_sets):
        ks = kexps[r[3 * s] % len(kexps):] + kexps[: r[3 * s] % len(kexps)]
        D = None
        for k in ks:  # first feasible variance target, in a seed-rotated order
            T_f = (4.0 ** k - eps) / (q * q)
            if T_f != int(T_f) or (K * int(T_f)) % 2 or K * int(T_f) > 2 ** p:
                continue
            T = int(T_f)
            A = max(1, round(math.sqrt(3 * T)))  # uniform on [-A, A]: E[D**2] ~ T
            start = r[3 * num_sets + s * K: 3 * num_sets + (s + 1) * K] % (2 * A + 1) - A
            try:
                cand = _solve_deviations(K, T, start)
            except ValueError:
                continue
            D, kk = cand, k
            break
        if D is None:
            raise ValueError(f"exact_x: no feasible variance target for K={K} in {dtype} "
                             f"(candidates 4**k, k in {kexps}); use a smaller reduction set")
        maxd = int(np.max(np.abs(D)))
        m = 0.0
        if center:
            lo, hi = aexps
            span = list(range(lo, hi + 1))
            rot = r[3 * s + 1] % len(span)
            for a in span[rot:] + span[:rot]:
                if K * (2.0 ** a / q + maxd) <= 2 ** p:
                    m = 2.0 ** a
                    break
            else:
                raise ValueError(f"exact_x: no feasible mean for K={K} in {dtype}")
            if r[3 * s + 2] % 2:
                m = -m
        out[s] = m + q * D
        means[s] = m
        vpe[s] = 4.0 ** kk
    return out, means, vpe


# ----------------------------------------------------------------------------- building a tensor


def _special(v):
    if isinstance(v, str):
        return {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[v]
    return float(v)


def make_tensor(name: str, shape, r: dict, dtype: str, seed: int, op: str, attrs: dict,
                built: dict) -> np.ndarray:
    """Build one input tensor (stored in ``dtype``) from its recipe ``r``."""
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    stream = tensor_stream(name)
    kind = r["kind"]
    if kind == "normal":
        v = r["loc"] + r["scale"] * normal(seed, stream, n)
    elif kind == "uniform":
        v = r["low"] + (r["high"] - r["low"]) * uniform(seed, stream, n)
    elif kind == "constant":
        v = np.full(n, float(r["value"]))
    elif kind == "values":
        v = np.array(r["values"], dtype=np.float64).reshape(-1)
        if v.size != n:
            raise ValueError(f"{name}: {v.size} values for shape {shape}")
    elif kind == "exact_x":
        to_sets, from_sets = reduction_view(op, shape, attrs)
        ns, K = to_sets(np.zeros(shape)).shape
        sets, _, _ = exact_sets(ns, K, dtype, r, seed, stream, center=get(op).center,
                                eps=attrs.get("eps", 1 / 16))
        v = from_sets(sets).reshape(-1)
    elif kind == "exact_running_mean":
        lo, hi = r.get("mean_exp", [-2, 2])
        ii = integers(seed, stream, 2 * n, 1 << 30)
        v = np.array([(-1.0 if ii[2 * c + 1] % 2 else 1.0) * 2.0 ** (lo + ii[2 * c] % (hi - lo + 1))
                      for c in range(n)])
    elif kind == "exact_running_var":
        ks = r.get("var_plus_eps_exp4", [-1, 0, 1])
        ii = integers(seed, stream, n, 1 << 30)
        v = np.array([4.0 ** ks[ii[c] % len(ks)] - attrs["eps"] for c in range(n)])
    elif kind == "pow2_gamma":
        c = np.arange(n)
        v = np.ldexp(1.0, c % 7) / 8
    elif kind == "pow2_beta":
        c = np.arange(n)
        v = ((c % 3) - 1) * np.ldexp(1.0, c % 7) / 512
    elif kind == "pm_pow2":
        lo, hi = r["exp"]
        ii = integers(seed, stream, 2 * n, 1 << 30)
        ex = lo + ii[0::2] % (hi - lo + 1)
        sg = np.where(ii[1::2] % 2 == 1, -1.0, 1.0)
        v = sg * np.ldexp(1.0, ex)
    elif kind == "cancel_bias":
        v = _cancel_bias(shape, r, dtype, op, attrs, built)
    else:
        raise ValueError(f"{name}: unknown recipe kind {kind!r}")
    out = round_to(np.asarray(v, dtype=np.float64).reshape(shape), dtype)
    if "scale_pow2" in r:
        out = round_to(out.astype(np.float64) * 2.0 ** int(r["scale_pow2"]), dtype)
    for idx, val in r.get("set", []):
        out[tuple(idx)] = _special(val)
    return out


def _cancel_bias(shape, r, dtype, op, attrs, built):
    """bias = -(weight * xhat) of one reduction set (LayerNorm: a row), rounded
    to the dtype: y there is ~0 while |w*xhat| is O(1) (E14).  Needs an affine
    per element of a set (``P = 1, T = 1``), so that the bias is one set long."""
    spec = get(op)
    lay = spec.layout_of({spec.primary: built[spec.primary].shape}, attrs)
    if lay.affine is None or lay.affine[0] != 1 or lay.affine[2] != 1:
        raise ValueError(f"cancel_bias needs an affine per element of a reduction set (LayerNorm-like); "
                         f"{op} has affine (P, Q, T) = {lay.affine}")
    args, kwargs = call_arguments(op, {k: v for k, v in built.items() if k != "bias"}, attrs)
    y = spec.forward(*args, **kwargs)
    row = int(r.get("row", 0))
    return -lay.to_sets(y)[row].reshape(shape)
