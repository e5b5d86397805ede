"""Weight Standardization (Qiao et al.) and Scaled WS (NF-Nets, DeepMind / timm).

Each output channel ``i`` of a weight ``W`` of shape ``(C_out, C_in/groups, *kernel)``
(OIHW) is standardized over its ``n = fan_in = prod(W.shape[1:])`` entries:

.. math::

   \\mu_i = \\frac{1}{n}\\sum_j W_{ij}, \\qquad
   v_i = \\frac{1}{n - \\delta}\\sum_j (W_{ij} - \\mu_i)^2, \\qquad
   \\hat W_{ij} = g_i \\, (W_{ij} - \\mu_i)\\, r_i

with ``delta = 0`` (biased) or ``1`` (unbiased), ``s = n`` (fan-in scaling) or
``1``, and the scale ``r_i`` by ``eps_mode``:

* ``"floor"``    ``r = 1 / sqrt(max(s v, eps))``         (DeepMind: a floor on N*var)
* ``"variance"`` ``r = 1 / sqrt(s (v + eps))``           (timm: eps added to var before fan-in scaling)
* ``"std"``      ``r = 1 / (sqrt(s) (sqrt(v) + eps))``   (Qiao: eps added to the std)

Styles (defaults of ``estimator, eps_mode, eps, fan_in_scaling``; each option
can be overridden by the keyword of the same name):

==========  =========  =========  =====  ===========  ==============================================
style       estimator  eps_mode   eps    fan-in s=n   source
==========  =========  =========  =====  ===========  ==============================================
deepmind    biased     floor      1e-4   yes          ``nfnets/base.py`` ``WSConv2D.standardize_weight``
timm        biased     variance   1e-6   yes          timm ``ScaledStdConv2d`` (NF models use eps=1e-5)
qiao        unbiased   std        1e-5   no           official WS PyTorch code (``.std()`` + 1e-5)
==========  =========  =========  =====  ===========  ==============================================

timm's ``StdConv2d`` (BiT) is ``style="timm", fan_in_scaling=False``; the WS
paper's biased formula is ``style="qiao", estimator="biased"``.

Shapes
    weight: ``(C_out, *rest)``, ``ndim >= 2``; gain: ``(C_out,)`` or None (=1);
    saved statistics mean, scale ``r``: ``(C_out,)``.

Conventions
    DeepMind writes ``W*scale - mean*scale`` with ``scale = r*gain``; this is the
    same function as ``gain*(W - mean)*r`` (only roundings differ).  The
    floor's ``max`` has zero derivative w.r.t. var when the floor is active,
    and at an exact tie ``s v == eps`` the derivative is split 0.5/0.5
    (``jnp.maximum``'s and autograd's convention;
    docs/ops/weight_standardization.md#ws-backward).  Nonlinearity gains
    (docs/ops/weight_standardization.md#ws-gains) are :mod:`refnorm.ops.gains`;
    the gain argument here is the learnable per-channel one.

References
    Qiao et al., "Micro-Batch Training with Batch-Channel Normalization and
    Weight Standardization", arXiv:1903.10520; Brock, De & Smith,
    "Characterizing signal propagation to close the performance gap in
    unnormalized ResNets", arXiv:2101.08692; the styles and why:
    docs/ops/weight_standardization.md#ws-styles.
"""

import autograd.numpy as np

# [docs:forward-start]
#: style -> (estimator, eps_mode, eps, fan_in_scaling)
STYLES = {
    "deepmind": ("biased", "floor", 1e-4, True),
    "timm": ("biased", "variance", 1e-6, True),
    "qiao": ("unbiased", "std", 1e-5, False),
}


def resolve_options(style, estimator, eps_mode, eps, fan_in_scaling):
    """The style's defaults, overridden by every option that is not None."""
    d_est, d_mode, d_eps, d_fan = STYLES[style]
    return (d_est if estimator is None else estimator, d_mode if eps_mode is None else eps_mode,
            d_eps if eps is None else eps, d_fan if fan_in_scaling is None else fan_in_scaling)


def weight_standardization(weight, gain=None, eps=None, style="deepmind", *, estimator=None, eps_mode=None,
                           fan_in_scaling=None):
    est, mode, eps, fan = resolve_options(style, estimator, eps_mode, eps, fan_in_scaling)  # (0)
    C_out = weight.shape[0]
    w = np.reshape(weight, (C_out, -1))  # (1) (C_out, n)
    n = w.shape[1]
    mean = np.mean(w, axis=1, keepdims=True)  # (2) (C_out, 1)
    wc = w - mean  # (3) (C_out, n)
    m2 = np.sum(wc * wc, axis=1, keepdims=True)  # (4) (C_out, 1)
    var = m2 / (n - 1.0 if est == "unbiased" else float(n))  # (5) (C_out, 1)
    s = float(n) if fan else 1.0  # (6) fan-in scaling
    if mode == "floor":
        scale = 1.0 / np.sqrt(np.maximum(s * var, eps))  # (7) (C_out, 1) DeepMind rsqrt(max(N var, eps))
    elif mode == "variance":
        scale = 1.0 / np.sqrt(s * (var + eps))  # (7) (C_out, 1) timm
    else:
        scale = 1.0 / (np.sqrt(s) * (np.sqrt(var) + eps))  # (7) (C_out, 1) Qiao
    w_hat = wc * scale  # (8) (C_out, n)
    if gain is not None:
        w_hat = w_hat * np.reshape(gain, (C_out, 1))  # (9) (C_out, n)
    return np.reshape(w_hat, weight.shape)  # (10) (C_out, *rest)
# [docs:forward-end]
