"""Mutant: torch-convention momentum applied to the old value, ``m * old + (1 - m) * new``.

Bug class: momentum direction (E5): "the ``momentum`` in PyTorch is
``1 - momentum`` in ONNX" (microsoft/onnxscript PR #1289); pytorch#19902.
Affects: batch_norm_running_stats, instance_norm_running_stats (convention="torch").
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def momentum_factor(self, momentum, num_batches_tracked, convention):
        f = super().momentum_factor(momentum, num_batches_tracked, convention)
        return 1.0 - f if convention == "torch" else f  # the bug


BACKEND_INFO = {"name": "reversed_momentum", "description": "torch momentum weights the old statistic"}
AFFECTS = ("batch_norm_running_stats", "instance_norm_running_stats")
DEMO_INPUT = _demo.demo("batch_norm_running_stats", _demo.noncentred((4, 3, 2)), _demo.rng(3).standard_normal(3),
                        1.0 + _demo.rng(4).random(3), 0.1)
export(Backend(), globals())
