"""Mutant: a "memory-efficient" backward that recomputes ``xhat = (y - bias) / weight`` from the output.

Bug class: gamma ~ 0 with an output-recomputing backward (E13): NaN/inf
where weight == 0, precision loss where it is tiny.  Seen in: apex
``csrc/layer_norm_cuda_kernel.cu:414-422`` (``memory_efficient=True``);
ServiceNow/Fast-LLM#220 (NaN with zero RMSNorm weights).
Affects: every ``<op>_backward`` with a weight (dx, dweight).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def recompute_xhat(self, view, mean, rstd, w, b):
        y = self.affine(self.normalize(view.x, mean, rstd), w, b)
        y = y.astype(view.dtype).astype(view.x.dtype)  # the stored output
        with np.errstate(divide="ignore", invalid="ignore"):
            xhat = y if b is None else y - b
            return xhat if w is None else xhat / w  # the bug: divides by weight


BACKEND_INFO = {"name": "memory_efficient_backward", "description": "xhat recomputed as (y - bias) / weight (E13)"}
AFFECTS = ("layer_norm_backward", "rms_norm_backward", "group_norm_backward", "batch_norm_backward",
           "instance_norm_backward")
_w, _b = _demo.affine((8,))
_w[2] = 0.0
DEMO_INPUT = _demo.demo("layer_norm_backward", _demo.cotangent((4, 8)), _demo.noncentred((4, 8)), (8,), _w, _b)
export(Backend(), globals())
