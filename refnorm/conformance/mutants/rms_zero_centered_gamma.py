"""Mutant: RMSNorm multiplies by ``1 + weight`` (the Gemma / zero-centred-gamma variant) for the PyTorch op.

Bug class: variant confusion (E17): Gemma's ``x_hat * (1 + w)`` and
TransformerEngine's ``zero_centered_gamma`` are distinct ops from
``torch.nn.functional.rms_norm``.  Seen in: Liger-Kernel ``casting_mode`` /
``offset`` (``test/transformers/test_rms_norm.py`` GemmaRMSNorm);
NVIDIA/TransformerEngine ``tests/cpp/operator/test_normalization.cu``.
Affects: rms_norm, rms_norm_backward, rms_norm_stats (with a weight).
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def rms_weight(self, w):
        return None if w is None else 1 + w  # the bug


BACKEND_INFO = {"name": "rms_zero_centered_gamma", "description": "RMSNorm uses 1 + weight (Gemma offset)"}
AFFECTS = ("rms_norm", "rms_norm_backward", "rms_norm_stats")
DEMO_INPUT = _demo.demo("rms_norm", _demo.noncentred((4, 8)), (8,), _demo.affine((8,))[0])
export(Backend(), globals())
