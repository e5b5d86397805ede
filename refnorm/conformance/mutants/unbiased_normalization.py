"""Mutant: the unbiased variance (divisor n - 1) used to normalize.

Bug class: biased vs unbiased variance (E26: an unbiased ``torch.var``
reference flagged in the review of NVIDIA/cudnn-frontend PR #432; the
standard layers normalize with the biased variance,
docs/ops/index.md#standard-layers).  Affects: every op that normalizes with batch
statistics (forward, backward, stats); RMSNorm divides by n - 1 too.
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def variance_divisor(self, n):
        return n - 1  # the bug


BACKEND_INFO = {"name": "unbiased_normalization", "description": "normalizes with the unbiased (n-1) variance"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((5, 4)), (4,))
export(Backend(), globals())
