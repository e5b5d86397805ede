"""Speed of refnorm's float64 kernels against PyTorch (CPU, float64) and plain NumPy.

One command::

    python benchmarks/bench.py                 # every op, shape and direction
    python benchmarks/bench.py --quick         # 3 repeats, first shape of each group
    python benchmarks/bench.py --ops layer_norm,rms_norm --shapes 4096x4096 --dirs fwd

For LayerNorm and RMSNorm at transformer shapes (rows x hidden) and BatchNorm
(training), GroupNorm (G=32) and InstanceNorm at CNN shapes (N, C, H, W), each
forward and backward is timed as

* ``refnorm``: the public function (``refnorm.layer_norm``, ...), result
  allocated by the default allocator;
* ``out=``: the same computation writing into a preallocated array
  (``refnorm.<op>(..., out=y)`` / ``refnorm.<op>_backward(..., out=dx)``);
* ``torch``: ``torch.nn.functional.<op>`` on float64 CPU tensors sharing the
  NumPy buffers, with ``torch.set_num_threads`` equal to Numba's thread count.
  The backward is ``torch.autograd.grad`` of a retained graph (what a training
  step pays: torch reuses the statistics saved by its forward);
* ``numpy``: a plain NumPy implementation (two-pass, float64, no
  compensation; the backward recomputes the statistics).

Directions: ``fwd``; ``bwd``, ``refnorm.<op>_backward(dy, x, ...)``, which
recomputes the statistics from ``x``; ``bwd(stats)``, the same backward given
the statistics dict ``<op>_stats`` returned (``stats=``; computed once, as by
a training step's forward), which skips that pass -- torch's backward in both
rows is the same, and numpy's is left out of the second.  The LayerNorm
shape 1x8 is the per-call overhead row (validation, allocation, dispatch;
the arithmetic is negligible there).

Each timing is the median of ``--repeats`` runs, the implementations
alternated within every repeat (so a change in machine load hits all of them
alike); every timed call follows an untimed call of the same implementation
(warm caches, and no time lost to the still-spinning worker threads of the
other runtime: Numba and PyTorch each run their own OpenMP pool).
``torch/refnorm`` > 1 means refnorm is faster.

``BW`` is the fraction of the bandwidth limit: the minimal bytes an
implementation must move (forward: read x, write y; backward: read dy and x,
write dx; 8 bytes each, parameters and statistics neglected) per second, as a
fraction of the stream-copy bandwidth of the same case: a Numba parallel copy
of 128 MiB (STREAM convention: bytes read + bytes written) between two arrays
allocated together with the case's inputs, timed as one more implementation in
the same repeats (column ``copy GB/s``).  Per case, because on this virtual
machine the copy bandwidth itself changes from one stretch of seconds to the
next, between ~40 and ~85 GB/s (host-side memory effects; the same buffers,
already touched): a copy interleaved with the case's implementations sees the
conditions they see.  (The copy compiles to ``memcpy``, whose
non-temporal stores skip reading the destination; a kernel writing with
ordinary stores moves 1.5x the minimal bytes of a forward.)  The load average
is printed before and after, since other work on the machine slows
everything down.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time

import numba
import numpy as np

import refnorm

TRANSFORMER = [(8192, 1024), (4096, 4096), (16384, 768)]
CNN = [(32, 64, 56, 56), (8, 256, 28, 28)]
GROUPS = 32
EPS = 1e-5
OPS = ["layer_norm", "rms_norm", "batch_norm", "group_norm", "instance_norm"]
#: the per-call overhead row: a LayerNorm small enough that the arithmetic is negligible
OVERHEAD = (1, 8)
SHAPES = {"layer_norm": TRANSFORMER + [OVERHEAD], "rms_norm": TRANSFORMER, "batch_norm": CNN, "group_norm": CNN,
          "instance_norm": CNN}
DIRS = ("fwd", "bwd", "bwd(stats)")


# ----------------------------------------------------------------------------- the calls


def _inputs(op, shape, rng):
    x = -2.3 + 0.5 * rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    n = shape[-1] if op in ("layer_norm", "rms_norm") else shape[1]
    w = rng.standard_normal(n)
    b = rng.standard_normal(n)
    return x, dy, w, b


def _refnorm_args(op, x, w, b):
    """The arguments of ``refnorm.<op>`` after ``x`` (those of ``<op>_backward`` after ``dy, x``)."""
    D = x.shape[-1]
    return {"layer_norm": (D, w, b, EPS),
            "rms_norm": (D, w, EPS),
            "batch_norm": (None, None, w, b, True, 0.1, EPS),
            "group_norm": (GROUPS, w, b, EPS),
            "instance_norm": (None, None, w, b, True, 0.1, EPS)}[op]


def refnorm_calls(op, x, dy, w, b, out):
    """{direction: (call, call with out=)} as closures; ``bwd(stats)`` is the
    backward given the statistics dict of ``<op>_stats`` (computed once, as a
    training step's forward would)."""
    fwd, bwd = getattr(refnorm, op), getattr(refnorm, f"{op}_backward")
    args = _refnorm_args(op, x, w, b)
    _, st = getattr(refnorm, f"{op}_stats")(x, *args)
    return {"fwd": (lambda: fwd(x, *args), lambda: fwd(x, *args, out=out)),
            "bwd": (lambda: bwd(dy, x, *args), lambda: bwd(dy, x, *args, out=out)),
            "bwd(stats)": (lambda: bwd(dy, x, *args, stats=st), lambda: bwd(dy, x, *args, stats=st, out=out))}


def torch_calls(op, x, dy, w, b):
    import torch
    import torch.nn.functional as F

    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    bt = torch.from_numpy(b).requires_grad_(True)
    dyt = torch.from_numpy(dy)
    D = x.shape[-1]
    params = [xt, wt, bt]
    if op == "layer_norm":
        def fwd():
            return F.layer_norm(xt, (D,), wt, bt, EPS)
    elif op == "rms_norm":
        params = [xt, wt]

        def fwd():
            return F.rms_norm(xt, (D,), wt, EPS)
    elif op == "batch_norm":
        def fwd():
            return F.batch_norm(xt, None, None, wt, bt, True, 0.1, EPS)
    elif op == "group_norm":
        def fwd():
            return F.group_norm(xt, GROUPS, wt, bt, EPS)
    elif op == "instance_norm":
        def fwd():
            return F.instance_norm(xt, None, None, wt, bt, True, 0.1, EPS)
    else:
        raise ValueError(op)

    def fwd_nograd():
        with torch.no_grad():
            return fwd()

    y = fwd()

    def bwd():
        return torch.autograd.grad(y, params, dyt, retain_graph=True)

    return fwd_nograd, bwd


def numpy_calls(op, x, dy, w, b):
    """Plain two-pass NumPy versions (forward, backward)."""
    shape = x.shape
    if op in ("layer_norm", "rms_norm"):
        axes, pshape = (-1,), (1, shape[-1])
        view = (lambda a: a)
    elif op == "batch_norm":
        axes, pshape = (0, 2), (1, shape[1], 1)
        view = (lambda a: a.reshape(shape[0], shape[1], -1))
    elif op == "group_norm":
        axes, pshape = (-1,), None
        view = (lambda a: a.reshape(shape[0], GROUPS, -1))
    else:  # instance_norm
        axes, pshape = (-1,), (1, shape[1], 1)
        view = (lambda a: a.reshape(shape[0], shape[1], -1))
    if op == "group_norm":
        hw = int(np.prod(shape[2:]))
        wv = np.repeat(w.reshape(GROUPS, -1), hw, axis=1)[None]  # (1, G, C/G*HW)
        bv = np.repeat(b.reshape(GROUPS, -1), hw, axis=1)[None]
    else:
        wv, bv = w.reshape(pshape), b.reshape(pshape)
    center = op != "rms_norm"

    def stats(xv):
        mean = xv.mean(axis=axes, keepdims=True) if center else 0.0
        xc = xv - mean if center else xv
        var = np.mean(xc * xc, axis=axes, keepdims=True)
        return xc, 1.0 / np.sqrt(var + EPS)

    def fwd():
        xc, rstd = stats(view(x))
        y = xc * rstd * wv
        if center:
            y += bv
        return y.reshape(shape)

    def affine_sum(a):
        if op in ("layer_norm", "rms_norm"):
            return a.sum(axis=0)
        if op == "group_norm":
            return a.reshape(shape[0], shape[1], -1).sum(axis=(0, 2))
        return a.sum(axis=(0, 2))

    def bwd():
        xv, dyv = view(x), view(dy)
        xc, rstd = stats(xv)
        xhat = xc * rstd
        g = dyv * wv
        c2 = np.mean(g * xhat, axis=axes, keepdims=True)
        t = g - xhat * c2
        if center:
            t -= np.mean(g, axis=axes, keepdims=True)
        dx = (rstd * t).reshape(shape)
        dw = affine_sum(dyv * xhat)
        if not center:
            return dx, dw
        return dx, dw, affine_sum(dyv)

    return fwd, bwd


# ----------------------------------------------------------------------------- bandwidth


@numba.njit(parallel=True, cache=False, fastmath=False)
def _stream_copy(a, b):
    for i in numba.prange(a.shape[0]):
        b[i] = a[i]


class StreamCopy:
    """A Numba parallel copy of ``nbytes`` (default 128 MiB, far beyond the
    caches) into a preallocated, already touched array: ``bandwidth(t)`` is
    the bytes read + written per second of a copy that took ``t`` seconds."""

    def __init__(self, nbytes=128 * 2**20):
        n = nbytes // 8
        self.a = np.ones(n)
        self.b = np.zeros(n)
        _stream_copy(self.a, self.b)

    def __call__(self):
        _stream_copy(self.a, self.b)

    def bandwidth(self, seconds):
        return 2 * self.a.nbytes / seconds


# ----------------------------------------------------------------------------- driver


def _time_interleaved(fns, repeats):
    """Median wall time of each callable, the callables alternated within every
    repeat.  Each timed call follows an untimed call of the same callable, so
    that it does not pay for its predecessor (threads of another runtime
    still spinning, cache contents, freed memory)."""
    for f in fns.values():
        f()  # warm-up (compilation, first touch)
    times = {k: [] for k in fns}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            for k, f in fns.items():
                del_ = f()
                del del_
                t0 = time.perf_counter()
                r = f()
                times[k].append(time.perf_counter() - t0)
                del r
    finally:
        if gc_was:
            gc.enable()
    return {k: statistics.median(v) for k, v in times.items()}


def _shape_str(shape):
    return "x".join(map(str, shape))


def _parse_shape(s):
    return tuple(int(v) for v in s.lower().split("x"))


def machine_description():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = "not installed"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {numba.get_num_threads()} Numba/torch threads; "
            f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, "
            f"torch {tv}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", default=",".join(OPS), help="comma-separated subset of " + ",".join(OPS))
    ap.add_argument("--shapes", default=None,
                    help="comma-separated shapes such as 4096x4096,32x64x56x56 (default: the standard set)")
    ap.add_argument("--dirs", default=",".join(DIRS), help="comma-separated subset of " + ",".join(DIRS))
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per implementation (default 7)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, first standard shape of each group")
    ap.add_argument("--no-numpy", action="store_true", help="skip the plain NumPy implementation")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = ap.parse_args(argv)

    repeats = args.repeats or (3 if args.quick else 7)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    for o in ops:
        if o not in OPS:
            ap.error(f"unknown op {o!r}; choose from {OPS}")
    dirs = [d.strip() for d in args.dirs.split(",")]
    for d in dirs:
        if d not in DIRS:
            ap.error(f"unknown direction {d!r}; choose from {DIRS}")
    wanted = [_parse_shape(s) for s in args.shapes.split(",")] if args.shapes else None

    threads = numba.get_num_threads()
    if not args.no_torch:
        import torch

        torch.set_num_threads(threads)
    print("# machine:", machine_description())
    print(f"# load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    bws = []
    print(f"# medians of {repeats} interleaved repeats; times in ms; BW = fraction of the bandwidth limit,")
    print(f"# of the stream-copy bandwidth (Numba parallel copy of 128 MiB, {threads} threads, buffers as old as")
    print("# the case's inputs) timed in the same repeats")
    print()
    cols = ["op", "shape", "dir", "refnorm", "out=", "torch", "numpy", "torch/refnorm", "torch/out=",
            "BW refnorm", "BW out=", "BW torch", "copy GB/s"]
    results = []  # (op, shape, dir, minimal bytes, {implementation: seconds})
    rng = np.random.default_rng(0)
    for op in ops:
        shapes = SHAPES[op]
        if wanted is not None:
            shapes = [s for s in wanted if len(s) == len(shapes[0])]
        elif args.quick:
            shapes = shapes[:1]
        for shape in shapes:
            x, dy, w, b = _inputs(op, shape, rng)
            out = np.empty_like(x)
            copy = StreamCopy()
            calls = refnorm_calls(op, x, dy, w, b, out)
            tf = tb = nf = nb = None
            if not args.no_torch:
                tf, tb = torch_calls(op, x, dy, w, b)
            if not args.no_numpy:
                nf, nb = numpy_calls(op, x, dy, w, b)
            for d in dirs:
                fns = {"refnorm": calls[d][0], "out": calls[d][1]}
                if tf is not None:
                    fns["torch"] = tf if d == "fwd" else tb
                if nf is not None and d != "bwd(stats)":  # numpy's backward recomputes the statistics
                    fns["numpy"] = nf if d == "fwd" else nb
                fns["copy"] = copy
                t = _time_interleaved(fns, repeats)
                bws.append(copy.bandwidth(t.pop("copy")))
                results.append((op, _shape_str(shape), d, x.nbytes * (2 if d == "fwd" else 3), t, bws[-1]))
                print(f"  {op} {_shape_str(shape)} {d}: refnorm {t['refnorm'] * 1e3:.2f} ms", file=sys.stderr,
                      flush=True)
            del x, dy, out, calls, tf, tb, nf, nb, copy
            gc.collect()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for op, shape, d, nbytes, t, bw in results:
        ms = {k: f"{v * 1e3:.2f}" if v >= 1e-3 else f"{v * 1e3:.4f}" for k, v in t.items()}
        frac = {k: f"{nbytes / v / bw:.0%}" for k, v in t.items()}
        row = [op, shape, d, ms["refnorm"], ms["out"], ms.get("torch", "-"), ms.get("numpy", "-"),
               f"{t['torch'] / t['refnorm']:.2f}" if "torch" in t else "-",
               f"{t['torch'] / t['out']:.2f}" if "torch" in t else "-",
               frac["refnorm"], frac["out"], frac.get("torch", "-"), f"{bw / 1e9:.1f}"]
        print("| " + " | ".join(row) + " |")
    print()
    if bws:
        print(f"# stream-copy bandwidth: median {statistics.median(bws) / 1e9:.1f} GB/s over the cases "
              f"(min {min(bws) / 1e9:.1f}, max {max(bws) / 1e9:.1f})")
    print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
