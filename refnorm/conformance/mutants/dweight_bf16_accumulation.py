"""Mutant: dweight and dbias accumulated row by row in bfloat16.

Bug class: low-precision parameter-gradient accumulation (E9).  Seen in:
llm.c#428 (bf16 atomicAdd of dweight, fixed by PR #476); Liger-Kernel PR #950
(``tl.sum`` of bf16 in the RMSNorm backward); the Triton tutorial's partial
``_dw/_db`` buffers in ``x.dtype``.
Affects: every ``<op>_backward`` (dweight, dbias); dx is unchanged.
"""

import ml_dtypes
import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


def _bf16_sequential_sum(a, axes):
    """Sum over ``axes`` one slice at a time, rounding the accumulator to bfloat16 after every add."""
    keep = [i for i in range(a.ndim) if i not in axes]
    flat = np.transpose(a, list(axes) + keep).reshape(-1, *[a.shape[i] for i in keep])
    acc = np.zeros(flat.shape[1:], ml_dtypes.bfloat16)
    for row in flat:
        acc = (acc.astype(np.float32) + row.astype(np.float32)).astype(ml_dtypes.bfloat16)  # the bug
    return acc.astype(a.dtype)


class Backend(NumpyBackend):
    def param_grads(self, dy, xhat, view, wshape):
        return (_bf16_sequential_sum(dy * xhat, view.param_axes).reshape(wshape),
                _bf16_sequential_sum(dy, view.param_axes).reshape(wshape))


BACKEND_INFO = {"name": "dweight_bf16_accumulation", "description": "dweight/dbias accumulated in bfloat16 (llm.c#428)"}
AFFECTS = ("layer_norm_backward", "rms_norm_backward", "group_norm_backward", "batch_norm_backward",
           "instance_norm_backward")
DEMO_INPUT = _demo.demo("layer_norm_backward", (1.0 + _demo.cotangent((2048, 16))).astype(np.float32),
                        _demo.noncentred((2048, 16)), (16,), *_demo.affine((16,)))
export(Backend(), globals())
