"""EvoNorm-S0: a sigmoid-gated input divided by its group's standard deviation.

The C channels of ``x`` of shape ``(N, C, *spatial)`` are split into
``G = num_groups`` contiguous groups of ``Q = C/G`` channels, as in GroupNorm.
Each (sample, group) has the biased variance of its ``Q * S`` elements
(``S = prod(spatial)``); the output is the input times a per-channel sigmoid
gate, divided by that group standard deviation, then scaled and shifted per
channel:

.. math::

   \\mu_{ng} = \\mathrm{mean}_{(q, s)}\\, x_{ngqs}, \\qquad
   \\sigma^2_{ng} = \\mathrm{mean}_{(q, s)}\\, (x_{ngqs} - \\mu_{ng})^2, \\qquad
   r_{ng} = (\\sigma^2_{ng} + \\epsilon)^{-1/2}

.. math::

   z = x \\cdot \\mathrm{sigmoid}(v_c\\, x) \\cdot r_{ng}, \\qquad
   y = \\gamma_c z + \\beta_c

Shapes
    x: ``(N, C, *spatial)`` with any number of spatial dimensions (``ndim >= 2``,
    as ``torch.nn.functional.group_norm``; timm's ``EvoNorm2dS0`` takes
    ``(N, C, H, W)``, the same thing there); ``num_groups`` divides C; weight
    (gamma), bias (beta), v: ``(C,)``; saved statistics ``mean`` and
    ``rstd = (var + eps)^(-1/2)``: ``(N, G)``.

Conventions
    The sigmoid gate is applied to the *raw* input ``x`` (not to a normalized
    value), and the group variance is of ``x`` itself, biased (divide by
    ``Q * S``), ``eps`` inside the square root, default ``1e-5`` (timm's
    ``group_std``: ``x.var(unbiased=False) + eps``, then ``sqrt``).  The mean
    is only used inside the variance: the numerator is not centred.  The
    variance is differentiated (the gradient reaches every element of a group
    through ``r``).  weight, bias and v are required (timm's ``apply_act=False``,
    ``v = None``, is no normalization at all: ``y = gamma x + beta``).

References
    Liu, Brock, Simonyan & Le, "Evolving Normalization-Activation Layers",
    NeurIPS 2020 (arXiv:2004.02967), Table 1 / Figure 1, EvoNorm-S0; timm
    ``timm/layers/evo_norm.py``: ``EvoNorm2dS0.forward`` and ``group_std``.
"""

import math

import autograd.numpy as np


# [docs:forward-start]
def evo_norm_s0(x, num_groups, weight, bias, v, eps=1e-5):
    N, C, G = x.shape[0], x.shape[1], num_groups
    S = math.prod(x.shape[2:])
    x4 = np.reshape(x, (N, G, C // G, S))  # (1) (N, G, Q, S): one set per (n, g)
    mean = np.mean(x4, axis=(2, 3), keepdims=True)  # (2) (N, G, 1, 1)
    xc = x4 - mean  # (3)
    var = np.mean(xc * xc, axis=(2, 3), keepdims=True)  # (4) biased variance
    rstd = 1.0 / np.sqrt(var + eps)  # (5) (N, G, 1, 1)
    vv = np.reshape(v, (1, G, C // G, 1))
    sg = 0.5 * (np.tanh(0.5 * (x4 * vv)) + 1.0)  # (6) sigmoid(v x), overflow-free
    z = (x4 * sg) * rstd  # (7) the gated input over the group std
    y = z * np.reshape(weight, (1, G, C // G, 1)) + np.reshape(bias, (1, G, C // G, 1))  # (8)
    return np.reshape(y, x.shape)
# [docs:forward-end]
