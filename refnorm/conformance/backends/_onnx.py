"""What the ``onnx``, ``onnx-function`` and ``onnxruntime`` backends share: single-node ONNX models.

Each call builds one ``ModelProto`` holding one node of the newest opset of its op
(``onnx.defs.get_schema(op).since_version``: LayerNormalization-17, RMSNormalization-23,
BatchNormalization-15, InstanceNormalization-22, GroupNormalization-21, LRN-13; the
com.microsoft contrib SkipLayerNormalization / SkipSimplifiedLayerNormalization for the fused
residual adds), with the schema's own input and output names, every attribute given explicitly,
graph inputs typed by the case dtype (float64, float32, float16, bfloat16 -> DOUBLE, FLOAT, FLOAT16,
BFLOAT16) and fully shaped outputs; a model of the default domain passes
``onnx.checker.check_model(full_check=True)`` (strict shape inference) before it runs, so what ONNX
itself refuses is refused with ONNX's error.  A :class:`Runner` executes the model; the three
backends differ only in their runner.

How refnorm's arguments become ONNX's (the choices are exact, or the call raises NotImplementedError):

* ``weight=None`` -> a Scale of ones and ``bias=None`` -> a B of zeros where ONNX requires them (LN
  Scale, BN/IN/GN scale and bias): multiplying by 1 and adding 0 are exact (up to the sign of a
  zero).  LayerNormalization's optional B is omitted when there is no bias.
* ``normalized_shape`` -> ``axis = x.ndim - len(normalized_shape)``; ONNX takes no shape, so the
  adapter checks that ``normalized_shape`` equals x's trailing dimensions (as the jax backend does).
* ``stash_type = 1`` (float32), the schema default -- what exporters write, the only stash type the
  reference evaluator's kernels accept, and for LayerNormalization-17 the only one besides bfloat16
  that the schema allows (its U is float or bfloat16).  A float64 model therefore computes its
  statistics in float32 wherever the stash is honoured (the function bodies, ONNX Runtime).
* ``eps`` -> ``epsilon``, ``k`` -> LRN ``bias``, ``alpha`` -> LRN ``alpha`` (ONNX divides alpha by
  ``size`` as PyTorch and refnorm do); ONNX float attributes are float32, so ``eps = 1e-5`` reaches
  the kernel as 9.99999975e-06.  RMSNorm's ``eps=None`` is refnorm's default for the dtype
  (:func:`refnorm.ops.rms_norm.default_eps`): ONNX has no "None".
* LRN with an even ``size``: ONNX's window is ``[c - (size/2 - 1), c + size/2]``, refnorm's (and
  PyTorch's) ``[c - size/2, c + size/2 - 1]`` -- not expressible: NotImplementedError.
* BatchNormalization-15: ``training`` -> ``training_mode``; refnorm's ``momentum`` (weight of the
  new value, PyTorch's) -> ONNX ``momentum = 1 - momentum`` (it only affects the running outputs,
  which the forward does not return); in training without running statistics ONNX still requires
  ``input_mean``/``input_var``, and zeros/ones are passed (the output does not depend on them).
  ``batch_norm_running_stats`` runs BatchNormalization-15 with ``training_mode=1`` and returns its
  ``running_mean``/``running_var`` outputs: ONNX's convention ``momentum·old + (1 - momentum)·batch``
  with the biased batch variance is refnorm's ``"onnx"`` convention, and also exactly its ``"flax"``
  one (the same formula), so both are run with ``momentum`` as given; ``"torch"`` (unbiased variance,
  momentum weighting the new value) is not expressible: NotImplementedError.
* zero-centred weights (``offset != 0``), InstanceNorm with running statistics
  (``use_input_stats=False``), parameters of another dtype than x where the schema ties them to
  X's type, and a residual added in another dtype: NotImplementedError.
* argument contracts ONNX does not state but refnorm's API does (as the jax backend): BN training
  with one value per channel, IN training with one spatial element, ``num_groups`` not dividing C,
  LRN ``size < 1`` or ``x.ndim < 3``, eval-mode BN without running statistics: ValueError.

Saved statistics: only what the model outputs -- LayerNormalization's optional Mean/InvStdDev
(``layer_norm_stats``) and the contrib ops' mean/inv_std_var (``add_*_stats``).  No backward: ONNX
inference defines none.
"""

from __future__ import annotations

import ctypes

import ml_dtypes
import numpy as np
import onnx
import onnx.checker
import onnx.defs
import onnx.helper as oh
import onnx.inliner
import onnx.shape_inference
from onnx import TensorProto

from ...ops.rms_norm import default_eps

_BF16 = np.dtype(ml_dtypes.bfloat16)
#: numpy dtype -> ONNX element type
ELEM_TYPES = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.float32): TensorProto.FLOAT,
              np.dtype(np.float16): TensorProto.FLOAT16, _BF16: TensorProto.BFLOAT16}
STASH_TYPE = TensorProto.FLOAT  # stash_type = 1, the schema default (see the module docstring)
CONTRIB = "com.microsoft"
#: What onnx's reference evaluator raises for an invalid call: the checker or strict shape inference
#: refuses the model (wrong shapes or types), and an exception raised inside a node's kernel comes
#: back as TypeError("Issues with types ...").  The ``error_types`` of the two evaluator backends.
REFERENCE_ERROR_TYPES = (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, TypeError)
_OPS = ("LayerNormalization", "RMSNormalization", "BatchNormalization", "InstanceNormalization",
        "GroupNormalization", "LRN")
#: op type -> the newest opset version of its schema in the installed onnx
OPSET = {op: onnx.defs.get_schema(op).since_version for op in _OPS}
#: the schema's formal input and output names (the contrib ops' from ONNX Runtime's contrib_defs.cc)
_NAMES = {op: ([i.name for i in onnx.defs.get_schema(op).inputs], [o.name for o in onnx.defs.get_schema(op).outputs])
          for op in _OPS}
_NAMES["SkipLayerNormalization"] = (["input", "skip", "gamma", "beta", "bias"],
                                    ["output", "mean", "inv_std_var", "input_skip_bias_sum"])
_NAMES["SkipSimplifiedLayerNormalization"] = (["input", "skip", "gamma", "bias"],
                                              ["output", "mean", "inv_std_var", "input_skip_bias_sum"])


def elem_type(dtype) -> int:
    dt = np.dtype(dtype)
    if dt not in ELEM_TYPES:
        raise NotImplementedError(f"no ONNX element type for dtype {dt}")
    return ELEM_TYPES[dt]


def _array(a) -> np.ndarray:
    """A C-contiguous copy (nothing a runtime does can reach the caller's array)."""
    return np.array(a, copy=True, order="C")


def node_model(op: str, inputs: dict, outputs: dict, attrs: dict, domain: str = "") -> onnx.ModelProto:
    """A one-node model of ``op`` (its newest opset; the contrib ops: ``com.microsoft`` version 1).

    ``inputs``: formal input name -> array (None: an absent optional input); ``outputs``: formal output
    name -> ``(elem_type, shape)`` for the outputs wanted (the others are left empty or omitted)."""
    in_names, out_names = _NAMES[op]
    node_in = [n if inputs.get(n) is not None else "" for n in in_names]
    node_out = [n if n in outputs else "" for n in out_names]
    while node_in and node_in[-1] == "":
        node_in.pop()
    while node_out and node_out[-1] == "":
        node_out.pop()
    node = oh.make_node(op, node_in, node_out, domain=domain, **attrs)
    graph = oh.make_graph(
        [node], op,
        [oh.make_tensor_value_info(n, elem_type(inputs[n].dtype), inputs[n].shape) for n in node_in if n],
        [oh.make_tensor_value_info(n, outputs[n][0], outputs[n][1]) for n in node_out if n])
    opsets = [oh.make_opsetid("", OPSET.get(op, OPSET["LayerNormalization"]))]
    if domain:
        opsets.append(oh.make_opsetid(domain, 1))
    model = oh.make_model(graph, opset_imports=opsets, producer_name="refnorm")
    model.ir_version = 10
    if not domain:
        onnx.checker.check_model(model, full_check=True)
    return model


def expand_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model``'s single node replaced by its schema's function body: the static ``function_body``,
    or the context-dependent function the schema builds for this node and its input types
    (``OpSchema.get_context_dependent_function``), inlined by ``onnx.inliner``.  An op whose schema
    has neither: NotImplementedError."""
    node = model.graph.node[0]
    version = next(o.version for o in model.opset_import if o.domain == node.domain)
    schema = onnx.defs.get_schema(node.op_type, version, node.domain)
    if schema.has_function:
        fn = onnx.FunctionProto()
        fn.CopyFrom(schema.function_body)
    elif schema.has_context_dependent_function:
        types = {i.name: i.type for i in model.graph.input}
        body = schema.get_context_dependent_function(node.SerializeToString(),
                                                      [types[n].SerializeToString() for n in node.input if n])
        fn = onnx.FunctionProto()
        fn.ParseFromString(body)
    else:
        raise NotImplementedError(f"{node.op_type}-{schema.since_version} has no function body in onnx "
                                  f"{onnx.__version__} (only a kernel)")
    local = "refnorm.function_body"
    fn.domain, fn.name = local, node.op_type
    expanded = onnx.ModelProto()
    expanded.CopyFrom(model)
    expanded.graph.node[0].domain = local
    expanded.functions.append(fn)
    expanded.opset_import.append(oh.make_opsetid(local, 1))
    return onnx.inliner.inline_local_functions(expanded)


class Runner:
    """Runs a model on feeds ``{input name: array}`` and returns the outputs it declares, in order.
    Prepared models are cached by their serialized bytes (one model per op, dtypes, shapes and
    attributes)."""

    description = ""

    def __init__(self, cache_size: int = 512):
        self._cache: dict[bytes, object] = {}
        self._cache_size = cache_size

    def prepare(self, model: onnx.ModelProto):  # pragma: no cover - abstract
        raise NotImplementedError

    def execute(self, prepared, model: onnx.ModelProto, feeds: dict) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, model: onnx.ModelProto, feeds: dict) -> list:
        key = model.SerializeToString()
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = self.prepare(model)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = prepared
        return self.execute(prepared, model, feeds)


class ReferenceRunner(Runner):
    """``onnx.reference.ReferenceEvaluator`` on the model as built: each node runs the op's own
    Python kernel (an op without one, e.g. GroupNormalization, runs its function body -- the
    evaluator's own fallback).  With ``function_body=True`` the node is first replaced by its
    schema's function body (:func:`expand_function`), so the evaluator runs the body's primitive ops."""

    def __init__(self, function_body: bool = False):
        super().__init__()
        self.function_body = function_body

    def prepare(self, model):
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(expand_function(model) if self.function_body else model)

    def execute(self, prepared, model, feeds):
        try:
            return [np.asarray(o) for o in prepared.run(None, feeds)]
        except RuntimeError as exc:
            if "only applies on 4D tensors" in str(exc):  # op_lrn.py refuses what the LRN-13 schema allows
                raise NotImplementedError(f"onnx {onnx.__version__} reference LRN kernel: {exc}") from None
            raise


#: What ONNX Runtime says when it has no kernel for an op or type: NOT_IMPLEMENTED; a contrib op's schema
#: that does not list the type (SkipLayerNormalization has no double); the CPU LRN kernel's 4-D-only check
_ORT_LACKS = ("Could not find an implementation", "NOT_IMPLEMENTED", "X_shape.NumDimensions() == 4 was false")


def ort_not_implemented(exc: BaseException) -> bool:
    """Whether an onnxruntime exception says the CPU EP lacks the op, the type or the rank."""
    msg = str(exc)
    contrib_type = (type(exc).__name__ == "InvalidGraph" and "Type Error: Type 'tensor(" in msg
                    and "operator (Skip" in msg)
    return type(exc).__name__ == "NotImplemented" or contrib_type or any(m in msg for m in _ORT_LACKS)


class OrtRunner(Runner):
    """``onnxruntime.InferenceSession`` with ``providers=["CPUExecutionProvider"]``, graph
    optimizations disabled (``ORT_DISABLE_ALL``: the node runs as written, no fusion or constant
    folding) and one intra-op thread; bfloat16 tensors go in and out as ``OrtValue`` bits.  A model
    the CPU EP has no kernel for ("Could not find an implementation", NOT_IMPLEMENTED) raises
    NotImplementedError with ONNX Runtime's message."""

    def __init__(self):
        super().__init__()
        import onnxruntime as ort

        self.ort = ort

    def prepare(self, model):
        opts = self.ort.SessionOptions()
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            return self.ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            if ort_not_implemented(exc):
                raise NotImplementedError(f"onnxruntime {self.ort.__version__} CPUExecutionProvider: "
                                          f"{' '.join(str(exc).split())}") from None
            raise

    def execute(self, sess, model, feeds):
        if not any(a.dtype == _BF16 for a in feeds.values()) and not any(
                o.type.tensor_type.elem_type == TensorProto.BFLOAT16 for o in model.graph.output):
            try:
                return sess.run(None, feeds)
            except Exception as exc:
                if ort_not_implemented(exc):
                    raise NotImplementedError(f"onnxruntime {self.ort.__version__}: {' '.join(str(exc).split())}") \
                        from None
                raise
        values = {k: (self.ort.OrtValue.ortvalue_from_numpy_with_onnx_type(v.view(np.uint16), TensorProto.BFLOAT16)
                      if v.dtype == _BF16 else self.ort.OrtValue.ortvalue_from_numpy(v)) for k, v in feeds.items()}
        outs = sess.run_with_ort_values(None, values)
        return [self._numpy(o, d.type.tensor_type.elem_type) for o, d in zip(outs, model.graph.output)]

    @staticmethod
    def _numpy(value, elem):
        if elem != TensorProto.BFLOAT16:
            return value.numpy()
        out = np.empty(value.shape(), np.uint16)
        if out.size:
            ctypes.memmove(out.ctypes.data, value.data_ptr(), out.nbytes)
        return out.view(_BF16)


# ============================================================================= the ops
def _ns(normalized_shape):
    return (int(normalized_shape),) if np.ndim(normalized_shape) == 0 else tuple(int(d) for d in normalized_shape)


def _check_trailing(x, normalized_shape):
    ns = _ns(normalized_shape)
    shape = np.shape(x)
    if len(ns) > len(shape) or tuple(shape[len(shape) - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {list(ns)} must equal the trailing dimensions of x {tuple(shape)}")
    return ns


def _no_offset(offset, weight):
    if offset != 0.0 and weight is not None:
        raise NotImplementedError("zero-centred weights (offset != 0): ONNX's normalization ops have no offset")


def _same_type(op, x, **params):
    for name, p in params.items():
        if p is not None and np.asarray(p).dtype != x.dtype:
            raise NotImplementedError(f"{op} requires {name} of X's element type ({x.dtype}); "
                                      f"got {np.asarray(p).dtype}")


def _param(p, shape, dtype, fill):
    """``p`` as a contiguous array, or ``fill`` (1 for a scale, 0 for a bias) of ``shape`` in ``dtype``."""
    return np.full(shape, fill, dtype) if p is None else _array(p)


def _eps(eps) -> float:
    return float(eps)


class OnnxOps:
    """refnorm's protocol functions over single-node ONNX models run by ``runner``.

    Forward, the statistics the models output and BatchNorm's running statistics; no backward
    (ONNX inference defines none)."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def _run(self, op, inputs, outputs, attrs, domain=""):
        model = node_model(op, inputs, outputs, attrs, domain)
        feeds = {i.name: inputs[i.name] for i in model.graph.input}
        return self.runner.run(model, feeds)

    # ------------------------------------------------------------------------- LayerNorm
    def _layer_norm(self, x, normalized_shape, weight, bias, eps, offset, stats):
        _no_offset(offset, weight)
        x = _array(x)
        ns = _check_trailing(x, normalized_shape)
        _same_type("LayerNormalization-17", x, weight=weight, bias=bias)
        axis = x.ndim - len(ns)
        outputs = {"Y": (elem_type(x.dtype), x.shape)}
        if stats:
            red = x.shape[:axis] + (1,) * len(ns)
            outputs.update(Mean=(STASH_TYPE, red), InvStdDev=(STASH_TYPE, red))
        res = self._run("LayerNormalization", {"X": x, "Scale": _param(weight, ns, x.dtype, 1),
                                               "B": None if bias is None else _array(bias)},
                        outputs, dict(axis=axis, epsilon=_eps(eps), stash_type=STASH_TYPE))
        if not stats:
            return res[0]
        lead = x.shape[:axis]
        return res[0], {"mean": res[1].reshape(lead), "rstd": res[2].reshape(lead)}

    def layer_norm(self, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
        return self._layer_norm(x, normalized_shape, weight, bias, eps, offset, False)

    def layer_norm_stats(self, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
        """Y with LayerNormalization's optional outputs Mean and InvStdDev (rstd)."""
        return self._layer_norm(x, normalized_shape, weight, bias, eps, offset, True)

    # ------------------------------------------------------------------------- RMSNorm
    def rms_norm(self, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
        _no_offset(offset, weight)
        x = _array(x)
        ns = _check_trailing(x, normalized_shape)
        _same_type("RMSNormalization-23", x, weight=weight)
        eps = default_eps(x.dtype) if eps is None else eps
        return self._run("RMSNormalization", {"X": x, "scale": _param(weight, ns, x.dtype, 1)},
                         {"Y": (elem_type(x.dtype), x.shape)},
                         dict(axis=x.ndim - len(ns), epsilon=_eps(eps), stash_type=STASH_TYPE))[0]

    # ------------------------------------------------------------------------- BatchNorm
    def _bn(self, x, running_mean, running_var, weight, bias, training, onnx_momentum, eps):
        x = _array(x)
        C = x.shape[1]
        if training and x.size // max(1, C) == 1:
            raise ValueError("Expected more than 1 value per channel when training")
        if running_mean is None or running_var is None:
            if not training:
                raise ValueError("running_mean and running_var are required when training=False")
            running_mean, running_var = np.zeros(C, x.dtype), np.ones(C, x.dtype)
        p_dtype = np.asarray(weight).dtype if weight is not None else (
            np.asarray(bias).dtype if bias is not None else x.dtype)
        rm, rv = _array(running_mean), _array(running_var)
        outputs = {"Y": (elem_type(x.dtype), x.shape)}
        if training:  # BatchNormalization-15's shape inference requires all three outputs in training mode
            outputs.update(running_mean=(elem_type(rm.dtype), rm.shape), running_var=(elem_type(rv.dtype), rv.shape))
        return self._run("BatchNormalization",
                         {"X": x, "scale": _param(weight, (C,), p_dtype, 1), "B": _param(bias, (C,), p_dtype, 0),
                          "input_mean": rm, "input_var": rv},
                         outputs, dict(epsilon=_eps(eps), momentum=float(onnx_momentum),
                                       training_mode=int(bool(training))))

    def batch_norm(self, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
        m = 0.9 if momentum is None else 1.0 - momentum  # affects only the running outputs, not returned
        return self._bn(x, running_mean, running_var, weight, bias, training, m, eps)[0]

    def batch_norm_running_stats(self, x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                                 convention="torch"):
        """BatchNormalization-15 with training_mode=1: its running_mean/running_var outputs."""
        if convention not in ("onnx", "flax"):
            raise NotImplementedError(f"ONNX BatchNormalization computes the 'onnx' convention (momentum weights the "
                                      f"old value, biased variance), which is also the 'flax' one; not {convention!r}")
        if momentum is None:
            raise ValueError("momentum=None exists only in convention='torch'")
        _, mean, var = self._bn(x, running_mean, running_var, None, None, True, momentum, 1e-5)
        return mean, var

    # ------------------------------------------------------------------------- InstanceNorm
    def instance_norm(self, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
        if not use_input_stats:
            raise NotImplementedError("ONNX InstanceNormalization has no running statistics (use_input_stats=False)")
        x = _array(x)
        if int(np.prod(x.shape[2:])) == 1:
            raise ValueError("Expected more than 1 spatial element when training")
        _same_type("InstanceNormalization-22", x, weight=weight, bias=bias)
        C = x.shape[1]
        return self._run("InstanceNormalization", {"input": x, "scale": _param(weight, (C,), x.dtype, 1),
                                                   "B": _param(bias, (C,), x.dtype, 0)},
                         {"output": (elem_type(x.dtype), x.shape)}, dict(epsilon=_eps(eps)))[0]

    # ------------------------------------------------------------------------- GroupNorm
    def group_norm(self, x, num_groups, weight=None, bias=None, eps=1e-5):
        x = _array(x)
        C = x.shape[1]
        if num_groups < 1 or C % num_groups:
            raise ValueError(f"num_groups must divide the number of channels C = {C}, got {num_groups}")
        _same_type("GroupNormalization-21", x, weight=weight, bias=bias)
        return self._run("GroupNormalization", {"X": x, "scale": _param(weight, (C,), x.dtype, 1),
                                                "bias": _param(bias, (C,), x.dtype, 0)},
                         {"Y": (elem_type(x.dtype), x.shape)},
                         dict(epsilon=_eps(eps), num_groups=int(num_groups), stash_type=STASH_TYPE))[0]

    # ------------------------------------------------------------------------- LRN
    def local_response_norm(self, x, size, alpha=1e-4, beta=0.75, k=1.0):
        x = _array(x)
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if x.ndim < 3:
            raise ValueError(f"x must have at least 3 dimensions (N, C, *spatial), got shape {x.shape}")
        if size % 2 == 0:
            raise NotImplementedError(f"LRN with an even size ({size}): ONNX's window is [c - (size/2 - 1), "
                                      f"c + size/2], refnorm's (PyTorch's) [c - size/2, c + size/2 - 1]")
        return self._run("LRN", {"X": x}, {"Y": (elem_type(x.dtype), x.shape)},
                         dict(size=int(size), alpha=float(alpha), beta=float(beta), bias=float(k)))[0]

    # ------------------------------------------------------------------------- fused residual adds (contrib)
    def _skip(self, op, x, residual, normalized_shape, weight, bias, eps, offset, residual_dtype, stats):
        _no_offset(offset, weight)
        x, residual = _array(x), _array(residual)
        ns = _check_trailing(x, normalized_shape)
        if len(ns) != 1:
            raise NotImplementedError(f"{op} normalizes over the last dimension only; normalized_shape {list(ns)}")
        if residual.dtype != x.dtype or (residual_dtype is not None and np.dtype(residual_dtype) != x.dtype):
            raise NotImplementedError(f"{op} adds the skip in the input's type; residual "
                                      f"{residual.dtype}, residual_dtype {residual_dtype}")
        _same_type(op, x, weight=weight, bias=bias)
        inputs = {"input": x, "skip": residual, "gamma": _param(weight, ns, x.dtype, 1)}
        if op == "SkipLayerNormalization":
            inputs["beta"] = None if bias is None else _array(bias)
        outputs = {"output": (elem_type(x.dtype), x.shape)}
        red = x.shape[:-1] + (1,)
        if stats:
            if op == "SkipLayerNormalization":
                outputs["mean"] = (TensorProto.FLOAT, red)
            outputs["inv_std_var"] = (TensorProto.FLOAT, red)
        outputs["input_skip_bias_sum"] = (elem_type(x.dtype), x.shape)
        res = dict(zip(outputs, self._run(op, inputs, outputs, dict(epsilon=_eps(eps)), CONTRIB)))
        y, h = res["output"], res["input_skip_bias_sum"]
        if not stats:
            return y, h
        lead = x.shape[:-1]
        st = {"rstd": res["inv_std_var"].reshape(lead)}
        if "mean" in res:
            st = {"mean": res["mean"].reshape(lead), **st}
        return (y, h), st

    def add_layer_norm(self, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                       residual_dtype=None):
        return self._skip("SkipLayerNormalization", x, residual, normalized_shape, weight, bias, eps, offset,
                          residual_dtype, False)

    def add_layer_norm_stats(self, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                             residual_dtype=None):
        return self._skip("SkipLayerNormalization", x, residual, normalized_shape, weight, bias, eps, offset,
                          residual_dtype, True)

    def add_rms_norm(self, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
        eps = default_eps(np.asarray(x).dtype) if eps is None else eps
        return self._skip("SkipSimplifiedLayerNormalization", x, residual, normalized_shape, weight, None, eps,
                          offset, residual_dtype, False)

    def add_rms_norm_stats(self, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                           residual_dtype=None):
        eps = default_eps(np.asarray(x).dtype) if eps is None else eps
        return self._skip("SkipSimplifiedLayerNormalization", x, residual, normalized_shape, weight, None, eps,
                          offset, residual_dtype, True)
