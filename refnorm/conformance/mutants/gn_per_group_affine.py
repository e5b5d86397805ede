"""Mutant: GroupNorm applies a per-group affine (``weight[g]`` to every channel of group g).

Bug class: per-group instead of per-channel scale/bias, the ONNX
GroupNormalization-18 definition (``onnx/defs/nn/old.cc:4099-4130``; fixed in
GN-21, onnx#5466, onnx#5284) (E22).
Affects: group_norm, group_norm_backward, group_norm_stats (y only).
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def expand_param(self, p, view):
        if p is None or len(view.param_shape) != 4:  # only GroupNorm's (1, G, C/G, 1) view
            return super().expand_param(p, view)
        G = view.param_shape[1]
        return p[:G].reshape(1, G, 1, 1)  # the bug: the first G entries, one per group


BACKEND_INFO = {"name": "gn_per_group_affine", "description": "GroupNorm scale/bias per group (ONNX GN-18)"}
AFFECTS = ("group_norm", "group_norm_backward", "group_norm_stats")
DEMO_INPUT = _demo.demo("group_norm", _demo.noncentred((2, 6, 5)), 2, *_demo.affine((6,)))
export(Backend(), globals())
