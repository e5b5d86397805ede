"""Dynamic Tanh (DyT): an elementwise squashing that replaces a normalization layer.

.. math::

   y = \\gamma \\odot \\tanh(\\alpha\\, x) + \\beta

``alpha`` is ONE learnable scalar shared by every element; ``gamma`` (weight)
and ``beta`` (bias) are per element of the LAST dimension of ``x``, each
optional.  There are no statistics: nothing is reduced in the forward, so a
sample's output depends on that sample alone and the layer is the same in
training and evaluation.

Shapes
    x: ``(*, C)`` (at least one dimension; the parameters lie on the last);
    alpha: a Python real number, a 0-d array or a shape-``(1,)`` array (its
    gradient has the shape it was given); weight, bias: ``(C,)`` or None.

Conventions
    The "channels last" form of the authors' ``DynamicTanh`` module
    (``channels_last=True``): ``x = torch.tanh(self.alpha * x)`` then
    ``x * self.weight + self.bias``, the affine over the last dimension.  The
    module's ``channels_last=False`` branch (``weight[:, None, None]``, over
    dimension 1 of an ``(N, C, H, W)`` map) is a different layout, not this op:
    give it a channels-last view.  ``alpha`` is initialised to 0.5 in the
    module (``alpha_init_value``; 0.5 for the paper's ViT/ConvNeXt models, other
    values for LLMs), ``weight`` to ones and ``bias`` to zeros; refnorm takes
    them as arguments without defaults for ``alpha``, and ``weight=None`` /
    ``bias=None`` mean "no scale" / "no shift".

References
    Zhu, Chen, He, LeCun & Liu, "Transformers without Normalization", CVPR 2025,
    arXiv:2503.10622; code: ``jiachenzhu/DyT``, ``dynamic_tanh.py``
    (``DynamicTanh``); the choices and defaults: docs/ops/dyt.md#dyt-defaults.
"""

import autograd.numpy as np


# [docs:forward-start]
def dyt(x, alpha, weight=None, bias=None):
    z = np.reshape(alpha, ()) * x  # (1) (*, C): one scalar alpha
    t = np.tanh(z)  # (2) (*, C)
    y = t if weight is None else t * weight  # (3) (*, C): weight over the last dim
    return y if bias is None else y + bias  # (4) (*, C)
# [docs:forward-end]
