"""THE DEFINITIONS: every normalizer as plain ``autograd.numpy``.

Each module's docstring is the specification of its op (definition, shapes,
conventions, references).  The functions take the public signature, assume
already-validated float64 arrays, and are short and staged, one operation a
line.  Differentiating them with HIPS ``autograd`` is refnorm's autodiff
specification: every hand-derived backward in :mod:`refnorm.ops` is tested
against it.  They are not fast and not meant to be.
"""

from . import batch_norm, group_norm, instance_norm, layer_norm, rms_norm

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "rms_norm"]
