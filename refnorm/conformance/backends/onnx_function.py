"""onnx-function: the same single-node models with the node replaced by its schema's function body,
run by ``onnx.reference.ReferenceEvaluator``.

What a runtime without a kernel for the op executes: the node of :mod:`.onnx_reference`'s model is
expanded to the function its schema defines for it -- ``OpSchema.function_body``, or the
context-dependent function ``OpSchema.get_context_dependent_function(node, input types)`` builds
(LayerNormalization-17, RMSNormalization-23, GroupNormalization-21) -- inlined by
``onnx.inliner.inline_local_functions``, and the evaluator runs the body's primitive ops (ReduceMean,
Sub, Sqrt, ...).  Ops whose schema has no function body (BatchNormalization-15,
InstanceNormalization-22, LRN-13) are not implemented here.

Provided: ``layer_norm``, ``layer_norm_stats`` (the body's Mean/InvStdDev), ``rms_norm``,
``group_norm``.  The arguments map as in :mod:`refnorm.conformance.backends._onnx` (stash_type = 1:
the bodies cast X to float32, so float64 models compute their statistics in float32).  No backward:
ONNX inference defines none.
"""

from __future__ import annotations

import onnx

from . import _onnx

BACKEND_INFO = {
    "name": "onnx-function",
    "description": f"onnx {onnx.__version__} ReferenceEvaluator on single-node models expanded to the op's function "
                   "body (LayerNormalization-17, RMSNormalization-23, GroupNormalization-21); forward and "
                   "LayerNorm's Mean/InvStdDev only",
    "error_types": _onnx.REFERENCE_ERROR_TYPES,
}

_ops = _onnx.OnnxOps(_onnx.ReferenceRunner(function_body=True))

layer_norm = _ops.layer_norm
layer_norm_stats = _ops.layer_norm_stats
rms_norm = _ops.rms_norm
group_norm = _ops.group_norm
