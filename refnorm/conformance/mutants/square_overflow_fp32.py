"""Mutant: the second pass squares unscaled float32 values (``sum((x - mean)**2)`` overflows near 1e20).

Bug class: float32 overflow at large magnitudes (E7).  Seen in: PyTorch PR
#178123 (fixes pytorch#162489: Welford m2 overflow -> zeros on CPU, NaN on CUDA).
Affects: every op computing batch statistics, for |x| beyond ~1e19 in float32.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def sum_squares(self, xc, axes):
        with np.errstate(over="ignore", invalid="ignore"):
            return self.reduce_sum(xc * xc, axes), xc.dtype.type(1)  # the bug: no scaling


BACKEND_INFO = {"name": "square_overflow_fp32", "description": "unscaled float32 squares overflow (E7)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", (1e30 * _demo.rng(0).standard_normal((4, 64))).astype(np.float32), (64,))
export(Backend(), globals())
