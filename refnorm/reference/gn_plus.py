"""GN+: GroupNorm mixed with a batch normalization through a learned sigmoid gate.

.. math::

   \\mathrm{GN}(x) = \\frac{x - \\mu_{ng}}{s_{ng} + \\epsilon}, \\qquad
   \\mathrm{BN_0}(t) = \\frac{t - \\mu_{B}}{s_{B} + \\epsilon}, \\qquad
   \\bar\\lambda = \\mathrm{sigmoid}(\\lambda),

   y = \\big(\\bar\\lambda\\, a + (1 - \\bar\\lambda)\\, b\\big)\\, \\gamma_c + \\beta_c

with ``s`` the UNBIASED standard deviation of each reduction set and three
ways of forming ``a`` (the group branch) and ``b`` (the batch branch):

* ``variant="gn_first"`` (default, the authors' "NewGN"): ``a = GN(x)``, ``b = BN0(a)``;
* ``variant="bn_first"``: ``b = BN0(x)``, ``a = GN(b)``;
* ``variant="parallel"``: ``a = GN(x)``, ``b = BN0(x)``.

GN reduces each (sample n, group g of C/G contiguous channels) over its
channels and positions.  BN0 reduces over the batch axis only, separately at
every ``(c, *spatial)`` position (``batch_stats="position"``, the code) or per
channel over ``(N, *spatial)`` (``batch_stats="channel"``, standard BN sets).

Shapes
    x: ``(N, C, *spatial)``; weight (gamma), bias (beta): ``(C,)``; mix
    (the raw lambda): ``(1,)`` or a 0-d array; GN statistics ``(N, G)``; BN0
    statistics ``(1, C, *spatial)`` ("position") or ``(C,)`` ("channel").

Conventions
    Unbiased std (divisor ``|R| - 1``, ``torch.Tensor.std``) and ``eps`` ADDED TO
    THE STD, ``(t - mean)/(std + eps)``, in both branches (default eps 1e-5).
    Mixing weight ``sigmoid(mix)`` (mix init 1.0, so 0.7310586).  No running
    statistics: BN0 always uses the current batch (train = eval), so a batch
    of N >= 2 samples and GN sets of >= 2 elements are required.  Gradients
    flow through every statistic.

References
    Gunawan, Yin & Zhang, "Understanding and Improving Group Normalization",
    arXiv:2207.01972; code (inferred to be the paper's) agusgun/CS-570-Project
    @ 498ce84f ``main_training_script/utils/normalization_layer.py``
    (``GNPlusSequentialGNFirst``, ``GNPlusSequentialBNFirst``, ``GNPlusParallel``);
    the choices and defaults: docs/ops/gn_plus.md#gnplus-defaults.
"""

import autograd.numpy as np


# [docs:forward-start]
def _unbiased_std(tc, axis):
    n = 1
    for a in axis:
        n *= tc.shape[a]
    return np.sqrt(np.sum(tc * tc, axis=axis, keepdims=True) / (n - 1))


def group_branch(x, num_groups, eps):
    """GN(x): per (n, g), unbiased std, eps on the std."""
    N = x.shape[0]
    xg = np.reshape(x, (N, num_groups, -1))  # (G0) (N, G, C/G*HW)
    mean = np.mean(xg, axis=2, keepdims=True)  # (G1) (N, G, 1)
    xc = xg - mean  # (G2) (N, G, C/G*HW)
    std = _unbiased_std(xc, (2,))  # (G3) (N, G, 1), divisor C/G*HW - 1
    return np.reshape(xc / (std + eps), x.shape)  # (G4) (N, C, *spatial)


def batch_branch(t, eps, batch_stats):
    """BN0(t): over axis 0 per ``(c, *spatial)`` position, or per channel over ``(N, *spatial)``."""
    axis = (0,) if batch_stats == "position" else (0,) + tuple(range(2, t.ndim))
    mean = np.mean(t, axis=axis, keepdims=True)  # (B1) (1, C, *spatial) or (1, C, 1...)
    tc = t - mean  # (B2) (N, C, *spatial)
    std = _unbiased_std(tc, axis)  # (B3) like mean, divisor N - 1 or N*HW - 1
    return tc / (std + eps)  # (B4) (N, C, *spatial)


def gn_plus(x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first", batch_stats="position"):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)  # per-channel broadcast
    if variant == "gn_first":
        a = group_branch(x, num_groups, eps)  # (1) (N, C, *spatial)
        b = batch_branch(a, eps, batch_stats)  # (2) (N, C, *spatial)
    elif variant == "bn_first":
        b = batch_branch(x, eps, batch_stats)  # (1) (N, C, *spatial)
        a = group_branch(b, num_groups, eps)  # (2) (N, C, *spatial)
    else:  # "parallel"
        a = group_branch(x, num_groups, eps)  # (1) (N, C, *spatial)
        b = batch_branch(x, eps, batch_stats)  # (2) (N, C, *spatial)
    lam = 1.0 / (1.0 + np.exp(-np.reshape(mix, ())))  # (3) (), sigmoid(mix)
    z = lam * a + (1.0 - lam) * b  # (4) (N, C, *spatial)
    y = z * np.reshape(weight, shape) + np.reshape(bias, shape)  # (5) (N, C, *spatial)
    return y
# [docs:forward-end]
