"""keras: Keras 3 normalization layers on Keras's numpy backend (``KERAS_BACKEND=numpy``).

The layers, their arguments, dtype policies, statistics and running-statistics convention are
those of :mod:`refnorm.conformance.backends._keras`: ``LayerNormalization``,
``RMSNormalization``, ``BatchNormalization`` (training and inference, moving statistics in
the ``"onnx"``/``"flax"`` convention), ``GroupNormalization`` (also for InstanceNorm with input
statistics), every semantic option passed explicitly (``epsilon``, axes, ``momentum``,
``center``/``scale``, ``dtype``).  Keras picks its backend once per process: importing this
module after Keras was imported with another backend raises ``ImportError``.

The numpy backend has no automatic differentiation: every ``<op>_backward`` (and forward mode,
double backward) is not implemented.
"""

from __future__ import annotations

import numpy as np

from . import _keras
from ._keras import (
    batch_norm, batch_norm_running_stats, batch_norm_stats, group_norm, group_norm_stats, instance_norm,
    instance_norm_running_stats, instance_norm_stats, layer_norm, layer_norm_stats, rms_norm, rms_norm_stats)

keras = _keras.import_keras("numpy")

BACKEND_INFO = {
    "name": "keras",
    "description": f"keras {keras.__version__} layers on the numpy backend (numpy {np.__version__}); forward, "
                   "statistics and moving statistics only (the numpy backend has no autodiff)",
}


def _to_tensor(a):
    return keras.ops.convert_to_tensor(np.array(a, copy=True))


def _to_numpy(t):
    return np.array(keras.ops.convert_to_numpy(t), copy=True)


_keras.bind(_keras.Adapter(keras, _to_tensor, _to_numpy))

_NO_AUTODIFF = "Keras's numpy backend has no automatic differentiation"


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    raise NotImplementedError(_NO_AUTODIFF)


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    raise NotImplementedError(_NO_AUTODIFF)


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    raise NotImplementedError(_NO_AUTODIFF)


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                        eps=1e-5):
    raise NotImplementedError(_NO_AUTODIFF)


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                           momentum=0.1, eps=1e-5):
    raise NotImplementedError(_NO_AUTODIFF)

__all__ = ["BACKEND_INFO", "batch_norm", "batch_norm_running_stats", "batch_norm_stats", "group_norm",
           "group_norm_stats", "instance_norm", "instance_norm_running_stats", "instance_norm_stats", "layer_norm",
           "layer_norm_stats", "rms_norm", "rms_norm_stats", "layer_norm_backward", "rms_norm_backward",
           "group_norm_backward", "batch_norm_backward", "instance_norm_backward"]
