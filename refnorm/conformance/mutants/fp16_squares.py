"""Mutant: the squares of the second pass computed in float16 (no scaling).

Bug class: float16 overflow of squares / sums of squares (E6): 256 * 256 =
inf in float16.  Seen in: the onnx 1.23.2 reference evaluator for fp16
LayerNormalization-17 / RMSNormalization-23 (fixed by onnx PR #8439);
onnxruntime#29034 (SkipSimplifiedLayerNorm fp16 zeros); brainchop-cli PR #56.
Affects: every op computing batch statistics (forward, backward, stats),
for inputs of any dtype.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def sum_squares(self, xc, axes):
        with np.errstate(over="ignore", invalid="ignore"):
            h = xc.astype(np.float16)
            sq = (h * h).astype(xc.dtype)  # the bug: float16 squares
        return self.reduce_sum(sq, axes), xc.dtype.type(1)


BACKEND_INFO = {"name": "fp16_squares", "description": "squares computed in float16 (E6 overflow)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", np.array([[256.0, -256.0], [1.0, 2.0]], np.float16), (2,))
export(Backend(), globals())
