"""Batch Renormalization: BatchNorm whose batch statistics are corrected toward the running ones.

In training each channel is normalized with its batch statistics, then the
affine correction ``r``, ``d`` maps the result onto what the running
statistics would give, within the clipping limits ``r_max``, ``d_max``:

.. math::

   \\mu_B = \\frac{1}{M}\\sum_{n,s} x_{ncs}, \\quad
   \\sigma_B = \\sqrt{\\frac{1}{M}\\sum_{n,s}(x_{ncs}-\\mu_B)^2 + \\epsilon}, \\quad
   \\sigma = \\sqrt{\\mathrm{running\\_var} + \\epsilon},

   r = \\mathrm{clip}\\Big(\\frac{\\sigma_B}{\\sigma}, \\frac{1}{r_{max}}, r_{max}\\Big), \\quad
   d = \\mathrm{clip}\\Big(\\frac{\\mu_B - \\mathrm{running\\_mean}}{\\sigma}, -d_{max}, d_{max}\\Big),

   \\hat x = \\frac{x - \\mu_B}{\\sigma_B}\\, r + d, \\qquad y = \\gamma \\hat x + \\beta, \\qquad M = N\\cdot HW

with ``r`` and ``d`` treated as constants by every derivative (the paper's
``stop_gradient``).  In eval (``training=False``) the layer is BatchNorm's
inference with the running statistics (``r = 1``, ``d = 0`` in effect).

Shapes
    x: ``(N, C, *spatial)``; weight, bias, running_mean, running_var: ``(C,)``;
    saved statistics mean, rstd: ``(C,)`` (``1/sigma_B`` in training).

Conventions
    Biased batch variance, ``eps`` inside both square roots (``sigma_B`` and
    ``sigma``); ``r``, ``d`` from the running statistics *before* this step's
    update.  The running statistics are required in both modes (``r`` and ``d``
    need them).  Their update is BatchNorm's PyTorch update,
    :func:`refnorm.batch_renorm_running_stats` (unbiased variance into
    ``running_var``, not the paper's ``sigma``: a PyTorch model keeps BN's
    buffers).

References
    Ioffe, "Batch Renormalization: Towards Reducing Minibatch Dependence in
    Batch-Normalized Models", NeurIPS 2017, arXiv:1702.03275, Algorithm 1.
"""

import autograd.numpy as np
from autograd.tracer import getval  # the value without its derivative: stop_gradient


# [docs:forward-start]
def batch_renorm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
                 r_max=3.0, d_max=5.0):
    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel broadcast
    axes = (0,) + tuple(range(2, x.ndim))  # (0) the reduction set: all dims but C
    rm = np.reshape(running_mean, shape)
    sigma = np.sqrt(np.reshape(running_var, shape) + eps)  # (1) running std, a constant
    if training:
        mean = np.mean(x, axis=axes, keepdims=True)  # (2) mu_B (1, C, 1...)
        xc = x - mean  # (3) (N, C, *spatial)
        var = np.mean(xc * xc, axis=axes, keepdims=True)  # (4) biased
        sigma_b = np.sqrt(var + eps)  # (5) sigma_B
        r = getval(np.clip(sigma_b / sigma, 1.0 / r_max, r_max))  # (6) stop_gradient
        d = getval(np.clip((mean - rm) / sigma, -d_max, d_max))  # (7) stop_gradient
        xhat = xc / sigma_b * r + d  # (8)
    else:
        xhat = (x - rm) / sigma  # (2'-8') BatchNorm inference: r = 1, d = 0
    y = xhat if weight is None else xhat * np.reshape(weight, shape)  # (9)
    y = y if bias is None else y + np.reshape(bias, shape)  # (10)
    return y
# [docs:forward-end]
