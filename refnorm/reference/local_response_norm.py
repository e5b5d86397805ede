"""Local Response Normalization (LRN): each element divided by a power of the mean square of
its neighbours across channels.

For ``x`` of shape ``(N, C, *spatial)``, at every sample ``n`` and position ``s``, channel ``c``
is divided by a power of the squares of the ``size`` channels around it:

.. math::

   W(c) = \\{c - \\lfloor size/2 \\rfloor, \\dots, c + \\lfloor (size-1)/2 \\rfloor\\} \\cap \\{0, \\dots, C-1\\},

   b_c = k + \\frac{\\alpha}{size} \\sum_{j \\in W(c)} x_j^2, \\qquad
   div_c = b_c^{\\beta}, \\qquad y_c = \\frac{x_c}{div_c}

exactly as ``torch.nn.functional.local_response_norm(x, size, alpha, beta, k)``.

Shapes
    x: ``(N, C, *spatial)`` with at least three dimensions (PyTorch refuses fewer; a
    ``(N, C)`` input is passed as ``(N, C, 1)``); saved statistic ``div`` (the
    denominator ``b^beta``): the shape of ``x``.

Conventions (each the one PyTorch 2.13 follows, checked in tests/ops/test_local_response_norm.py)
    * The window: PyTorch pads the channel axis with ``size // 2`` zeros in front
      and ``(size - 1) // 2`` behind, then takes an ``avg_pool`` of width ``size``:
      channel ``c`` sees ``c - size // 2`` to ``c + (size - 1) // 2``.  For an odd
      size the window is centred; for an even size it reaches one channel further
      back than forward.  ONNX ``LRN`` takes ``c - floor((size - 1) / 2)`` to
      ``c + ceil((size - 1) / 2)``, the mirror image for an even size (one channel
      further forward): the two agree only for odd sizes.
    * ``alpha`` multiplies the window *mean*, ``sum / size``: the pool divides by
      ``size`` whatever part of the window falls in the zero padding
      (``count_include_pad``), so at the edges the divisor is still ``size``.
      Caffe's, cuDNN's and ONNX's ``alpha / size * sum`` is the same formula; a
      layer that applies ``alpha`` to the raw sum (TensorFlow's
      ``tf.nn.local_response_normalization``, the AlexNet paper's equation) differs
      by the factor ``size``.
    * ``size`` may exceed ``C``: the window is then cut by both ends of the
      channel axis, the divisor stays ``size``.
    * No validation of the signs: ``k + alpha mean`` negative gives what ``pow``
      gives (NaN for a non-integer ``beta``); ``k = 0`` with an all-zero window
      gives ``0 / 0 = NaN``, as PyTorch.

References
    Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
    Convolutional Neural Networks", NeurIPS 2012, section 3.3;
    ``torch.nn.functional.local_response_norm`` (torch/nn/functional.py):
    ``div = avg_pool(pad(x * x, (size // 2, (size - 1) // 2)), size)``,
    ``div = div.mul(alpha).add(k).pow(beta)``, ``input / div``.
"""

import math

import autograd.numpy as np


# [docs:forward-start]
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    N, C = x.shape[0], x.shape[1]
    S = math.prod(x.shape[2:])
    x3 = np.reshape(x, (N, C, S))  # (1) (N, C, S): the window runs along C
    sq = x3 * x3  # (2) squares
    front = np.zeros((N, size // 2, S))
    back = np.zeros((N, (size - 1) // 2, S))
    padded = np.concatenate([front, sq, back], axis=1)  # (3) zero padding, C + size - 1 channels
    total = padded[:, 0:C, :]
    for o in range(1, size):
        total = total + padded[:, o:o + C, :]  # (4) sum over the window of channel c
    base = k + alpha * (total / size)  # (5) k + alpha * mean (the pool divides by size)
    div = base ** beta  # (6) the denominator
    y = x3 / div  # (7)
    return np.reshape(y, x.shape)
# [docs:forward-end]
