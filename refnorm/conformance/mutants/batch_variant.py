"""Mutant: a float32 summation whose blocking depends on the number of rows.

Bug class: batch invariance (E11): the same row gives different bits in
batches of different sizes.  Seen in: vllm-project/vllm PRs #48391, #48997
(block size 1024 vs 256 chosen by num_tokens changes the fp32 reduction
order); sgl-project/sglang PR #28787.  Each result is accurate; only a
batch-invariance check (harness ``batch_invariance``) catches it.
Affects: every function (all reductions).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def reduce_sum(self, a, axes):
        keep = [i for i in range(a.ndim) if i not in axes]
        moved = np.transpose(a, keep + list(axes))
        rows = int(np.prod([a.shape[i] for i in keep], dtype=np.int64))
        K = int(np.prod([a.shape[i] for i in axes], dtype=np.int64))
        flat = moved.reshape(rows, K)
        block = 256 if rows >= 4 else 7  # the bug: blocking chosen from the row count
        pad = (-K) % block
        blocks = np.concatenate([flat, np.zeros((rows, pad), a.dtype)], axis=1).reshape(
            rows, (K + pad) // block, block)
        partial = blocks.sum(axis=2)
        s = np.zeros(rows, a.dtype)
        for j in range(partial.shape[1]):  # the partial sums added in order
            s = s + partial[:, j]
        return s.reshape([1 if i in axes else d for i, d in enumerate(a.shape)])


BACKEND_INFO = {"name": "batch_variant", "description": "float32 blocking chosen from the row count (E11)"}
AFFECTS = ("*",)
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((8, 4096), scale=1.0), (4096,))
export(Backend(), globals())
