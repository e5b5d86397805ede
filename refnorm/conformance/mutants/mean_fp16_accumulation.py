"""Mutant: the mean accumulated sequentially in float16.

Bug class: low-precision statistic accumulation (E8): a float16 running sum
stalls once its ulp exceeds twice the addend (sum of 4096 ones = 2048).
Seen in: pytorch#92164 (bf16 sum of 5120 ones = 256), pytorch#77507,
apache/mxnet#14073, executorch PR #16727.
Affects: every op computing batch statistics (forward, backward, stats).
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def mean_of(self, x, axes, n):
        keep = [i for i in range(x.ndim) if i not in axes]
        flat = np.transpose(x, list(axes) + keep).reshape(-1, *[x.shape[i] for i in keep])
        acc = np.zeros(flat.shape[1:], np.float16)
        with np.errstate(over="ignore", invalid="ignore"):
            for v in flat:
                acc = acc + v.astype(np.float16)  # the bug: a float16 accumulator
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)]
        return (acc.astype(x.dtype) / x.dtype.type(n)).reshape(shape)


BACKEND_INFO = {"name": "mean_fp16_accumulation", "description": "mean accumulated in float16 (E8)"}
AFFECTS = ("layer_norm", "group_norm", "batch_norm", "instance_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", (1.0 + 0.1 * _demo.rng(0).standard_normal((2, 4096))).astype(np.float16),
                        (4096,))
export(Backend(), globals())
