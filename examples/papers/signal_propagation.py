"""NF-ResNets paper, signal propagation plots (SPPs) at initialization.

Claim (Brock, De, Smith, ICLR 2021, abstract): Scaled Weight Standardization
"preserves the signal in networks with ReLU ... activation functions by
ensuring that the per-channel activation means do not grow with depth".
Without it, a normalizer-free ResNet suffers a *mean shift*: the average
channel squared mean grows with depth until it rivals the variance; with
BatchNorm in every residual branch the channel means stay in a fixed
proportion to the variance.

Experiment: single-stage pre-activation ResNets of ``blocks`` residual blocks
of constant width, bottleneck-shaped residual branches ``1x1 -> 3x3 -> 1x1``
(no width reduction, periodic 3x3 convolutions, no biases), input ``h_0 ~
N(0, 1)`` white noise (as the paper's SPPs).  Four variants, one seeded weight
stream shared by all (weights drawn ``N(0, 2 / fan_in)``, He init)::

    nf_he  : h_{i+1} = h_i + alpha * f(h_i / beta_i),  f = c3 . relu . c2 . relu . c1 . relu   (He init)
    nf_sws : the same with every conv weight W -> weight_standardization(W)  (DeepMind Scaled WS)
             and relu -> gain * relu, gain = nonlinearity_gain("relu")     (the paper's NF-ResNet)
    bn     : h_{i+1} = h_i + f(h_i),  f = c3 . relu . BN . c2 . relu . BN . c1 . relu . BN   (BN-ReLU order)
    plain  : h_{i+1} = h_i + f(h_i),  f = c3 . relu . c2 . relu . c1 . relu  (no normalization, no scaling)

with ``alpha = 0.2`` and ``beta_i = sqrt(1 + i alpha^2)`` the expected std of
``h_i`` (DeepMind ``expected_std``; no transition block, skip gain 1, i.e. no
SkipInit, so that the branches contribute at initialization; for ReLU the
DeepMind order ``gain * relu(h) / beta`` equals the paper's ``f(h / beta)``).

Measured after each block with :func:`refnorm.analysis.signal_metrics`
(biased, as DeepMind's ``signal_metrics``): the average channel squared mean, the average channel
variance of ``h_i`` and the residual-branch variance of ``f``'s output (before
``alpha``).  Two scale-free forms of the claim:

* the *mean-shift ratio* ``avg_sq_mean / avg_var``;
* the squared channel means against their *sampling noise*: a signal whose
  true channel means are 0 still shows ``E[avg_sq_mean] = E_c[Var_n mu_c(n)] / N``
  (the channel mean is an average of ``N`` independent instance means
  ``mu_c(n)``); ``sq_mean_noise`` is that floor, from
  :func:`refnorm.analysis.power_decomposition` of ``h_i``, and
  ``sq_mean_over_noise = avg_sq_mean / sq_mean_noise`` is ~1 when the channel
  means are pure noise and >> 1 when there is a real mean shift.

``python examples/papers/signal_propagation.py [OUT.png]`` writes the plot
(default ``examples/papers/out/signal_propagation.png``) and prints the
numbers; :func:`run` returns them.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numba
import numpy as np

import refnorm
from refnorm.analysis import power_decomposition, signal_metrics
from refnorm.ops.gains import nonlinearity_gain
from refnorm.ops.weight_standardization import weight_standardization

#: The ResNet variants, in plot order.
VARIANTS = ("plain", "nf_he", "nf_sws", "bn")
LABELS = {"plain": "no norm, no scaling", "nf_he": "NF, He init", "nf_sws": "NF, Scaled WS",
          "bn": "BN-ReLU"}
KERNELS = (1, 3, 1)  # the bottleneck-shaped residual branch
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "signal_propagation.png"


@contextlib.contextmanager
def single_threaded():
    """Run refnorm's Numba kernels on one thread (restored afterwards): the
    tensors are tiny, and refnorm's results do not depend on the thread count."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def conv_periodic(x, w):
    """k x k cross-correlation (k odd) with periodic boundary conditions, ``w`` OIHW.

    ``out[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] * x[n, c, (i + a - k//2) % H, (j + b - k//2) % W]``.
    """
    N, C, H, W = x.shape
    k = w.shape[2]
    if k == 1:
        return np.matmul(w[:, :, 0, 0], x.reshape(N, C, H * W)).reshape(N, -1, H, W)
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="wrap")
    out = np.zeros((N, w.shape[0], H * W))
    for a in range(k):
        for b in range(k):
            tap = np.ascontiguousarray(xp[:, :, a:a + H, b:b + W]).reshape(N, C, H * W)
            out += np.matmul(w[:, :, a, b], tap)
    return out.reshape(N, w.shape[0], H, W)


def _relu(u):
    return np.maximum(u, 0.0)


def _batch_norm(u):
    return refnorm.batch_norm(u, None, None, training=True)


def resnet_signal(variant, *, blocks=100, batch=32, channels=64, size=8, alpha=0.2, seed=0, norm=None,
                  gain=None):
    """SPP metrics of one ResNet variant: a list of ``blocks + 1`` dicts.

    Entry 0 is the input ``h_0`` (``avg_sq_mean``, ``avg_var``,
    ``sq_mean_noise``); entry ``i >= 1`` is ``h_i`` after block ``i``, with
    ``res_avg_var`` of that block's branch.

    ``norm`` (``"bn"`` only): the normalization in the branch, a callable
    ``u -> Norm(u)`` (default training-mode ``refnorm.batch_norm``), so that the
    same harness can run another normalizer.  ``gain`` (``"nf_sws"`` only): the
    activation gain (default ``nonlinearity_gain("relu")``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if norm is not None and variant != "bn":
        raise ValueError("norm applies to variant 'bn' only")
    if gain is not None and variant != "nf_sws":
        raise ValueError("gain applies to variant 'nf_sws' only")
    norm = _batch_norm if norm is None else norm
    gain = nonlinearity_gain("relu") if gain is None else float(gain)
    rng = np.random.default_rng(seed)
    C = channels
    h = rng.standard_normal((batch, C, size, size))

    def metrics(h, residual=None):
        m = signal_metrics(h, residual)
        m["sq_mean_noise"] = power_decomposition(h).instance_mean_var / batch
        return m

    out = [metrics(h)]
    for i in range(blocks):
        ws = [rng.standard_normal((C, C, k, k)) * np.sqrt(2.0 / (C * k * k)) for k in KERNELS]
        if variant in ("nf_he", "nf_sws"):
            u = h / np.sqrt(1.0 + i * alpha ** 2)  # h_i / beta_i
            for w in ws:
                if variant == "nf_he":
                    u = conv_periodic(_relu(u), w)
                else:
                    u = conv_periodic(gain * _relu(u), weight_standardization(w))
            h = h + alpha * u
        else:
            u = h
            for w in ws:
                u = conv_periodic(_relu(norm(u) if variant == "bn" else u), w)
            h = h + u
        out.append(metrics(h, u))
    return out


def run(*, blocks=100, batch=32, channels=64, size=8, alpha=0.2, seed=0, variants=VARIANTS):
    """Run every variant; return the numbers behind the plot.

    Returns
    -------
    dict with

    * ``"block"``: int array ``0..blocks`` (0 = the input);
    * ``"avg_sq_mean"``, ``"avg_var"``, ``"ratio"`` (``avg_sq_mean / avg_var``),
      ``"sq_mean_noise"`` and ``"sq_mean_over_noise"`` (module docstring):
      dicts variant -> float array ``(blocks + 1,)``;
    * ``"res_avg_var"``: dict variant -> float array ``(blocks,)`` (blocks 1..);
    * ``"seconds"``: dict variant -> wall time; ``"config"``: the arguments.
    """
    res = {"block": np.arange(blocks + 1), "avg_sq_mean": {}, "avg_var": {}, "ratio": {}, "sq_mean_noise": {},
           "sq_mean_over_noise": {}, "res_avg_var": {}, "seconds": {},
           "config": dict(blocks=blocks, batch=batch, channels=channels, size=size, alpha=alpha, seed=seed)}
    with single_threaded():
        for v in variants:
            t0 = time.perf_counter()
            ms = resnet_signal(v, blocks=blocks, batch=batch, channels=channels, size=size, alpha=alpha,
                               seed=seed)
            res["seconds"][v] = time.perf_counter() - t0
            res["avg_sq_mean"][v] = np.array([m["avg_sq_mean"] for m in ms])
            res["avg_var"][v] = np.array([m["avg_var"] for m in ms])
            res["ratio"][v] = res["avg_sq_mean"][v] / res["avg_var"][v]
            res["sq_mean_noise"][v] = np.array([m["sq_mean_noise"] for m in ms])
            res["sq_mean_over_noise"][v] = res["avg_sq_mean"][v] / res["sq_mean_noise"][v]
            res["res_avg_var"][v] = np.array([m["res_avg_var"] for m in ms[1:]])
    return res


def plot(res, path):
    """Write the four-panel SPP PNG of :func:`run`'s results to ``path``.

    The first three panels are scaled to the normalized / scaled variants; the
    unscaled ResNet without normalization (``plain``), which grows
    exponentially, leaves them at the top (its whole curve is on the last panel).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = res["block"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), constrained_layout=True)
    panels = [("avg_sq_mean", "average channel squared mean", b),
              ("avg_var", "average channel variance", b),
              ("res_avg_var", "residual-branch average channel variance", b[1:]),
              ("ratio", "mean-shift ratio  avg_sq_mean / avg_var", b)]
    for k, (ax, (key, title, x)) in enumerate(zip(axes, panels)):
        tame = [vals for v, vals in res[key].items() if v != "plain"]
        for v, vals in res[key].items():
            ax.plot(x, vals, marker=".", ms=2, label=LABELS[v], ls="--" if v == "plain" else "-")
        if key == "avg_sq_mean" and "nf_sws" in res["sq_mean_noise"]:
            ax.plot(b, res["sq_mean_noise"]["nf_sws"], color="0.4", lw=0.8, ls=":",
                    label="sampling noise of the channel means (NF, Scaled WS)")
        ax.set_yscale("log")
        if k < 3 and tame:
            lo = min(float(np.min(t)) for t in tame)
            hi = max(float(np.max(t)) for t in tame)
            ax.set_ylim(lo / 3, hi * 30)
        ax.set_xlabel("residual block")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    c = res["config"]
    fig.suptitle(f"Pre-activation ResNets at init (N={c['batch']}, C={c['channels']}, {c['size']}x{c['size']}, "
                 f"branch 1x1-3x3-1x1, alpha={c['alpha']}, seed {c['seed']}): signal propagation plots",
                 fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary(res) -> str:
    lines = [f"{'variant':20s} {'sq_mean@1':>10s} {'sq_mean@L':>10s} {'var@L':>10s} {'ratio@1':>9s} "
             f"{'ratio@L':>9s} {'max ratio':>9s} {'max sq/noise':>12s} {'res_var avg':>11s} {'seconds':>8s}"]
    for v in res["avg_sq_mean"]:
        s, r = res["avg_sq_mean"][v], res["ratio"][v]
        lines.append(f"{LABELS[v]:20s} {s[1]:10.3e} {s[-1]:10.3e} {res['avg_var'][v][-1]:10.3e} {r[1]:9.3e} "
                     f"{r[-1]:9.3e} {r.max():9.3e} {res['sq_mean_over_noise'][v].max():12.3e} "
                     f"{res['res_avg_var'][v].mean():11.3e} {res['seconds'][v]:8.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="PNG path (default: %(default)s)")
    p.add_argument("--blocks", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    res = run(blocks=a.blocks, seed=a.seed)
    print(summary(res))
    print(f"wrote {plot(res, a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
