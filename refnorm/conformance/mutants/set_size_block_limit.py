"""Mutant: the statistics of a reduction set read only its first 2**16 elements.

Bug class: size limits of a launch (E12): a kernel that loads one block of
``BLOCK = 65536`` elements per reduction set and never loops over the rest,
so every element past the first block is silently left out of the mean, the
sum of squares and the backward's ``c1 = mean(g)`` / ``c2 = mean(g * xhat)``.
The divisor stays the full set size ``n``: the kernel is passed ``n``, masks
its load with ``col < n`` and divides by it, as the Triton layer norms do --
so the statistics are not those of a shorter set either, just wrong.
Seen in: facebookresearch/xformers#785 (the Triton layer norm never advances
``cols`` past ``BLOCK_SIZE_N``); flashinfer-ai/flashinfer PR #718 and
sgl-project/sglang PR #20661 (kernels that break beyond a hidden size).
Every set of the committed corpus has at most 10007 elements, so it passes
the whole corpus; ``refnorm fuzz`` draws sets of more than 2**16 elements.
Affects: every function that computes statistics (forward, backward,
stats, running statistics), on sets of more than 65536 elements only; the
first block is the set's first 65536 elements in the logical (C) order of
its axes.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo

BLOCK = 2 ** 16


def set_size(a, axes) -> int:
    return int(np.prod([a.shape[i] for i in axes], dtype=np.int64))


def first_block_sum(a, axes):
    """The sum over ``axes`` of the first :data:`BLOCK` elements of each set (keepdims)."""
    keep = [i for i in range(a.ndim) if i not in axes]
    moved = np.transpose(a, keep + list(axes))
    flat = moved.reshape(*moved.shape[: len(keep)], set_size(a, axes))
    s = np.sum(flat[..., :BLOCK], axis=-1)  # the bug: elements BLOCK .. n-1 are never loaded
    return s.reshape([1 if i in axes else d for i, d in enumerate(a.shape)])


class Backend(NumpyBackend):
    """numpy32 while one block holds the set; past that, each statistic sums the first block over n."""

    def mean_of(self, x, axes, n):
        if set_size(x, axes) <= BLOCK:
            return super().mean_of(x, axes, n)
        return first_block_sum(x, axes) / x.dtype.type(n)

    def sum_squares(self, xc, axes):
        if set_size(xc, axes) <= BLOCK:
            return super().sum_squares(xc, axes)
        s = self.pow2_scale(xc, axes)
        xs = xc / s
        return first_block_sum(xs * xs, axes), s  # divided by the full n in moments()

    def reduce_mean(self, a, axes, n):
        if set_size(a, axes) <= BLOCK:
            return super().reduce_mean(a, axes, n)
        return first_block_sum(a, axes) / a.dtype.type(n)


BACKEND_INFO = {"name": "set_size_block_limit",
                "description": "statistics from the first 2**16 elements of each reduction set (E12)"}
AFFECTS = ("*",)
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((1, BLOCK + 4000)), (BLOCK + 4000,))
export(Backend(), globals())
