"""Mutant: a global pre-shift of x by the mean of the whole tensor "for stability".

Bug class: NaN/Inf propagation locality (E23): one NaN makes every row NaN,
although normalization is shift-invariant and the shift is harmless on
finite data.  Seen in: "shifted data" variance tricks applied to the whole
batch instead of per reduction set (StableHLO ``check.expect_close``
non-finite semantics and benchdnn ``compare_extreme_values`` are the
checks that catch it).
Affects: layer_norm, group_norm, batch_norm (training), instance_norm, their
backward and stats (not RMSNorm: no centring).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def moments(self, x, axes, eps, center=True):
        if not center:
            return super().moments(x, axes, eps, center)
        shift = np.mean(x)  # the bug: over *all* elements, so a NaN anywhere leaks everywhere
        mean, rstd = super().moments(x - shift, axes, eps, center)
        return mean + shift, rstd


BACKEND_INFO = {"name": "nan_leak_global_shift", "description": "global pre-shift leaks a NaN into every row"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "*_backward", "*_stats")
_x = _demo.noncentred((4, 8))
_x[0, 3] = np.nan
DEMO_INPUT = _demo.demo("layer_norm", _x, (8,))
export(Backend(), globals())
