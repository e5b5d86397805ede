"""Mutant: eps added to the standard deviation, ``1 / (sqrt(var) + eps)``.

Bug class: eps placement, a convention every suite must pin: the standard
layers put eps inside the square root (docs/ops/index.md#standard-layers);
GN+ and Qiao's WS add it to the std
(docs/differences.md#diff-seed-conventions).  Seen in: hand-written kernels
and the "std + eps" form of several early GroupNorm/LayerNorm ports (e.g.
the ``(x - mean) / (std + eps)`` of the Annotated Transformer's LayerNorm).
Affects: every normalizing function (forward, backward, stats).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def rstd_of(self, m2, eps, s):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return 1 / (s * np.sqrt(m2) + eps)  # the bug


BACKEND_INFO = {"name": "eps_outside_sqrt", "description": "1 / (std + eps) instead of 1 / sqrt(var + eps)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((4, 16), scale=0.05), (16,), None, None, 1e-3)
export(Backend(), globals())
