"""ScaleNorm (Nguyen & Salazar 2019): scale each row to the length ``g``.

.. math::

   n = \\lVert x \\rVert_2 = \\Big(\\sum_i x_i^2\\Big)^{1/2}, \\qquad
   r = \\frac{1}{\\max(n, \\epsilon)}, \\qquad y_i = g\\, x_i\\, r

over the LAST dimension of ``x``, with ONE learnable scalar ``g`` shared by
every row and every element (the paper initialises it to ``sqrt(d)``,
``d = x.shape[-1]``).

Shapes
    x: ``(*, d)``; g: a Python float, a 0-d array or an array of shape ``(1,)``
    (its gradient has the shape given); saved statistic ``rnorm`` (``r``, the
    reciprocal of the clamped norm, like LayerNorm's rstd): ``x.shape[:-1]``.

Conventions
    * The L2 norm, not the RMS: ``n = sqrt(sum x^2)``, with no ``1/d`` (RMSNorm
      divides by ``sqrt(mean x^2)``, i.e. ``n / sqrt(d)``: a different layer).
    * ``eps`` is a floor on the norm, ``max(n, eps)`` (the authors' code:
      ``norm.clamp(min=eps)``), not added to it (``n + eps``) nor to the sum
      of squares.
    * The derivative of the clamp is PyTorch's ``clamp(min=eps)`` backward: the
      gradient reaches ``n`` where ``n >= eps`` -- including the tie
      ``n == eps`` -- and nothing where ``n < eps`` (the clamp is active: the
      row is scaled by the constant ``g / eps``).  Here ``np.where(n >= eps,
      n, eps)`` says exactly that (``np.maximum`` would split a tie 0.5/0.5).
    * A row of zeros (``eps > 0``): the clamp is active, ``y = 0``, ``rnorm =
      1/eps``, ``dx = g dy / eps`` (autograd of this reference gives NaN there,
      from ``sqrt``'s derivative at 0 times 0; refnorm's kernels and PyTorch
      give the clamp's zero).  With ``eps = 0`` a zero row is ``0 * inf =
      NaN``, as in PyTorch.

References
    T. Q. Nguyen and J. Salazar, "Transformers without Tears: Improving the
    Normalization of Self-Attention", IWSLT 2019, arXiv:1910.05895, eq. (8)
    (``ScaleNorm(x; g) = g x / ||x||``) and the authors' code, GitHub
    ``tnq177/transformers_without_tears``, ``layers.py`` at commit 02ef063:
    ``self.scale = Parameter(torch.tensor(scale))`` (a 0-d scalar, built as
    ``ScaleNorm(args.embed_dim ** 0.5)``, ``eps=1e-5``) and
    ``norm = self.scale / torch.norm(x, dim=-1, keepdim=True).clamp(min=self.eps);
    return x * norm``.
"""

import autograd.numpy as np


# [docs:forward-start]
def scale_norm(x, g, eps=1e-5):
    ss = np.sum(x * x, axis=-1, keepdims=True)  # (1) (*, 1) sum of squares
    norm = np.sqrt(ss)  # (2) (*, 1) the L2 norm n
    clamped = np.where(norm >= eps, norm, eps)  # (3) (*, 1) max(n, eps), torch's clamp(min=eps) gradient
    rnorm = 1.0 / clamped  # (4) (*, 1) r, the saved statistic
    xhat = x * rnorm  # (5) (*, d) the unit-length row (|| xhat || = 1 unless clamped)
    y = g * xhat  # (6) (*, d)
    return y
# [docs:forward-end]
