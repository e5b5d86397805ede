"""Mutant: BatchNorm in eval mode (``training=False``) normalizes with the batch statistics.

Bug class: train/eval mode confusion (docs/ops/batch_norm.md#bn-definition:
eval normalizes with the running statistics; PyTorch's module falls back to
batch statistics only when it tracks none).  Seen in:
pytorch#1381-era reports of "model.eval() has no effect" in hand-rolled BN,
ONNX exporters mapping BN to training mode.
Affects: batch_norm, batch_norm_backward, batch_norm_stats (training=False).
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def bn_statistics(self, view, running_mean, running_var, training, momentum):
        return None  # the bug: always batch statistics


BACKEND_INFO = {"name": "bn_eval_batch_stats", "description": "BatchNorm eval uses batch statistics"}
AFFECTS = ("batch_norm", "batch_norm_backward", "batch_norm_stats")
_C = 3
DEMO_INPUT = _demo.demo("batch_norm", _demo.noncentred((4, _C, 5)), _demo.rng(3).standard_normal(_C).astype("float32"),
                        (0.5 + _demo.rng(4).random(_C)).astype("float32"), None, None, False)
export(Backend(), globals())
