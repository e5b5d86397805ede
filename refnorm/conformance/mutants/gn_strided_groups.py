"""Mutant: GroupNorm puts channel c in group ``c % G`` (strided) instead of ``c // (C/G)`` (contiguous).

Bug class: GroupNorm grouping semantics (E22).  Seen in: reshapes of the
channel axis as ``(C/G, G)`` instead of ``(G, C/G)`` (apache/mxnet#17139;
oneflow PR #4848; channels-last ports).
Affects: group_norm, group_norm_backward, group_norm_stats.
"""

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def group_view(self, x, G, eps):
        N, C = x.shape[:2]
        HW = int(x[0, 0].size) if x.size else 1
        # the bug: (N, C/G, G, HW), the group index varying fastest along the channels
        return self._make_view(x, (N, C // G, G, HW), (1, 3), (1, C // G, G, 1), (0, 3), (N, G), eps, True)


BACKEND_INFO = {"name": "gn_strided_groups", "description": "GroupNorm channel c in group c % G"}
AFFECTS = ("group_norm", "group_norm_backward", "group_norm_stats")
DEMO_INPUT = _demo.demo("group_norm", _demo.noncentred((2, 6, 5)) + _demo.rng(5).standard_normal((1, 6, 1)).astype("float32"), 2)
export(Backend(), globals())
