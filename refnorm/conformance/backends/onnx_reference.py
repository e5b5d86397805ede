"""onnx: single-node ONNX models run by ``onnx.reference.ReferenceEvaluator``, each op by its own Python kernel.

One model per call, the newest opset of each op (LayerNormalization-17, RMSNormalization-23,
BatchNormalization-15, InstanceNormalization-22, GroupNormalization-21, LRN-13), in the case dtype,
every attribute explicit (:mod:`refnorm.conformance.backends._onnx` says how refnorm's arguments
map, and which cannot: NotImplementedError).  The evaluator runs the op's kernel in
``onnx/reference/ops/op_<op>.py``; GroupNormalization has no kernel there, so the evaluator itself
runs its (context-dependent) function body, as the ``onnx-function`` backend does.

Provided: ``layer_norm`` and ``layer_norm_stats`` (the optional Mean/InvStdDev outputs),
``rms_norm``, ``batch_norm`` (training_mode 1 or 0), ``batch_norm_running_stats`` (the
``running_mean``/``running_var`` outputs of training mode: conventions ``"onnx"`` and ``"flax"``,
the same formula; ``"torch"`` is not implemented), ``instance_norm`` (input statistics only),
``group_norm`` and ``local_response_norm`` (odd sizes).  No backward, forward mode or second order:
ONNX inference defines none.  No fused residual adds: their ops exist only as ONNX Runtime contrib
ops.  The older BatchNormalization-9/-7 (one output in training) are not what this backend runs;
docs/findings/onnx.md reproduces their defects with direct models.
"""

from __future__ import annotations

import onnx

from . import _onnx

BACKEND_INFO = {
    "name": "onnx",
    "description": f"onnx {onnx.__version__} ReferenceEvaluator on single-node models (newest opset of each op, "
                   "the op's Python kernel); forward, LayerNorm's Mean/InvStdDev and BatchNorm's running "
                   "statistics only (ONNX inference has no backward)",
    "error_types": _onnx.REFERENCE_ERROR_TYPES,
}

_ops = _onnx.OnnxOps(_onnx.ReferenceRunner(function_body=False))

layer_norm = _ops.layer_norm
layer_norm_stats = _ops.layer_norm_stats
rms_norm = _ops.rms_norm
batch_norm = _ops.batch_norm
batch_norm_running_stats = _ops.batch_norm_running_stats
instance_norm = _ops.instance_norm
group_norm = _ops.group_norm
local_response_norm = _ops.local_response_norm
