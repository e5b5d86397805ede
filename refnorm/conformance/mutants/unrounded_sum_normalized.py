"""Mutant: the fused residual add stores h rounded but normalizes the unrounded float32 sum.

Bug class: the variance of the unrounded sum.  The kernel keeps ``x + residual``
in float32 registers for the statistics and the output, and rounds only the
residual it stores: ``y`` is then not the normalization of the ``h`` the next
layer receives, and differs from the unfused model wherever the rounding of
``h`` matters (a large mean, E1).  Seen in: vllm-project/vllm#52104 (the CUDA
``fused_add_rms_norm`` and the native path disagree on exactly this);
vllm-project/vllm-omni PR #6878 (a fused Triton kernel fixed to round first).
Affects: add_layer_norm, add_rms_norm and their _backward / _stats (half-precision h).  Within the
tolerance model ``y`` alone does not separate the two functions (the rounding of ``h`` moves it by
about the allowance for a saved mean rounded to the dtype); the saved ``rstd`` of the bfloat16 E1
case ``add_layer_norm/e1_mean100_rounded_h`` does.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def residual_sum(self, x, residual, residual_dtype):
        h, _ = super().residual_sum(x, residual, residual_dtype)
        x, residual = np.asarray(x), np.asarray(residual)
        acc = np.float64 if np.float64 in (x.dtype, residual.dtype) else np.float32
        return h, x.astype(acc) + residual.astype(acc)  # the bug: the norm sees the unrounded sum


BACKEND_INFO = {"name": "unrounded_sum_normalized", "description": "fused add normalizes the unrounded sum"}
AFFECTS = ("add_layer_norm", "add_layer_norm_backward", "add_layer_norm_stats", "add_rms_norm",
           "add_rms_norm_backward", "add_rms_norm_stats")
DEMO_INPUT = _demo.demo("add_layer_norm", (100 + _demo.rng(0).standard_normal((4, 16))).astype(_demo.BF16),
                        (0.7 * _demo.rng(1).standard_normal((4, 16))).astype(_demo.BF16), (16,))
export(Backend(), globals())
