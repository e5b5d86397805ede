"""Mutant: the zero-centred scale ``offset + weight`` is formed in bfloat16.

Bug class: a variant computed in too narrow a dtype (E17).  With the small
weights of a trained zero-centred model, ``1 + w`` rounded to bfloat16 keeps
only 7 bits of ``w`` (``1 + 2**-8`` is ``1.0``): the output is off by up to
2**-9 relative in every dtype.  Seen in: vllm-project/vllm PR #3653 (Gemma
RMSNorm's ``1 + weight`` in bfloat16, where the reference uses float32),
linkedin/Liger-Kernel PR #1462 (the offset added to bfloat16 weights before
the upcast) and Liger's ``casting_mode="none"``.
Affects: layer_norm, rms_norm and their _backward / _stats, with offset != 0.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def offset_scale(self, w, offset, backward=False):
        if w is None or offset == 0.0:
            return w
        return (np.float32(offset) + w.astype(np.float32)).astype(_demo.BF16).astype(w.dtype)  # the bug


BACKEND_INFO = {"name": "offset_bf16_scale", "description": "offset + weight rounded to bfloat16"}
AFFECTS = ("layer_norm", "layer_norm_backward", "layer_norm_stats", "rms_norm", "rms_norm_backward", "rms_norm_stats")
DEMO_INPUT = _demo.demo("rms_norm", _demo.noncentred((4, 64)), (64,),
                        (0.05 * _demo.rng(3).standard_normal(64)).astype(np.float32), 1e-6, offset=1.0)
export(Backend(), globals())
