"""Mutant: the fused residual add returns the residual stream unrounded (float32) instead of in its dtype.

Bug class: the residual returned in the wrong dtype.  ``h = x + residual`` is
formed in float32 and handed on without the rounding to ``residual_dtype``
(the input's dtype by default): downstream layers see values the unfused
model never had.  Seen in: vllm-project/vllm PR #43242 (GemmaRMSNorm's native
path returned the float16 model's residual in float32).  The corpus stores
``h`` with zero tolerance.
Affects: add_rms_norm, add_layer_norm and their _stats (half-precision h).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def residual_sum(self, x, residual, residual_dtype):
        h, hn = super().residual_sum(x, residual, residual_dtype)
        x, residual = np.asarray(x), np.asarray(residual)
        acc = np.float64 if np.float64 in (x.dtype, residual.dtype) else np.float32
        return x.astype(acc) + residual.astype(acc), hn  # the bug: the stored residual is not rounded


BACKEND_INFO = {"name": "residual_unrounded_output", "description": "fused add returns h unrounded (float32)"}
AFFECTS = ("add_rms_norm", "add_rms_norm_stats", "add_layer_norm", "add_layer_norm_stats")
DEMO_INPUT = _demo.demo("add_rms_norm", _demo.noncentred((4, 16), dtype=_demo.BF16),
                        _demo.noncentred((4, 16), seed=5, dtype=_demo.BF16), (16,))
export(Backend(), globals())
