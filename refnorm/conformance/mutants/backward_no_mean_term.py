"""Mutant: the backward drops the mean term ``c1 = mean(g)``.

Bug class: incomplete hand-derived backward, caught only with a random
cotangent and non-centred x: with a ones cotangent and a uniform weight the
correct dx and this one are both zero (docs/edge-cases.md#inputs-that-can-fail).
Seen in: derivations that treat the mean as a constant (CS231n
staged-backprop errata; llm.c ``doc/layernorm`` derivation discussion).
Affects: layer_norm_backward, group_norm_backward, batch_norm_backward
(training), instance_norm_backward (RMSNorm has no c1 term).
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def backward_terms(self, g, xhat, axes, n, center):
        _, c2 = super().backward_terms(g, xhat, axes, n, center)
        return 0, c2  # the bug


BACKEND_INFO = {"name": "backward_no_mean_term", "description": "dx without the mean(g) term"}
AFFECTS = ("layer_norm_backward", "group_norm_backward", "batch_norm_backward", "instance_norm_backward")
DEMO_INPUT = _demo.demo("layer_norm_backward", _demo.cotangent((4, 8)), _demo.noncentred((4, 8)), (8,),
                        *_demo.affine((8,)))
export(Backend(), globals())
