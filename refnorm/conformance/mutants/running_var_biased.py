"""Mutant: ``running_var`` updated with the biased batch variance in the torch convention.

Bug class: running-statistics convention (E5): PyTorch stores the
*unbiased* variance (``torch/_decomp/decompositions.py:2105-2115``); ONNX and
Flax the biased one.  Seen in: pytorch#19902, microsoft/onnxscript PR #1289,
ml-explore/mlx PR #3817.
Affects: batch_norm_running_stats, instance_norm_running_stats (convention="torch").
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def running_var_correction(self, convention):
        return 0  # the bug: biased for torch too


BACKEND_INFO = {"name": "running_var_biased", "description": "torch-convention running_var uses the biased variance"}
AFFECTS = ("batch_norm_running_stats", "instance_norm_running_stats")
DEMO_INPUT = _demo.demo("batch_norm_running_stats", _demo.noncentred((2, 3, 2)), _demo.rng(3).standard_normal(3),
                        1.0 + _demo.rng(4).random(3), 0.5)
export(Backend(), globals())
