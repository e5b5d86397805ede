"""Weight Normalization (Salimans & Kingma 2016): a weight as a direction times a length.

.. math::

   n_c = \\lVert v_c \\rVert_2 = \\Big(\\sum_{i \\in c} v_i^2\\Big)^{1/2}, \\qquad
   w_i = v_i \\, \\frac{g_c}{n_c} \\quad (i \\in c)

where the slice ``c`` holds every element of ``v`` with one index along ``dim``: the L2 norm is
taken over EVERY dimension EXCEPT ``dim`` (PyTorch's ``norm_except_dim(v, 2, dim)``), so with
the default ``dim=0`` each output channel of a Linear ``(out, in)`` or Conv ``(C_out, C_in,
*kernel)`` weight gets its own length ``g_c``.  This is ``torch._weight_norm(v, g, dim)``, the
function behind ``torch.nn.utils.parametrizations.weight_norm`` (``original0`` is ``g``,
``original1`` is ``v``).

Shapes
    v: any shape with at least one dimension and one element.
    dim = k (``0 <= k < v.ndim``, or ``-v.ndim <= k <= -2``, which counts from the end as
    ``torch.transpose`` does): ``g`` has ``v.shape`` with every dimension but ``k`` set to 1
    (the shape ``norm_except_dim`` returns, keepdims), ``g.shape[k] = v.shape[k]``.
    ``dim=None`` or ``dim=-1``: ONE norm over the whole tensor (PyTorch's convention: in
    ``norm_except_dim`` and ``_weight_norm`` ``-1`` means "no dimension is kept", and
    ``parametrizations.weight_norm(module, dim=None)`` passes ``-1``; it is NOT the last
    dimension -- ask for the last dimension as ``dim = v.ndim - 1``); ``g`` then has shape
    ``()`` (what the parametrization stores) or ``(1,) * v.ndim``.
    w: like ``v``.  The saved statistic ``norm`` (``n``, what ``torch._weight_norm_interface``
    returns beside ``w``): the shape of ``norm_except_dim``, i.e. ``g``'s shape for ``dim = k``
    and ``()`` for the whole tensor.  The gradients ``dv``, ``dg`` have the shapes of ``v``, ``g``.

Conventions
    * No ``eps``: a slice of zeros has ``n = 0`` and gives ``w = v * (g / 0) = 0 * inf = NaN`` on
      the whole slice, and NaN for ``dv`` on the slice and ``dg`` of the slice, as PyTorch does
      (declared behaviour; the other slices are unaffected).
    * ``g`` multiplies; its sign is kept (a negative ``g`` flips the direction, as in PyTorch).
    * ``dim`` as in PyTorch: a Python int (not a bool) or None.

References
    T. Salimans and D. P. Kingma, "Weight Normalization: A Simple Reparameterization to Accelerate
    Training of Deep Neural Networks", NeurIPS 2016, arXiv:1602.07868, eq. (2)
    (``w = g v / ||v||``) and eq. (3) (the gradients); PyTorch ``aten/src/ATen/native/WeightNorm.cpp``
    (``norm_except_dim``, ``_weight_norm``, ``_weight_norm_differentiable_backward``) and
    ``torch/nn/utils/parametrizations.py`` (``_WeightNorm``: ``dim=None`` becomes ``-1``).
"""

import autograd.numpy as np


def reduced_axes(ndim, dim):
    """The axes the norm sums over: every axis but ``dim``; all of them for ``dim`` None or -1."""
    if dim is None or dim == -1:
        return tuple(range(ndim))
    k = dim + ndim if dim < 0 else dim
    return tuple(i for i in range(ndim) if i != k)


# [docs:forward-start]
def weight_norm(v, g, dim=0):
    axes = reduced_axes(np.ndim(v), dim)
    ss = np.sum(v * v, axis=axes, keepdims=True)  # (1) per slice: the sum of squares
    norm = np.sqrt(ss)  # (2) n, the saved statistic (keepdims)
    scale = g / norm  # (3) g / n, one factor per slice
    w = v * scale  # (4) like v
    return w
# [docs:forward-end]
