"""Mutant: float64 inputs are normalized in place: the caller's x is overwritten with x-hat.

Bug class: aliasing / writes into inputs.  A kernel "upcasts" its input to
the working dtype with ``x.astype(acc, copy=False)`` (torch: ``x.float()``,
``x.to(acc)``) and then normalizes that buffer in place.  When the input is
already in the working dtype the cast is a no-op that returns the input
itself, so the caller's ``x`` now holds ``x-hat``.  The fused kernels here
load float32 and half inputs into registers (a copy); float64, which fused
kernels rarely support, goes down the plain array path -- the one tested
least.  Every returned value is right; only a check that the inputs are
unchanged after the call (``refnorm fuzz``) sees it.  Seen in:
GeeeekExplorer/nano-vllm#170 (``x.float()`` is a no-op for float32 and
``x.mul_`` corrupts the residual stream); microsoft/onnxruntime#20623 (the
oneDNN LayerNorm altered its input tensor); meta-pytorch/tritonbench PR #486
(Liger's RMSNorm backward writes dX into dY unless ``in_place=False``).
The harness gives every call fresh copies of the case inputs and the
committed corpus does not ask for unchanged inputs, so this mutant passes it.
Affects: the forward, ``<op>_stats`` and backward of LayerNorm, RMSNorm,
GroupNorm, BatchNorm and InstanceNorm, for a float64 ``x`` whose canonical
view is a view (every C-contiguous ``x``; a strided one that the reshape
must copy is left alone).  The fused adds normalize their own sum ``h`` and
leave ``x`` and ``residual`` alone; running statistics never normalize.
"""

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


class Backend(NumpyBackend):
    def _make_view(self, x, shape, *rest):
        v = super()._make_view(x, shape, *rest)
        if np.dtype(x.dtype) == np.float64:  # the plain array path
            v.x = np.asarray(x).astype(np.float64, copy=False).reshape(shape)  # the bug: no copy for float64
        return v

    def normalize(self, x, mean, rstd):
        x -= mean  # in place: into the caller's x when the cast above did not copy
        x *= rstd
        return x

    def residual_sum(self, x, residual, residual_dtype):
        h, hn = super().residual_sum(x, residual, residual_dtype)
        return h, hn.copy()  # h is stored before the norm runs: the returned h stays right


BACKEND_INFO = {"name": "inplace_float64", "description": "float64 x normalized in place: the input becomes x-hat"}
AFFECTS = ("layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm", "*_backward", "*_stats")
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((4, 16), dtype=np.float64), (16,))
export(Backend(), globals())
