"""Mutant: BatchNorm training normalizes with the *updated running* statistics (ONNX BatchNormalization-9).

Bug class: running-statistics semantics (E5): the legacy ONNX BN-9
reference (``onnx/reference/ops/op_batch_normalization.py:76-88``) normalizes
with ``momentum * running + (1 - momentum) * batch`` even in training.
Affects: batch_norm, batch_norm_backward, batch_norm_stats (training=True with running stats).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def bn_statistics(self, view, running_mean, running_var, training, momentum):
        if not training or running_mean is None:
            return super().bn_statistics(view, running_mean, running_var, training, momentum)
        mean, var = self.running_moments(view.x, view.stat_axes, 0)
        m = view.x.dtype.type(0.1 if momentum is None else momentum)
        rm = running_mean.astype(view.x.dtype).reshape(mean.shape)
        rv = running_var.astype(view.x.dtype).reshape(var.shape)
        new_mean = m * mean + (1 - m) * rm  # the bug: normalize with the updated running statistics
        new_var = m * var + (1 - m) * rv
        return new_mean, self.rstd_of(new_var, view.eps, view.x.dtype.type(1))


BACKEND_INFO = {"name": "onnx_bn9_updated_stats", "description": "BN training uses updated running stats (ONNX BN-9)"}
AFFECTS = ("batch_norm", "batch_norm_backward", "batch_norm_stats")
DEMO_INPUT = _demo.demo("batch_norm", _demo.noncentred((4, 3, 5)), np.zeros(3, np.float32), np.ones(3, np.float32),
                        None, None, True)
export(Backend(), globals())
