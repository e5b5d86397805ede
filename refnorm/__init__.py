"""refnorm: the executable specification of neural-network normalization layers.

Public API (names, argument order and defaults as ``torch.nn.functional``)::

    batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5)
    layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5)
    instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5)
    group_norm(x, num_groups, weight=None, bias=None, eps=1e-5)
    rms_norm(x, normalized_shape, weight=None, eps=None)

and for each ``<op>_backward(dy, <the forward's arguments>) -> dict`` of the
gradients of the given differentiable arguments (``"x"``, ``"weight"``,
``"bias"``), plus ``batch_norm_running_stats`` and
``instance_norm_running_stats``, and ``<op>_stats(<the forward's
arguments>) -> (y, {"mean": ..., "rstd": ...})`` exposing the saved statistics
(shaped like the reduction sets; RMSNorm saves only ``rstd``).  Inputs of dtype float16, bfloat16
(ml_dtypes), float32 or float64 are upcast exactly; every result is float64;
no input is ever modified.
"""

from ._registry import OpSpec, registry
from ._version import __version__
from .ops.batch_norm import batch_norm, batch_norm_backward, batch_norm_running_stats, batch_norm_stats
from .ops.group_norm import group_norm, group_norm_backward, group_norm_stats
from .ops.instance_norm import (instance_norm, instance_norm_backward, instance_norm_running_stats,
                                instance_norm_stats)
from .ops.layer_norm import layer_norm, layer_norm_backward, layer_norm_stats
from .ops.rms_norm import rms_norm, rms_norm_backward, rms_norm_stats

__all__ = [
    "OpSpec",
    "__version__",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_running_stats",
    "batch_norm_stats",
    "group_norm",
    "group_norm_backward",
    "group_norm_stats",
    "instance_norm",
    "instance_norm_backward",
    "instance_norm_running_stats",
    "instance_norm_stats",
    "layer_norm",
    "layer_norm_backward",
    "layer_norm_stats",
    "registry",
    "rms_norm",
    "rms_norm_backward",
    "rms_norm_stats",
]
