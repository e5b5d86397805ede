"""What refnorm's accurate reductions cost, and what they buy.

refnorm carries mean, m2 and rstd in double-double and uses compensated (Sum2)
sums everywhere (refnorm/ops/_sets.py, _lanes.py).  This script writes a *plain*
version of the same kernels -- single double, ordinary summation, still
two-pass, same loop structure, same Numba options (parallel over reduction
sets, fastmath off) -- and reports

1. time ratios refnorm / plain (medians of interleaved runs after warm-up) for
   LayerNorm forward + backward at 4096 x 4096 and BatchNorm-training forward
   at (32, 64, 56, 56), float64, both through refnorm's kernel glue
   (refnorm.ops._normalize: no argument checking) and through the public API;
2. the accuracy of both versions against the exact oracle (tests/oracle.py) on
   the E1 case x = 1e4 + 1e-2 z.

Run: ``python -m benchmarks.accuracy_cost [--repeats 7] [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numba
import numpy as np

import refnorm
from refnorm.ops import _normalize as nz

_OPTS = dict(parallel=True, fastmath=False, error_model="numpy", nogil=True, cache=False)
pjit = numba.njit(**_OPTS)
prange = numba.prange


# ----------------------------------------------------------------------------
# the plain kernels (canonical view x[a, b, s], sets over (a, s) for fixed b;
# affine index k = (b % P) * Q + s // T), as refnorm/ops/_sets.py without
# the double-double parts


@pjit
def plain_moments(x, eps, mean, rstd):
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        s1 = 0.0
        for a in range(A):
            for s in range(S):
                s1 += x[a, b, s]
        m = s1 / n
        q = 0.0
        for a in range(A):
            for s in range(S):
                d = x[a, b, s] - m
                q += d * d
        mean[b] = m
        rstd[b] = 1.0 / math.sqrt(q / n + eps)


@pjit
def plain_forward(x, mean, rstd, weight, bias, P, Q, T, y):
    A, B, S = x.shape
    for b in prange(B):
        m = mean[b]
        r = rstd[b]
        p = b % P
        for a in range(A):
            for q in range(Q):
                k = p * Q + q
                w = weight[k]
                c = bias[k]
                for t in range(T):
                    s = q * T + t
                    y[a, b, s] = w * ((x[a, b, s] - m) * r) + c


@pjit
def plain_backward_input(dy, x, mean, rstd, weight, P, Q, T, dx):
    A, B, S = x.shape
    n = A * S
    for b in prange(B):
        m = mean[b]
        r = rstd[b]
        p = b % P
        s1 = 0.0
        s2 = 0.0
        for a in range(A):
            for q in range(Q):
                w = weight[p * Q + q]
                for t in range(T):
                    s = q * T + t
                    g = w * dy[a, b, s]
                    s1 += g
                    s2 += g * ((x[a, b, s] - m) * r)
        c1 = s1 / n
        c2 = s2 / n
        for a in range(A):
            for q in range(Q):
                w = weight[p * Q + q]
                for t in range(T):
                    s = q * T + t
                    g = w * dy[a, b, s]
                    xhat = (x[a, b, s] - m) * r
                    dx[a, b, s] = r * ((g - c1) - xhat * c2)


_BLOCK = 64


@pjit
def plain_backward_affine(dy, x, mean, rstd, P, Q, T, dweight, dbias):
    A, B, S = x.shape
    nblk = (Q + _BLOCK - 1) // _BLOCK
    for job in prange(P * nblk):
        p = job // nblk
        q0 = (job % nblk) * _BLOCK
        q1 = min(q0 + _BLOCK, Q)
        wacc = np.zeros(q1 - q0)
        bacc = np.zeros(q1 - q0)
        for a in range(A):
            for b in range(p, B, P):
                m = mean[b]
                r = rstd[b]
                for q in range(q0, q1):
                    i = q - q0
                    for t in range(T):
                        s = q * T + t
                        g = dy[a, b, s]
                        wacc[i] += g * ((x[a, b, s] - m) * r)
                        bacc[i] += g
        for q in range(q0, q1):
            dweight[p * Q + q] = wacc[q - q0]
            dbias[p * Q + q] = bacc[q - q0]


# ----------------------------------------------------------------------------
# the four implementations of each workload


def plain_ln_fwd_bwd(x2, w, b, dy2, eps=1e-5):
    rows, D = x2.shape
    x3, dy3 = x2.reshape(1, rows, D), dy2.reshape(1, rows, D)
    mean, rstd = np.empty(rows), np.empty(rows)
    plain_moments(x3, eps, mean, rstd)
    y = np.empty_like(x3)
    plain_forward(x3, mean, rstd, w, b, 1, D, 1, y)
    dx = np.empty_like(x3)
    plain_backward_input(dy3, x3, mean, rstd, w, 1, D, 1, dx)
    dw, db = np.empty(D), np.empty(D)
    plain_backward_affine(dy3, x3, mean, rstd, 1, D, 1, dw, db)
    return y.reshape(rows, D), mean, rstd, dx.reshape(rows, D), dw, db


def refnorm_ln_fwd_bwd(x2, w, b, dy2, eps=1e-5):
    """refnorm's kernels through its glue (what layer_norm + layer_norm_backward run, minus checks)."""
    rows, D = x2.shape
    x3, dy3 = x2.reshape(1, rows, D), dy2.reshape(1, rows, D)
    st = nz.batch_stats(x3, eps)
    y = nz.forward(x3, st, w, b, P=1, Q=D)
    dx, dw, db = nz.backward(dy3, x3, st, w, P=1, Q=D)
    return y.reshape(rows, D), st.mean, st.rstd, dx.reshape(rows, D), dw, db


def public_ln_fwd_bwd(x2, w, b, dy2, eps=1e-5):
    y = refnorm.layer_norm(x2, (x2.shape[1],), w, b, eps)
    g = refnorm.layer_norm_backward(dy2, x2, (x2.shape[1],), w, b, eps)
    return y, g


def plain_bn_fwd(x, w, b, eps=1e-5):
    N, C = x.shape[:2]
    x3 = x.reshape(N, C, -1)
    mean, rstd = np.empty(C), np.empty(C)
    plain_moments(x3, eps, mean, rstd)
    y = np.empty_like(x3)
    plain_forward(x3, mean, rstd, w, b, C, 1, x3.shape[2], y)
    return y.reshape(x.shape)


def refnorm_bn_fwd(x, w, b, eps=1e-5):
    N, C = x.shape[:2]
    x3 = x.reshape(N, C, -1)
    st = nz.batch_stats(x3, eps)
    return nz.forward(x3, st, w, b, P=C, Q=1).reshape(x.shape)


def public_bn_fwd(x, w, b, eps=1e-5):
    return refnorm.batch_norm(x, None, None, w, b, training=True, eps=eps)


# ----------------------------------------------------------------------------


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, run round-robin ``repeats`` times after one warm-up."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def speed(repeats: int, quick: bool):
    rng = np.random.default_rng(0)
    R, D = (1024, 1024) if quick else (4096, 4096)
    x = -2.3 + 0.5 * rng.standard_normal((R, D))
    dy = rng.standard_normal((R, D))
    w, b = 1 + 0.5 * rng.standard_normal(D), 0.3 * rng.standard_normal(D)
    ln = interleaved_medians({"refnorm kernels": lambda: refnorm_ln_fwd_bwd(x, w, b, dy),
                              "refnorm public": lambda: public_ln_fwd_bwd(x, w, b, dy),
                              "plain": lambda: plain_ln_fwd_bwd(x, w, b, dy)}, repeats)
    del x, dy
    shape = (8, 64, 28, 28) if quick else (32, 64, 56, 56)
    xb = -2.3 + 0.5 * rng.standard_normal(shape)
    wb, bb = 1 + 0.5 * rng.standard_normal(64), 0.3 * rng.standard_normal(64)
    bn = interleaved_medians({"refnorm kernels": lambda: refnorm_bn_fwd(xb, wb, bb),
                              "refnorm public": lambda: public_bn_fwd(xb, wb, bb),
                              "plain": lambda: plain_bn_fwd(xb, wb, bb)}, repeats)
    return [(f"layer_norm fwd+bwd {R}x{D}", ln), (f"batch_norm train fwd {shape}", bn)]


def accuracy():
    """Worst errors of plain and refnorm vs the exact oracle on x = 1e4 + 1e-2 z (E1)."""
    from tests import oracle as O

    rng = np.random.default_rng(1)
    R, D = 2, 4096
    x = 1e4 + 1e-2 * rng.standard_normal((R, D))
    dy = rng.standard_normal((R, D))
    w, b = 1 + 0.5 * rng.standard_normal(D), 0.3 * rng.standard_normal(D)
    ref = O.layer_norm(x, (D,), w, b)
    refb = O.layer_norm_backward(dy, x, (D,), w, b)
    m = refb["mag"]
    My = ref["mag"]["|w xhat|"] + ref["mag"]["|b|"]
    Mdx = m["rstd"] * (m["|g|"] + m["mean|g|"] + m["|xhat|"] * m["mean|g xhat|"])
    rows = []
    for name, impl in (("plain", plain_ln_fwd_bwd), ("refnorm", refnorm_ln_fwd_bwd)):
        y, mean, rstd, dx, dw, db = impl(x, w, b, dy)
        rows.append((name, {
            "mean": O.ulps(mean, ref["mean"]).max(),
            "rstd": O.ulps(rstd, ref["rstd"]).max(),
            "y": O.ulps(y, ref["y"], My).max(),
            "dx": O.ulps(dx, refb["x"], Mdx).max(),
            "dweight": O.ulps(dw, refb["weight"], m["sum|dy xhat|"]).max(),
            "dbias": O.ulps(db, refb["bias"]).max(),
        }))
    return (R, D), rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--no-accuracy", action="store_true")
    args = ap.parse_args(argv)
    print(f"numba threads: {numba.get_num_threads()}, repeats: {args.repeats} (medians, interleaved, after warm-up)\n")
    print("| workload | refnorm kernels (s) | refnorm public API (s) | plain (s) | kernels / plain | public / plain |")
    print("|---|---|---|---|---|---|")
    for name, t in speed(args.repeats, args.quick):
        k, p, pl = t["refnorm kernels"], t["refnorm public"], t["plain"]
        print(f"| {name} | {k:.4g} | {p:.4g} | {pl:.4g} | {k / pl:.2f} | {p / pl:.2f} |")
    if not args.no_accuracy:
        (R, D), rows = accuracy()
        print(f"\nAccuracy vs the exact oracle, layer_norm on x = 1e4 + 1e-2 z ({R}x{D}), worst error in ulps:")
        print("(mean, rstd, dbias: ulp of the exact value; y, dx, dweight: ulp of the term magnitude M)\n")
        keys = list(rows[0][1])
        print("| version | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for name, r in rows:
            print(f"| {name} | " + " | ".join(f"{r[k]:.3g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
