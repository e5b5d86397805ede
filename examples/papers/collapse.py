"""Proxy Normalization paper, failure modes of batch-independent normalization.

Claim (Labatie et al., NeurIPS 2021, abstract): in deep networks "layer
normalization induces a collapse towards channel-wise constant functions" and
"instance normalization induces a lack of variability in instance statistics";
Proxy Normalization after layer normalization (LN+PN) avoids the collapse, as
batch normalization does.

Experiment: the paper's random network ("Definition 1", figure 2/3 top row),
scaled down.  For ``l = 1..depth``::

    h^l = conv3x3(z^{l-1})                      # periodic boundary, He init, no bias
    y^l = Norm(h^l)                             # no affine: the measured pre-activation
    z^l = relu(gamma^l * y^l + beta^l)          # gamma ~ N(1, 0.2^2), beta ~ N(0, 0.2^2) per channel
    z^l = proxy_norm(y^l, gamma^l, beta^l, 0, 0)    # instead, for LN+PN (PN-Act)

with ``Norm`` one of ``refnorm.batch_norm`` (training, batch statistics),
``refnorm.layer_norm`` over ``(C, H, W)``, ``refnorm.instance_norm``,
``refnorm.group_norm`` (``groups`` groups) and ``refnorm.layer_norm`` followed
by ``refnorm.ops.proxy_norm.proxy_norm``.  Every normalizer sees the same
input and the same weights (one seeded stream).  The input is a small
heterogeneous "dataset": ``z^0[n, c] = a_n * (noise + b_{n,c})`` with
``a_n ~ U(0.5, 2)`` and ``b_{n,c} ~ N(0, 1)``, so that instances differ in
their statistics.

Measured at each depth, on ``y^l``, with :func:`refnorm.analysis.power_decomposition`:
the channel-wise collapse ``E_c[mu_c^2] / P(y)`` (``collapse``), the
instance-mean variance fraction ``E_c[Var_n mu_c(n)] / P(y)`` and the relative
spread of the instance standard deviations ``E_c[Var_n s_c(n)] / E_c[E_n
s_c(n)^2]``.  The metric definitions are "paper-inspired" (:mod:`refnorm.analysis`).

``python examples/papers/collapse.py [OUT.png]`` writes the plot (default
``examples/papers/out/collapse.png``) and prints the numbers; :func:`run`
returns them.
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
from refnorm.analysis import power_decomposition
from refnorm.ops.proxy_norm import proxy_norm

#: The normalizers of the experiment, in plot order.
NORMALIZERS = ("bn", "ln", "ln_pn", "in", "gn")
LABELS = {"bn": "BN", "ln": "LN", "ln_pn": "LN+PN", "in": "IN", "gn": "GN"}
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "collapse.png"


@contextlib.contextmanager
def single_threaded():
    """Run refnorm's Numba kernels on one thread (restored afterwards).

    The tensors here are tiny: the synchronisation of a parallel kernel costs
    more than its work, badly so on shared cores.  refnorm's kernels give the
    same bits for any thread count, so this changes the speed only.
    """
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def conv3x3_periodic(x, w):
    """3x3 cross-correlation with periodic boundary conditions.

    ``out[n, o, i, j] = sum_{c, a, b} w[o, c, a, b] * x[n, c, (i + a - 1) % H, (j + b - 1) % W]``;
    ``x`` is ``(N, C, H, W)``, ``w`` is ``(O, C, 3, 3)`` (OIHW); one channel
    matmul per kernel tap.
    """
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="wrap")
    out = np.zeros((N, w.shape[0], H * W))
    for a in range(3):
        for b in range(3):
            tap = np.ascontiguousarray(xp[:, :, a:a + H, b:b + W]).reshape(N, C, H * W)
            out += np.matmul(w[:, :, a, b], tap)
    return out.reshape(N, w.shape[0], H, W)


def _normalize(kind, h, groups):
    if kind == "bn":
        return refnorm.batch_norm(h, None, None, training=True)
    if kind in ("ln", "ln_pn"):
        return refnorm.layer_norm(h, h.shape[1:])
    if kind == "in":
        return refnorm.instance_norm(h)
    if kind == "gn":
        return refnorm.group_norm(h, groups)
    raise ValueError(f"kind must be one of {NORMALIZERS}, got {kind!r}")


def random_net(kind, *, depth=50, batch=32, channels=64, size=8, groups=8, seed=0):
    """Power decompositions of ``y^1 .. y^depth`` of the random net with normalizer ``kind``.

    Returns a list of ``depth`` :class:`refnorm.analysis.PowerDecomposition`.
    """
    if kind not in NORMALIZERS:
        raise ValueError(f"kind must be one of {NORMALIZERS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    N, C = batch, channels
    z = rng.uniform(0.5, 2.0, (N, 1, 1, 1)) * (rng.standard_normal((N, C, size, size))
                                                + rng.standard_normal((N, C, 1, 1)))
    zeros = np.zeros(C)
    out = []
    for _ in range(depth):
        w = rng.standard_normal((C, C, 3, 3)) * np.sqrt(2.0 / (9 * C))  # He init
        gamma = 1.0 + 0.2 * rng.standard_normal(C)
        beta = 0.2 * rng.standard_normal(C)
        y = _normalize(kind, conv3x3_periodic(z, w), groups)
        out.append(power_decomposition(y))
        if kind == "ln_pn":
            z = proxy_norm(y, gamma, beta, zeros, zeros, activation="relu")
        else:
            z = np.maximum(gamma[:, None, None] * y + beta[:, None, None], 0.0)
    return out


def run(*, depth=50, batch=32, channels=64, size=8, groups=8, seed=0, normalizers=NORMALIZERS):
    """Run the experiment for each normalizer; return the numbers behind the plot.

    Returns
    -------
    dict with

    * ``"depth"``: int array ``1..depth``;
    * ``"collapse"``, ``"instance_mean_fraction"``, ``"relative_std_spread"``:
      dicts normalizer -> float array ``(depth,)``;
    * ``"decompositions"``: dict normalizer -> list of ``PowerDecomposition``;
    * ``"seconds"``: dict normalizer -> wall time;
    * ``"config"``: the arguments.
    """
    res = {"depth": np.arange(1, depth + 1), "collapse": {}, "instance_mean_fraction": {},
           "relative_std_spread": {}, "decompositions": {}, "seconds": {},
           "config": dict(depth=depth, batch=batch, channels=channels, size=size, groups=groups, seed=seed)}
    with single_threaded():
        for kind in normalizers:
            t0 = time.perf_counter()
            pds = random_net(kind, depth=depth, batch=batch, channels=channels, size=size, groups=groups,
                             seed=seed)
            res["seconds"][kind] = time.perf_counter() - t0
            res["decompositions"][kind] = pds
            res["collapse"][kind] = np.array([p.collapse for p in pds])
            res["instance_mean_fraction"][kind] = np.array([p.instance_mean_var / p.power for p in pds])
            res["relative_std_spread"][kind] = np.array([p.relative_std_spread for p in pds])
    return res


def plot(res, path):
    """Write the three-panel PNG of :func:`run`'s results to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiny = 1e-40  # exact zeros on the log panels
    d = res["depth"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), constrained_layout=True)
    panels = [("collapse", "channel-wise collapse  $E_c[\\mu_c^2]/P(y)$", "linear"),
              ("instance_mean_fraction", "instance-mean variance  $E_c[Var_n\\,\\mu_c(n)]/P(y)$", "log"),
              ("relative_std_spread", "instance-std spread  $E_c[Var_n\\,\\sigma_c(n)]/E_c[E_n\\,\\sigma_c^2(n)]$",
               "log")]
    for ax, (key, title, scale) in zip(axes, panels):
        for kind, vals in res[key].items():
            v = np.maximum(vals, tiny) if scale == "log" else vals
            label = f"GN ({res['config']['groups']} groups)" if kind == "gn" else LABELS[kind]
            ax.plot(d, v, marker=".", ms=3, label=label)
        ax.set_yscale(scale)
        ax.set_xlabel("depth $l$")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center")
    c = res["config"]
    fig.suptitle(f"Random ReLU conv net at init (N={c['batch']}, C={c['channels']}, "
                 f"{c['size']}x{c['size']} periodic, seed {c['seed']}): power decomposition of the "
                 "normalized pre-activations", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary(res) -> str:
    lines = [f"{'norm':6s} {'collapse@1':>11s} {'collapse@L':>11s} {'max collapse':>12s} "
             f"{'imv/P@L':>10s} {'std spread@L':>12s} {'seconds':>8s}"]
    for kind in res["collapse"]:
        c = res["collapse"][kind]
        lines.append(f"{LABELS[kind]:6s} {c[0]:11.3e} {c[-1]:11.3e} {c.max():12.3e} "
                     f"{res['instance_mean_fraction'][kind][-1]:10.3e} "
                     f"{res['relative_std_spread'][kind][-1]:12.3e} {res['seconds'][kind]:8.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="PNG path (default: %(default)s)")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    res = run(depth=a.depth, seed=a.seed)
    print(summary(res))
    print(f"wrote {plot(res, a.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
