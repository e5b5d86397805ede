"""Mutant: eps rounded to the input dtype before use (1e-8 -> 0 in float16).

Bug class: eps extremes (E15): float16 cannot hold eps below 6e-8, so a
constant row gives 0/0.  Seen in: pytorch#86580 (eps exported as 0.0 in
fp16); keras-team/keras#22586 (fp16 GroupNorm, eps 1e-12 -> NaN).
Affects: every normalizing function with a half dtype (forward, backward, stats).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def cast_eps(self, eps, dtype):
        return np.asarray(eps).astype(dtype).astype(self.acc_dtype(dtype))[()]  # the bug


BACKEND_INFO = {"name": "eps_in_input_dtype", "description": "eps rounded to the (half) input dtype (E15)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "rms_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", np.full((2, 16), 0.1, np.float16), (16,), None,
                        np.linspace(-1, 1, 16).astype(np.float16), 1e-8)
export(Backend(), globals())
