"""Mutant: dbias (and dweight) averaged over the rows instead of summed.

Bug class: parameter-gradient reduction (E9): a "mean" where the chain rule
gives a sum, which passes any test with a single row or a loss normalized
by the batch size (``.mean()`` losses).
Affects: every ``<op>_backward`` with bias (dbias); dweight keeps the sum.
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def param_grads(self, dy, xhat, view, wshape):
        dw, db = super().param_grads(dy, xhat, view, wshape)
        rows = dy.size // max(1, db.size)
        return dw, db / dy.dtype.type(rows)  # the bug


BACKEND_INFO = {"name": "dbias_mean", "description": "dbias as a mean over the rows, not a sum"}
AFFECTS = ("layer_norm_backward", "group_norm_backward", "batch_norm_backward", "instance_norm_backward")
DEMO_INPUT = _demo.demo("layer_norm_backward", _demo.cotangent((6, 8)), _demo.noncentred((6, 8)), (8,),
                        *_demo.affine((8,)))
export(Backend(), globals())
