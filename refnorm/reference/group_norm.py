"""GroupNorm: normalize each (sample, group of C/G channels) over its channels and positions.

.. math::

   \\mu_{ng} = \\frac{1}{|R|}\\sum_{(c, s)\\in R_g} x_{ncs}, \\quad
   \\sigma^2_{ng} = \\frac{1}{|R|}\\sum_{(c,s)\\in R_g} (x_{ncs} - \\mu_{ng})^2, \\quad
   y_{ncs} = \\gamma_c \\frac{x_{ncs} - \\mu_{ng}}{\\sqrt{\\sigma^2_{ng} + \\epsilon}} + \\beta_c

Shapes
    x: ``(N, C, *spatial)``; weight, bias: ``(C,)`` (per channel); saved
    statistics mean, rstd: ``(N, G)``; ``|R| = C/G * prod(spatial)``.

Conventions
    G contiguous groups: channel c belongs to group ``c // (C/G)``.  Biased
    variance, ``eps`` inside the square root, per-channel affine, no running
    statistics.  G = 1 is LayerNorm over ``(C, *spatial)`` with a per-channel
    affine; G = C is InstanceNorm.  As ``torch.nn.functional.group_norm``.

References
    Wu & He, "Group Normalization", arXiv:1803.08494, eqs. (1)-(2), (7).
"""

import autograd.numpy as np


# [docs:forward-start]
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    N, C = x.shape[0], x.shape[1]
    xg = np.reshape(x, (N, num_groups, -1))  # (0) (N, G, C/G*HW): each row a reduction set
    mean = np.mean(xg, axis=2, keepdims=True)  # (1) (N, G, 1)
    xc = xg - mean  # (2) (N, G, C/G*HW)
    var = np.mean(xc * xc, axis=2, keepdims=True)  # (3) (N, G, 1), biased
    rstd = 1.0 / np.sqrt(var + eps)  # (4) (N, G, 1)
    xhat = np.reshape(xc * rstd, x.shape)  # (5) (N, C, *spatial)
    shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel broadcast
    y = xhat if weight is None else xhat * np.reshape(weight, shape)  # (6)
    y = y if bias is None else y + np.reshape(bias, shape)  # (7)
    return y
# [docs:forward-end]
