"""Mutant: the fused residual add's backward leaves the residual stream's own cotangent out of dresidual.

Bug class: a dropped skip-connection gradient.  ``h`` feeds the next block's
residual add, so its total cotangent is the norm's input gradient plus ``dh``;
this backward adds ``dh`` to ``dx`` but returns ``dresidual`` without it.
Seen in: Dao-AILab/quack PR #53 (the residual gradient of the RMSNorm prenorm
backward combined in the wrong place).
Affects: add_rms_norm_backward, add_layer_norm_backward (with dh).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def residual_grads(self, g, dh, x, residual):
        out = super().residual_grads(g, dh, x, residual)
        out["residual"] = self.finish(np.asarray(g["x"]), np.asarray(residual).dtype)  # the bug: no dh
        return out


BACKEND_INFO = {"name": "dresidual_missing_dh", "description": "dresidual lacks the cotangent dh of h"}
AFFECTS = ("add_rms_norm_backward", "add_layer_norm_backward")
DEMO_INPUT = _demo.demo("add_rms_norm_backward", _demo.cotangent((4, 16)), _demo.cotangent((4, 16), seed=7),
                        _demo.noncentred((4, 16)), _demo.noncentred((4, 16), seed=5), (16,))
export(Backend(), globals())
