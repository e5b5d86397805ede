"""Mutant: a nondeterministic reduction order (block partial sums added in a random order per call).

Bug class: races / nondeterminism in parallel reductions (E10): atomics or
unsynchronized partial buffers make the float32 summation order differ
from run to run.  Seen in: meta-pytorch/tritonbench PR #1266 (missing
``tl.debug_barrier()`` in the Triton LayerNorm backward);
Dao-AILab/flash-attention#781.  Each result is accurate; only a repeat-run
bitwise check (harness ``repeat``) catches it.
Affects: every function (all reductions), visibly in float32 on large sets.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    N_BLOCKS = 32  # "thread blocks" per reduction set

    def reduce_sum(self, a, axes):
        keep = [i for i in range(a.ndim) if i not in axes]
        moved = np.transpose(a, keep + list(axes))
        n = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
        flat = moved.reshape(*moved.shape[: len(keep)], n)
        # Each block's partial sum is deterministic (pairwise); the partials are then
        # added one by one in the order the blocks happen to finish -- the bug: that
        # order (an atomicAdd race) differs from call to call.
        edges = np.linspace(0, n, self.N_BLOCKS + 1).astype(int)
        partials = [np.sum(flat[..., lo:hi], axis=-1) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
        s = np.zeros(flat.shape[:-1], flat.dtype)
        for i in np.random.default_rng().permutation(len(partials)):
            s = s + partials[i]
        return s.reshape([1 if i in axes else d for i, d in enumerate(a.shape)])


BACKEND_INFO = {"name": "racy_reduction", "description": "random reduction order per call (E10)"}
AFFECTS = ("*",)
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((1, 100_000), scale=1.0), (100_000,))
export(Backend(), globals())
