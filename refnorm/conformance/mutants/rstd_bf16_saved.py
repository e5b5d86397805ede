"""Mutant: the saved statistics (mean, rstd) stored in bfloat16.

Bug class: stash / statistic dtype (E18): onnxruntime PR #5215 (stash
mean/var as bf16); the onnx reference ops cast Mean/InvStdDev to X's dtype
(fixed by onnx PR #8439); FlagGems PR #221 (save mean/rstd in fp32).
Affects: ``<op>_stats`` only (y and the gradients use the float32 values).
"""

import ml_dtypes
import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def store_stat(self, a):
        return np.asarray(a).astype(ml_dtypes.bfloat16)  # the bug


BACKEND_INFO = {"name": "rstd_bf16_saved", "description": "saved mean/rstd rounded to bfloat16 (E18)"}
AFFECTS = ("layer_norm_stats", "rms_norm_stats", "group_norm_stats", "batch_norm_stats", "instance_norm_stats")
DEMO_INPUT = _demo.demo("layer_norm_stats", _demo.noncentred((64, 32), scale=0.37), (32,))
export(Backend(), globals())
