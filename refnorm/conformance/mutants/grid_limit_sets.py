"""Mutant: reduction set r >= 65535 uses the statistics of set r % 65535.

Bug class: grid and addressing limits (E12): a CUDA grid holds at most
``GRID = 65535 = 2**16 - 1`` blocks in its y and z dimensions; a kernel that
launches one block per reduction set in such a dimension, and folds the set
index into range instead of looping, gives set ``r`` the statistics of set
``r % 65535``.  Each set is still normalized with a genuine mean and rstd --
of another set.  Seen in: NVIDIA/apex#411 (FusedLayerNorm errors up to 14
for batches of 2**16 rows and more, exact below); pytorch/pytorch#181555
(CUDA layer_norm wrong beyond 2**32 elements, a 32-bit row offset).
The committed corpus has at most 1024 reduction sets per case, so it passes
the whole corpus; ``refnorm fuzz`` draws cases of more than 2**16 sets.
Affects: every function that computes statistics (forward, backward: mean,
rstd, ``c1``, ``c2``; stats; running statistics), on more than 65535 sets
only (rows for LayerNorm/RMSNorm, channels for BatchNorm, N*C for
InstanceNorm, N*G for GroupNorm; sets numbered in C order).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo

GRID = 2 ** 16 - 1


def wrap_sets(stat):
    """``stat`` (one value per reduction set, keepdims) with set r >= GRID given set r % GRID's value."""
    if not isinstance(stat, np.ndarray) or stat.size <= GRID:
        return stat  # also c1 = 0 of RMSNorm, a plain number
    flat = stat.reshape(-1)  # the set axes have size 1: C order over the other axes = the set index
    return flat[np.arange(flat.size) % GRID].reshape(stat.shape)  # the bug


class Backend(NumpyBackend):
    def moments(self, x, axes, eps, center=True):
        mean, rstd = super().moments(x, axes, eps, center)
        return wrap_sets(mean), wrap_sets(rstd)

    def running_moments(self, x, axes, correction):
        mean, var = super().running_moments(x, axes, correction)
        return wrap_sets(mean), wrap_sets(var)

    def backward_terms(self, g, xhat, axes, n, center):
        c1, c2 = super().backward_terms(g, xhat, axes, n, center)
        return wrap_sets(c1), wrap_sets(c2)


BACKEND_INFO = {"name": "grid_limit_sets",
                "description": "reduction set r >= 65535 uses the statistics of set r % 65535 (E12)"}
AFFECTS = ("*",)
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((GRID + 2, 2)), (2,))
export(Backend(), globals())
