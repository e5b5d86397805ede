"""Mutant: ``rms_norm(eps=None)`` takes ``finfo(x.dtype).eps`` (the documented reading).

Bug class: default-eps semantics (E16): the ``nn.RMSNorm`` docs say
``torch.finfo(x.dtype).eps`` and the OpInfo ``reference_rms_norm`` does so,
but the CPU kernel uses the float32 epsilon for float16/bfloat16
(docs/differences.md#diff-rms-eps; ``torch/nn/modules/normalization.py:368-371``).  For bfloat16
that is 0.0078125 instead of 1.19e-7.
Affects: rms_norm, rms_norm_backward, rms_norm_stats with eps=None and a half dtype.
"""

import ml_dtypes

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def rms_default_eps(self, dtype):
        return float(ml_dtypes.finfo(dtype).eps)  # the bug


BACKEND_INFO = {"name": "rms_eps_finfo_dtype", "description": "RMSNorm eps=None -> finfo(x.dtype).eps (E16)"}
AFFECTS = ("rms_norm", "rms_norm_backward", "rms_norm_stats")
DEMO_INPUT = _demo.demo("rms_norm", (0.01 * _demo.rng(0).standard_normal((4, 64))).astype(_demo.BF16), (64,))
export(Backend(), globals())
