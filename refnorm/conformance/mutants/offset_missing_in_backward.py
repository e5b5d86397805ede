"""Mutant: the backward scales by ``weight`` where the forward scaled by ``offset + weight``.

Bug class: a variant honoured in one direction only (E17): ``dx`` uses
``g = weight * dy`` instead of ``(offset + weight) * dy``, so with zero-centred
weights (``w ~ 0``) the input gradient nearly vanishes.  Seen in:
NVIDIA/TransformerEngine PR #67 (review: the backward kernels did not receive
``zero_centered_gamma``), NVIDIA/Megatron-LM PR #6859 (the ``+ 1`` honoured in
one direction only).
Affects: layer_norm_backward, rms_norm_backward, with offset != 0.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def offset_scale(self, w, offset, backward=False):
        if backward:
            return w  # the bug: the offset is forgotten in the backward
        return super().offset_scale(w, offset, backward)


BACKEND_INFO = {"name": "offset_missing_in_backward", "description": "backward uses weight, not offset + weight"}
AFFECTS = ("layer_norm_backward", "rms_norm_backward")
DEMO_INPUT = _demo.demo("layer_norm_backward", _demo.cotangent((4, 16)), _demo.noncentred((4, 16)), (16,),
                        (0.05 * _demo.rng(3).standard_normal(16)).astype(np.float32), None, 1e-5, offset=1.0)
export(Backend(), globals())
