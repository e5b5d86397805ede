"""Mutant: the backward drops the variance term ``xhat * c2``, ``c2 = mean(g * xhat)``.

Bug class: incomplete hand-derived backward (treating rstd as a constant;
docs/edge-cases.md#inputs-that-can-fail).  The complete formula is llm.c's
``dnorm - mean(dnorm) - norm*mean(dnorm*norm)`` (karpathy/llm.c
``doc/layernorm/layernorm.md``) and the ``c2`` term of
docs/ops/layer_norm.md#the-backward-step-by-step.
Affects: every ``<op>_backward`` with batch statistics, RMSNorm included.
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def backward_terms(self, g, xhat, axes, n, center):
        c1, _ = super().backward_terms(g, xhat, axes, n, center)
        return c1, 0  # the bug


BACKEND_INFO = {"name": "backward_no_var_term", "description": "dx without the xhat * mean(g * xhat) term"}
AFFECTS = ("layer_norm_backward", "group_norm_backward", "batch_norm_backward", "instance_norm_backward",
           "rms_norm_backward")
DEMO_INPUT = _demo.demo("rms_norm_backward", _demo.cotangent((4, 8)), _demo.noncentred((4, 8)), (8,),
                        _demo.affine((8,))[0])
export(Backend(), globals())
