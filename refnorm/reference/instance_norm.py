"""InstanceNorm: normalize each (sample, channel) over its spatial positions.

.. math::

   \\mu_{nc} = \\frac{1}{HW}\\sum_s x_{ncs}, \\quad
   \\sigma^2_{nc} = \\frac{1}{HW}\\sum_s (x_{ncs}-\\mu_{nc})^2, \\quad
   y_{ncs} = \\gamma_c \\frac{x_{ncs}-\\mu_{nc}}{\\sqrt{\\sigma^2_{nc}+\\epsilon}} + \\beta_c

Shapes
    x: ``(N, C, *spatial)``; weight, bias, running_mean, running_var: ``(C,)``;
    saved statistics: ``(N, C)`` (input statistics) or ``(C,)`` (running).

Conventions
    Biased variance, ``eps`` inside the square root.  ``use_input_stats=True``
    (default) uses each instance's statistics; ``False`` uses the running
    statistics as constants.  The running-statistics update (torch: unbiased
    instance variance averaged over N, momentum on the new value) is
    :func:`refnorm.instance_norm_running_stats`.  Affine is optional.  As
    ``torch.nn.functional.instance_norm``.

References
    Ulyanov, Vedaldi & Lempitsky, "Instance Normalization: The Missing
    Ingredient for Fast Stylization", arXiv:1607.08022, eq. (2).
"""

import autograd.numpy as np


# [docs:forward-start]
def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel broadcast
    axes = tuple(range(2, x.ndim))  # (0) the reduction set R: spatial dims
    if use_input_stats:
        mean = np.mean(x, axis=axes, keepdims=True)  # (1) (N, C, 1...)
        xc = x - mean  # (2) (N, C, *spatial)
        var = np.mean(xc * xc, axis=axes, keepdims=True)  # (3) (N, C, 1...), biased
    else:
        xc = x - np.reshape(running_mean, shape)  # (1'-2') constants
        var = np.reshape(running_var, shape)  # (3')
    rstd = 1.0 / np.sqrt(var + eps)  # (4)
    xhat = xc * rstd  # (5) (N, C, *spatial)
    y = xhat if weight is None else xhat * np.reshape(weight, shape)  # (6)
    y = y if bias is None else y + np.reshape(bias, shape)  # (7)
    return y
# [docs:forward-end]
