"""BatchNorm: normalize each channel over the batch and spatial positions.

.. math::

   \\mu_c = \\frac{1}{M}\\sum_{n,s} x_{ncs}, \\quad
   \\sigma^2_c = \\frac{1}{M}\\sum_{n,s}(x_{ncs}-\\mu_c)^2, \\quad
   y_{ncs} = \\gamma_c\\frac{x_{ncs}-\\mu_c}{\\sqrt{\\sigma^2_c+\\epsilon}} + \\beta_c, \\quad M = N\\cdot HW

Shapes
    x: ``(N, C, *spatial)`` (``(N, C)`` for BatchNorm1d); weight, bias,
    running_mean, running_var: ``(C,)``; saved statistics mean, rstd: ``(C,)``.

Conventions
    Training: batch statistics, biased variance, ``eps`` inside the square
    root; differentiated through.  Eval: ``running_mean`` and ``running_var``
    as constants.  The running update (PyTorch: ``(1-m)*old + m*new`` with the
    *unbiased* variance) is :func:`refnorm.batch_norm_running_stats`, which
    also offers the ONNX/Flax convention (``m*old + (1-m)*new``, biased).  As
    ``torch.nn.functional.batch_norm``, except that inputs are never mutated.

References
    Ioffe & Szegedy, "Batch Normalization: Accelerating Deep Network Training
    by Reducing Internal Covariate Shift", arXiv:1502.03167, Algorithm 1.
"""

import autograd.numpy as np


# [docs:forward-start]
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    C = x.shape[1]
    shape = (1, C) + (1,) * (x.ndim - 2)  # per-channel broadcast
    axes = (0,) + tuple(range(2, x.ndim))  # (0) the reduction set R: all dims but C
    if training:
        mean = np.mean(x, axis=axes, keepdims=True)  # (1) (1, C, 1...)
        xc = x - mean  # (2) (N, C, *spatial)
        var = np.mean(xc * xc, axis=axes, keepdims=True)  # (3) (1, C, 1...), biased
    else:
        xc = x - np.reshape(running_mean, shape)  # (1'-2') constants
        var = np.reshape(running_var, shape)  # (3')
    rstd = 1.0 / np.sqrt(var + eps)  # (4) (1, C, 1...)
    xhat = xc * rstd  # (5) (N, C, *spatial)
    y = xhat if weight is None else xhat * np.reshape(weight, shape)  # (6)
    y = y if bias is None else y + np.reshape(bias, shape)  # (7)
    return y
# [docs:forward-end]
