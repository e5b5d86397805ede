"""onnxruntime: the single-node ONNX models of the ``onnx`` backend on ONNX Runtime's CPU execution provider.

``onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])`` with graph optimizations
disabled (``ORT_DISABLE_ALL``: the node runs as written) and one intra-op thread; one session per
op, dtypes, shapes and attributes, cached.  The models are those of :mod:`.onnx_reference` (the
newest opset of each op; the argument mapping of :mod:`refnorm.conformance.backends._onnx`); an op
the CPU EP has no kernel for is run as ONNX Runtime decides (GroupNormalization-21 through its
function body).  The fused residual adds are ONNX Runtime's contrib ops (domain ``com.microsoft``):
``add_layer_norm`` is SkipLayerNormalization (input, skip, gamma, beta; outputs output, mean,
inv_std_var, input_skip_bias_sum = h) and ``add_rms_norm`` SkipSimplifiedLayerNormalization
(normalized over the last dimension only; the skip is added in the input's type).

A type or op the CPU EP lacks ("Could not find an implementation", NOT_IMPLEMENTED) raises
NotImplementedError with ONNX Runtime's message.  bfloat16 tensors are passed as ``OrtValue`` bits.
No backward (ONNX Runtime's inference build has none): forward, the statistics the ops output
(LayerNormalization's Mean/InvStdDev, the contrib ops' mean/inv_std_var) and BatchNorm's running
statistics (``"onnx"``/``"flax"`` conventions).
"""

from __future__ import annotations

import onnx
import onnx.checker
import onnx.shape_inference
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from . import _onnx

BACKEND_INFO = {
    "name": "onnxruntime",
    "description": f"onnxruntime {ort.__version__} CPUExecutionProvider (graph optimizations disabled, one thread) "
                   f"on single-node models built with onnx {onnx.__version__}; forward, saved statistics the ops "
                   "output and BatchNorm's running statistics only (no backward)",
    # ONNX refuses an invalid model in the checker or strict shape inference; ONNX Runtime reports
    # bad arguments as Fail / InvalidArgument / InvalidGraph / RuntimeException
    "error_types": (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, _ort_state.Fail,
                    _ort_state.InvalidArgument, _ort_state.InvalidGraph, _ort_state.RuntimeException),
}

_ops = _onnx.OnnxOps(_onnx.OrtRunner())

layer_norm = _ops.layer_norm
layer_norm_stats = _ops.layer_norm_stats
rms_norm = _ops.rms_norm
batch_norm = _ops.batch_norm
batch_norm_running_stats = _ops.batch_norm_running_stats
instance_norm = _ops.instance_norm
group_norm = _ops.group_norm
local_response_norm = _ops.local_response_norm
add_layer_norm = _ops.add_layer_norm
add_layer_norm_stats = _ops.add_layer_norm_stats
add_rms_norm = _ops.add_rms_norm
add_rms_norm_stats = _ops.add_rms_norm_stats
