"""Lp normalization: divide each slice along ``dim`` by its p-norm, clamped below by ``eps``.

.. math::

   N = \\|x\\|_p = \\Big(\\sum_i |x_i|^p\\Big)^{1/p}, \\qquad
   d = \\max(N, \\epsilon), \\qquad y_i = \\frac{x_i}{d}

over the slices along ``dim`` (every index of the other dimensions is one
slice), exactly as ``torch.nn.functional.normalize(x, p, dim, eps)``;
``p = inf`` is ``N = max_i |x_i|``.

Shapes
    x: any shape with at least one dimension; ``dim`` in ``[-x.ndim, x.ndim)``
    (negative counts from the end); saved statistic ``norm`` (the clamped
    denominator ``d``): ``x.shape`` without ``dim``.

Conventions (each the one PyTorch 2.13 follows, checked in tests/ops/test_normalize.py)
    * The clamp is ``clamp_min``: where ``N < eps`` the denominator is the
      constant ``eps`` (no gradient through the norm); at ``N == eps`` the
      gradient passes (``clamp_min``'s backward tests ``N >= eps``), which is
      why the definition below selects with ``where(N >= eps, ...)`` and not
      ``maximum`` (autograd splits ``maximum``'s derivative 0.5/0.5 at a tie).
    * ``p = inf``: the derivative of ``max_i |x_i|`` is shared evenly among the
      maximal elements (``1/k`` each, with their sign), as PyTorch's
      ``amax``/``linalg.vector_norm`` backward and autograd's ``max`` do.
    * ``0 < p < 1`` is not a norm (no triangle inequality) but is computed by
      the same formula, as PyTorch does; the derivative of ``|x_i|^p`` at
      ``x_i = 0`` (infinite for ``p < 1``) is taken as 0, PyTorch's mask.
    * ``p <= 0`` is refused (PyTorch computes a count of non-zeros for
      ``p = 0`` and a harmonic-type mean for ``p < 0``: neither is a norm).
    * A 1-D ``x`` with the default ``dim=1`` is refused (PyTorch raises
      ``IndexError``); pass ``dim=0`` or ``dim=-1``.
    * ``eps = 0`` and an all-zero slice give ``0/0 = NaN``, as PyTorch.

The fast path (:mod:`refnorm.ops.normalize`) computes the same function
without overflow or underflow: it scales each slice by a power of two
(exactly) before raising to the power p.  This definition is the plain formula.

References
    ``torch.nn.functional.normalize`` (torch/nn/functional.py):
    ``input / input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)``.
"""

import autograd.numpy as np


# [docs:forward-start]
def normalize(x, p=2.0, dim=1, eps=1e-12):
    a = np.abs(x)  # (1) |x|
    if p == np.inf:
        norm = np.max(a, axis=dim, keepdims=True)  # (2) max |x_i| (ties share the gradient)
    else:
        norm = np.sum(a ** p, axis=dim, keepdims=True) ** (1.0 / p)  # (2) (sum |x_i|^p)^(1/p)
    d = np.where(norm >= eps, norm, eps)  # (3) clamp_min(norm, eps)
    y = x / d  # (4)
    return y
# [docs:forward-end]
