"""Mutant: dweight/dbias reduced over the wrong axes (channels-last indexing of NCHW data).

Bug class: parameter-gradient reduction axes (E20: layouts and mismatched
memory formats, pytorch#111824, #115940): the kernel sums ``dy * xhat`` over
``flat_index % C``, which is the channel only for channels-last data.
Affects: batch_norm_backward, group_norm_backward, instance_norm_backward
(dweight, dbias) whenever the spatial size is > 1; LayerNorm/RMSNorm are unaffected.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def param_grads(self, dy, xhat, view, wshape):
        P = int(np.prod(wshape))
        dw = (dy * xhat).reshape(-1, P).sum(axis=0).reshape(wshape)  # the bug: NHWC indexing
        db = dy.reshape(-1, P).sum(axis=0).reshape(wshape)
        return dw, db


BACKEND_INFO = {"name": "dweight_wrong_axes", "description": "dweight/dbias summed over flat index % C (NHWC)"}
AFFECTS = ("batch_norm_backward", "group_norm_backward", "instance_norm_backward")
DEMO_INPUT = _demo.demo("batch_norm_backward", _demo.cotangent((2, 3, 5)), _demo.noncentred((2, 3, 5)), None, None,
                        *_demo.affine((3,)), True)
export(Backend(), globals())
