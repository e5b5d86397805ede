"""refnorm: the executable specification of neural-network normalization layers.

Public API (names, argument order and defaults as ``torch.nn.functional``)::

    batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5)
    layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5)
    instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5)
    group_norm(x, num_groups, weight=None, bias=None, eps=1e-5)
    rms_norm(x, normalized_shape, weight=None, eps=None)

(LayerNorm and RMSNorm also take a keyword-only ``offset=0.0``: the scale is
``offset + weight``, zero-centred weights), the fused residual adds, each
returning ``(y, h)`` with ``h = x + residual`` rounded once to ``residual_dtype``::

    add_rms_norm(x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None)
    add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                   residual_dtype=None)

and for each ``<op>_backward(dy, <the forward's arguments>) -> dict`` of the
gradients of the given differentiable arguments (``"x"``, ``"weight"``,
``"bias"``), plus ``batch_norm_running_stats`` and
``instance_norm_running_stats``, and ``<op>_stats(<the forward's
arguments>) -> (y, {"mean": ..., "rstd": ...})`` exposing the saved statistics
(shaped like the reduction sets; RMSNorm saves only ``rstd``); handed back as
``<op>_backward(..., stats=...)`` (keyword only) they spare the backward its
statistics pass, with the same bits.  Inputs of dtype float16, bfloat16
(ml_dtypes), float32 or float64 are upcast exactly; every result is float64;
no input is ever modified.

The four seed layers (docs/ops/index.md#seed-layers), each with ``<op>_backward`` and, where it
saves statistics, ``<op>_stats``::

    proxy_norm(x, weight, bias, proxy_shift, proxy_scale, activation="relu", eps=0.03, num_points=200)
    gn_plus(x, num_groups, weight, bias, mix, eps=1e-5, variant="gn_first", batch_stats="position")
    weight_standardization(weight, gain=None, eps=None, style="deepmind", *, estimator=None,
                           eps_mode=None, fan_in_scaling=None)
    batch_layer_norm(x, weight, bias, batch_size=None, eps=1e-3, *, training=True, moving_stats=None,
                     flags=(True, True, False, False), feature_axis=-1, batch_stats="position",
                     weight_offset=1e-4, sqrt_d_scale=True)

and Dynamic Tanh (docs/ops/dyt.md), an elementwise layer with no statistics (no ``_stats``)::

    dyt(x, alpha, weight=None, bias=None)      # weight * tanh(alpha * x) + bias, affine on the last dim

and ScaleNorm (Nguyen & Salazar 2019; ``g`` one scalar, ``y = g x / max(||x||_2, eps)`` over the last
dimension, saved statistic ``rnorm``; its backward returns ``{"x", "g"}``)::

    scale_norm(x, g, eps=1e-5)

and Lp normalization, ``torch.nn.functional.normalize`` (``normalize_backward`` returns ``{"x"}``,
``normalize_stats`` the clamped denominator ``norm``)::

    normalize(x, p=2.0, dim=1, eps=1e-12)

and Filter Response Normalization with its Thresholded Linear Unit (``tau=None``: no TLU)::

    filter_response_norm(x, weight, bias, tau=None, eps=1e-6)

and Local Response Normalization, ``torch.nn.functional.local_response_norm`` (a window of ``size``
channels; ``local_response_norm_backward`` returns ``{"x"}``, ``local_response_norm_stats`` the
denominator ``div``)::

    local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0)

and Weight Normalization, ``torch._weight_norm`` (``w = v * (g / ||v||)``, the norm over every dimension
but ``dim``; ``dim=None`` or ``-1``: the whole tensor; ``weight_norm_backward`` returns ``{"v", "g"}``,
``weight_norm_stats`` the norm ``norm``)::

    weight_norm(v, g, dim=0)

and EvoNorm-B0 (Liu et al. 2020, timm's ``EvoNorm2dB0``; x ``(N, C, H, W)``; ``running_var`` required when
``training=False``; its update, timm's ``momentum * n/(n-1)``, is ``evo_norm_b0_running_stats(x, running_var,
momentum=0.1)``; no ``_stats``)::

    evo_norm_b0(x, weight, bias, v, running_var=None, training=True, eps=1e-3)

and EvoNorm-S0 (Liu et al. 2020; timm's ``EvoNorm2dS0``: ``y = weight x sigmoid(v x) / group_std(x) + bias``,
saved group ``mean`` and ``rstd``; its backward returns ``{"x", "weight", "bias", "v"}``)::

    evo_norm_s0(x, num_groups, weight, bias, v, eps=1e-5)

and Batch Renormalization (Ioffe 2017; BatchNorm with the correction ``r``, ``d`` toward the running
statistics, both constants for the derivatives; its running update is BatchNorm's)::

    batch_renorm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
                 r_max=3.0, d_max=5.0)
    batch_renorm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                               convention="torch")

and adaptive LayerNorm as in DiT (adaLN: LayerNorm without affine over the trailing ``normalized_shape``,
then the per-sample gain ``1 + scale`` and ``shift``, both ``(N, *normalized_shape)``, broadcast over
the dimensions between the batch and the normalized ones; its backward returns ``{"x", "scale", "shift"}``)::

    ada_layer_norm(x, normalized_shape, scale, shift, eps=1e-6)

and Adaptive Instance Normalization, AdaIN (the content ``x`` takes the per-(sample, channel) mean and
unbiased std of ``style``; ``adaptive_instance_norm_stats`` saves ``mean``, ``rstd``, ``style_mean``,
``style_std``)::

    adaptive_instance_norm(x, style, eps=1e-5)

plus ``proxy_quantiles`` (PN's K Gaussian quantiles), ``nonlinearity_gain`` /
``analytic_gain`` (the NF-Net gains), and BLN's moving statistics:
``batch_layer_norm_batch_stats`` (one batch's statistics, summed over an
epoch) and ``batch_layer_norm_moving_stats`` (the per-epoch update of the
authors' Keras callback).  The backward of ``weight_standardization`` returns
``{"weight", "gain"}``: its standardized argument is the weight.

Every op also has forward mode and second order (docs/autodiff.md)::

    <op>_jvp(tangents, <the forward's arguments>) -> (y, ty)     # fused ops: ((y, h), (ty, th))
    <op>_double_backward(cotangents, <the backward's arguments>) -> dict

``tangents`` is a dict keyed by differentiable argument name (``"x"``,
``"weight"`` ...; a missing key is a zero tangent).  The double backward is
the VJP of ``<op>_backward``: ``cotangents`` is keyed like the backward's
result, and the result is keyed ``"dy"`` (fused: also ``"dh"``), ``"x"`` and
the differentiable arguments given.
"""

from ._registry import OpSpec, registry
from ._version import __version__
from .ops.ada_layer_norm import (ada_layer_norm, ada_layer_norm_backward, ada_layer_norm_double_backward,
                                 ada_layer_norm_jvp, ada_layer_norm_stats)
from .ops.adaptive_instance_norm import (adaptive_instance_norm, adaptive_instance_norm_backward,
                                         adaptive_instance_norm_double_backward, adaptive_instance_norm_jvp,
                                         adaptive_instance_norm_stats)
from .ops.add_layer_norm import (add_layer_norm, add_layer_norm_backward, add_layer_norm_double_backward,
                                 add_layer_norm_jvp, add_layer_norm_stats)
from .ops.add_rms_norm import (add_rms_norm, add_rms_norm_backward, add_rms_norm_double_backward, add_rms_norm_jvp,
                               add_rms_norm_stats)
from .ops.batch_layer_norm import (batch_layer_norm, batch_layer_norm_backward, batch_layer_norm_batch_stats,
                                   batch_layer_norm_double_backward, batch_layer_norm_jvp,
                                   batch_layer_norm_moving_stats, batch_layer_norm_stats)
from .ops.batch_norm import (batch_norm, batch_norm_backward, batch_norm_double_backward, batch_norm_jvp,
                             batch_norm_running_stats, batch_norm_stats)
from .ops.batch_renorm import (batch_renorm, batch_renorm_backward, batch_renorm_double_backward, batch_renorm_jvp,
                               batch_renorm_running_stats, batch_renorm_stats)
from .ops.dyt import dyt, dyt_backward, dyt_double_backward, dyt_jvp
from .ops.evo_norm_b0 import (evo_norm_b0, evo_norm_b0_backward, evo_norm_b0_double_backward, evo_norm_b0_jvp,
                              evo_norm_b0_running_stats)
from .ops.evo_norm_s0 import (evo_norm_s0, evo_norm_s0_backward, evo_norm_s0_double_backward, evo_norm_s0_jvp,
                              evo_norm_s0_stats)
from .ops.filter_response_norm import (filter_response_norm, filter_response_norm_backward,
                                       filter_response_norm_double_backward, filter_response_norm_jvp,
                                       filter_response_norm_stats)
from .ops.gains import analytic_gain, nonlinearity_gain
from .ops.gn_plus import gn_plus, gn_plus_backward, gn_plus_double_backward, gn_plus_jvp
from .ops.group_norm import (group_norm, group_norm_backward, group_norm_double_backward, group_norm_jvp,
                             group_norm_stats)
from .ops.instance_norm import (instance_norm, instance_norm_backward, instance_norm_double_backward, instance_norm_jvp,
                                instance_norm_running_stats, instance_norm_stats)
from .ops.layer_norm import (layer_norm, layer_norm_backward, layer_norm_double_backward, layer_norm_jvp,
                             layer_norm_stats)
from .ops.local_response_norm import (local_response_norm, local_response_norm_backward,
                                      local_response_norm_double_backward, local_response_norm_jvp,
                                      local_response_norm_stats)
from .ops.normalize import normalize, normalize_backward, normalize_double_backward, normalize_jvp, normalize_stats
from .ops.proxy_norm import (proxy_norm, proxy_norm_backward, proxy_norm_double_backward, proxy_norm_jvp,
                             proxy_norm_stats, proxy_quantiles)
from .ops.rms_norm import rms_norm, rms_norm_backward, rms_norm_double_backward, rms_norm_jvp, rms_norm_stats
from .ops.scale_norm import (scale_norm, scale_norm_backward, scale_norm_double_backward, scale_norm_jvp,
                             scale_norm_stats)
from .ops.weight_norm import (weight_norm, weight_norm_backward, weight_norm_double_backward, weight_norm_jvp,
                              weight_norm_stats)
from .ops.weight_standardization import (weight_standardization, weight_standardization_backward,
                                         weight_standardization_double_backward, weight_standardization_jvp,
                                         weight_standardization_stats)

__all__ = [
    "OpSpec",
    "__version__",
    "ada_layer_norm",
    "ada_layer_norm_backward",
    "ada_layer_norm_double_backward",
    "ada_layer_norm_jvp",
    "ada_layer_norm_stats",
    "adaptive_instance_norm",
    "adaptive_instance_norm_backward",
    "adaptive_instance_norm_double_backward",
    "adaptive_instance_norm_jvp",
    "adaptive_instance_norm_stats",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_layer_norm_double_backward",
    "add_layer_norm_jvp",
    "add_layer_norm_stats",
    "add_rms_norm",
    "add_rms_norm_backward",
    "add_rms_norm_double_backward",
    "add_rms_norm_jvp",
    "add_rms_norm_stats",
    "analytic_gain",
    "batch_layer_norm",
    "batch_layer_norm_backward",
    "batch_layer_norm_batch_stats",
    "batch_layer_norm_double_backward",
    "batch_layer_norm_jvp",
    "batch_layer_norm_moving_stats",
    "batch_layer_norm_stats",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_double_backward",
    "batch_norm_jvp",
    "batch_norm_running_stats",
    "batch_norm_stats",
    "batch_renorm",
    "batch_renorm_backward",
    "batch_renorm_double_backward",
    "batch_renorm_jvp",
    "batch_renorm_running_stats",
    "batch_renorm_stats",
    "dyt",
    "dyt_backward",
    "dyt_double_backward",
    "dyt_jvp",
    "evo_norm_b0",
    "evo_norm_b0_backward",
    "evo_norm_b0_double_backward",
    "evo_norm_b0_jvp",
    "evo_norm_b0_running_stats",
    "evo_norm_s0",
    "evo_norm_s0_backward",
    "evo_norm_s0_double_backward",
    "evo_norm_s0_jvp",
    "evo_norm_s0_stats",
    "filter_response_norm",
    "filter_response_norm_backward",
    "filter_response_norm_double_backward",
    "filter_response_norm_jvp",
    "filter_response_norm_stats",
    "gn_plus",
    "gn_plus_backward",
    "gn_plus_double_backward",
    "gn_plus_jvp",
    "group_norm",
    "group_norm_backward",
    "group_norm_double_backward",
    "group_norm_jvp",
    "group_norm_stats",
    "instance_norm",
    "instance_norm_backward",
    "instance_norm_double_backward",
    "instance_norm_jvp",
    "instance_norm_running_stats",
    "instance_norm_stats",
    "layer_norm",
    "layer_norm_backward",
    "layer_norm_double_backward",
    "layer_norm_jvp",
    "layer_norm_stats",
    "local_response_norm",
    "local_response_norm_backward",
    "local_response_norm_double_backward",
    "local_response_norm_jvp",
    "local_response_norm_stats",
    "nonlinearity_gain",
    "normalize",
    "normalize_backward",
    "normalize_double_backward",
    "normalize_jvp",
    "normalize_stats",
    "proxy_norm",
    "proxy_norm_backward",
    "proxy_norm_double_backward",
    "proxy_norm_jvp",
    "proxy_norm_stats",
    "proxy_quantiles",
    "registry",
    "rms_norm",
    "rms_norm_backward",
    "rms_norm_double_backward",
    "rms_norm_jvp",
    "rms_norm_stats",
    "scale_norm",
    "scale_norm_backward",
    "scale_norm_double_backward",
    "scale_norm_jvp",
    "scale_norm_stats",
    "weight_norm",
    "weight_norm_backward",
    "weight_norm_double_backward",
    "weight_norm_jvp",
    "weight_norm_stats",
    "weight_standardization",
    "weight_standardization_backward",
    "weight_standardization_double_backward",
    "weight_standardization_jvp",
    "weight_standardization_stats",
]
