"""What the two Keras 3 backends (``keras``: Keras's numpy backend, ``keras-jax``: its jax backend) share.

Keras chooses its backend once per process, from ``KERAS_BACKEND`` at its first import;
:func:`import_keras` sets it before that import and refuses (``ImportError``, which the loader
reports as a ``BackendLoadError``) when Keras is already imported with another backend.

Every op is one Keras 3 *layer*, built for the case's input shape and called through
``layer.stateless_call`` with the case's parameters as the layer's variables (each first given
to ``Variable.assign``, so a value of the wrong shape is Keras's own ``ValueError``):

* ``layer_norm``: ``keras.layers.LayerNormalization(axis = the trailing len(normalized_shape)
  axes, epsilon=eps, center = bias given, scale = weight given)``;
* ``rms_norm``: ``keras.layers.RMSNormalization(axis = the trailing axes, epsilon)``;
  ``eps=None`` becomes refnorm's default (float64 epsilon for float64, float32 epsilon
  otherwise; Keras's own default is 1e-6 for the layer, ``backend.epsilon()`` = 1e-7 for the op);
  its ``scale`` stays at its initial ones when no weight is given;
* ``batch_norm``: ``keras.layers.BatchNormalization(axis=1, epsilon=eps, momentum = 1 - momentum,
  center/scale)`` called with ``training=True/False``; the moving statistics are the case's
  running statistics (required when ``training=False``: Keras would use its zero/one initial values);
* ``group_norm``: ``keras.layers.GroupNormalization(groups=num_groups, axis=1, epsilon, center/scale)``;
* ``instance_norm`` with input statistics: ``keras.layers.GroupNormalization(groups=C, axis=1)``,
  which normalizes every (sample, channel) over the spatial axes with a per-channel affine --
  exactly InstanceNorm.  Keras has no InstanceNorm with running statistics
  (``use_input_stats=False``, ``instance_norm_running_stats``): not implemented.

Dtypes: each layer is built with the dtype policy of the case -- the input's dtype (``"float64"``,
``"float32"``, ``"float16"``, ``"bfloat16"``), or Keras's ``"mixed_float16"`` /
``"mixed_bfloat16"`` policy (float32 variables, half-precision compute) when a half-precision
input comes with float32 parameters.  Nothing is upcast by the adapter: what the layer computes
in (float32 for float64 layers on the numpy and jax backends: Keras maps float64 to float32 in
``backend.result_type`` everywhere but on TensorFlow) is what is measured.

Statistics: ``<op>_stats`` returns the layer's output and the statistics as the layer forms
them -- ``keras.ops.moments`` of the input cast to ``backend.result_type(x.dtype, "float32")``
over the layer's reduction axes, and ``keras.ops.rsqrt(variance + eps)``.  Keras's RMSNorm
exposes no statistic, and in inference BatchNormalization computes none: not implemented.
Running statistics: Keras updates ``moving = momentum * moving + (1 - momentum) * batch`` with
the *biased* batch variance -- refnorm's ``"onnx"``/``"flax"`` convention, where ``momentum``
already weights the old value, so it is passed unchanged.  Keras has no unbiased update and no
cumulative average: ``convention="torch"`` is not implemented.
"""

from __future__ import annotations

import os
import sys

import ml_dtypes
import numpy as np

_BF16 = np.dtype(ml_dtypes.bfloat16)


def import_keras(backend: str):
    """``keras``, imported with ``KERAS_BACKEND=backend`` (or already imported with that backend)."""
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.config.backend()
        if current != backend:
            other = {"numpy": "keras", "jax": "keras-jax"}[backend]
            raise ImportError(f"keras is already imported with backend {current!r} in this process; run the "
                              f"{other} backend in its own process, e.g. python -m refnorm.cli check --backend "
                              f"{other}")
        return loaded
    saved = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = backend
    try:
        import keras
    except BaseException:  # keras missing or broken: leave the environment as it was
        if saved is None:
            os.environ.pop("KERAS_BACKEND", None)
        else:
            os.environ["KERAS_BACKEND"] = saved
        raise

    if keras.config.backend() != backend:  # pragma: no cover - KERAS_BACKEND is read at the first import
        raise ImportError(f"keras imported with backend {keras.config.backend()!r}, not {backend!r}")
    return keras


def dtype_name(a) -> str:
    dt = np.asarray(a).dtype
    return "bfloat16" if dt == _BF16 else dt.name


def ns(normalized_shape) -> tuple[int, ...]:
    return (int(normalized_shape),) if np.ndim(normalized_shape) == 0 else tuple(int(d) for d in normalized_shape)


def check_trailing(x, normalized_shape) -> tuple[int, ...]:
    """Keras layers take axes, not a normalized_shape: the adapter checks what
    refnorm's API promises (the trailing dimensions of x) and returns the axes."""
    shape, k = np.shape(x), ns(normalized_shape)
    if len(k) > len(shape) or tuple(shape[len(shape) - len(k):]) != k:
        raise ValueError(f"normalized_shape {list(k)} must equal the trailing dimensions of x {tuple(shape)}")
    return tuple(range(len(shape) - len(k), len(shape)))


def no_offset(offset, weight):
    if offset != 0.0 and weight is not None:
        raise NotImplementedError("zero-centred weights (offset != 0): Keras's LayerNormalization/RMSNormalization "
                                  "have no offset")


def rms_eps(eps, x):
    if eps is not None:
        return float(eps)
    return float(np.finfo(np.float64 if np.asarray(x).dtype == np.float64 else np.float32).eps)


def policy(x, *params) -> str:
    """The Keras dtype policy for input ``x`` and the given parameters (see the module docstring)."""
    xd = dtype_name(x)
    pds = {dtype_name(p) for p in params if p is not None}
    if not pds or pds == {xd}:
        return xd
    if xd in ("float16", "bfloat16") and pds == {"float32"}:
        return f"mixed_{xd}"
    raise NotImplementedError(f"input {xd} with parameters in {sorted(pds)}: no Keras dtype policy has those "
                              f"variable and compute dtypes")


class Adapter:
    """The layers and calls of one Keras backend; ``K`` is the imported ``keras``.

    ``to_tensor(a)``: a fresh backend tensor of ``a`` in its own dtype; ``to_numpy(t)``:
    the NumPy array of a backend tensor, dtype kept.
    """

    def __init__(self, K, to_tensor, to_numpy):
        self.K, self.t, self.np = K, to_tensor, to_numpy

    # ------------------------------------------------------------------ models
    def model(self, layer, x, values, training=None):
        """``(f, names)``: ``f(x, *params) -> (y, {non-trainable name: new value})`` calls
        ``layer`` (built for ``x``'s shape) statelessly with the variables named in
        ``values`` (name -> array or None) set to those arrays; ``names`` are the
        trainable variables given, in the order ``f`` takes them."""
        layer.build(tuple(np.shape(x)))
        tv, ntv = list(layer.trainable_variables), list(layer.non_trainable_variables)
        known = {v.name for v in tv + ntv}
        for name, a in values.items():
            if a is not None and name not in known:
                raise NotImplementedError(f"{type(layer).__name__} has no variable {name!r}")
        for v in tv + ntv:
            if values.get(v.name) is not None:
                v.assign(self.t(values[v.name]))  # Keras's own shape check (ValueError) and dtype conversion
        names = [v.name for v in tv if values.get(v.name) is not None]
        kw = {} if training is None else {"training": training}

        def f(x_, *params):
            given = dict(zip(names, params))
            y, new = layer.stateless_call([given.get(v.name, v.value) for v in tv], [v.value for v in ntv], x_, **kw)
            return y, {v.name: n for v, n in zip(ntv, new)}

        return f, names

    def params(self, layer_values, names):
        return [self.t(layer_values[n]) for n in names]

    # ------------------------------------------------------------------ the layers
    def layer_norm(self, x, normalized_shape, weight, bias, eps):
        axes = check_trailing(x, normalized_shape)
        layer = self.K.layers.LayerNormalization(axis=list(axes), epsilon=float(eps), center=bias is not None,
                                                 scale=weight is not None, dtype=policy(x, weight, bias))
        return layer, {"gamma": weight, "beta": bias}, None

    def rms_norm(self, x, normalized_shape, weight, eps):
        axes = check_trailing(x, normalized_shape)
        layer = self.K.layers.RMSNormalization(axis=list(axes), epsilon=rms_eps(eps, x), dtype=policy(x, weight))
        return layer, {"scale": weight}, None

    def batch_norm(self, x, running_mean, running_var, weight, bias, training, momentum, eps):
        if not training and (running_mean is None or running_var is None):
            raise ValueError("running_mean and running_var are required when training=False")
        layer = self.K.layers.BatchNormalization(axis=1, momentum=1.0 - (0.1 if momentum is None else momentum),
                                                 epsilon=float(eps), center=bias is not None,
                                                 scale=weight is not None,
                                                 dtype=policy(x, weight, bias, running_mean, running_var))
        return layer, {"gamma": weight, "beta": bias, "moving_mean": running_mean,
                       "moving_variance": running_var}, bool(training)

    def group_norm(self, x, num_groups, weight, bias, eps):
        layer = self.K.layers.GroupNormalization(groups=int(num_groups), axis=1, epsilon=float(eps),
                                                 center=bias is not None, scale=weight is not None,
                                                 dtype=policy(x, weight, bias))
        return layer, {"gamma": weight, "beta": bias}, None

    def instance_norm(self, x, running_mean, running_var, weight, bias, use_input_stats, eps):
        if not use_input_stats:
            raise NotImplementedError("Keras has no InstanceNorm with running statistics (use_input_stats=False)")
        if np.ndim(x) < 2:
            raise ValueError(f"x must have at least 2 dimensions (N, C, ...), got shape {np.shape(x)}")
        return self.group_norm(x, np.shape(x)[1], weight, bias, eps)

    # ------------------------------------------------------------------ calls
    def run(self, x, spec):
        """``(y, new non-trainable values)`` of the layer on ``x``, as NumPy arrays."""
        layer, values, training = spec
        f, names = self.model(layer, x, values, training)
        y, new = f(self.t(x), *self.params(values, names))
        return self.np(y), {k: self.np(v) for k, v in new.items()}

    def moments(self, x, axes, eps):
        """``(mean, rstd)`` as Keras's normalization layers form them: ``keras.ops.moments`` of
        ``x`` cast to ``backend.result_type(x.dtype, "float32")``, ``keras.ops.rsqrt(var + eps)``."""
        ops = self.K.ops
        xt = self.t(x)
        xc = ops.cast(xt, self.K.backend.result_type(xt.dtype, "float32"))
        mean, var = ops.moments(xc, axes=list(axes), keepdims=False)
        return self.np(mean), self.np(ops.rsqrt(var + float(eps)))

    def running_stats(self, x, running_mean, running_var, momentum, convention):
        if convention == "torch":
            raise NotImplementedError("Keras's BatchNormalization updates its moving variance with the biased batch "
                                      "variance, momentum weighting the old value (convention 'onnx'/'flax'); it has "
                                      "no 'torch' (unbiased) update")
        if convention not in ("onnx", "flax"):
            raise ValueError(f"convention must be 'torch', 'onnx' or 'flax', got {convention!r}")
        if momentum is None:
            raise ValueError("momentum=None exists only in convention='torch'")
        layer = self.K.layers.BatchNormalization(axis=1, momentum=float(momentum), epsilon=1e-5,
                                                 center=False, scale=False,
                                                 dtype=policy(x, running_mean, running_var))
        _, new = self.run(x, (layer, {"moving_mean": running_mean, "moving_variance": running_var}, True))
        return new["moving_mean"], new["moving_variance"]


# ============================================================================= the protocol functions
# One Keras backend per process (import_keras), so the functions below use the adapter the backend
# module bound with bind(); keras_numpy and keras_jax re-export them.
_A: Adapter | None = None


def bind(adapter: Adapter) -> None:
    global _A
    _A = adapter


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    no_offset(offset, weight)
    return _A.run(x, _A.layer_norm(x, normalized_shape, weight, bias, eps))[0]


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    y = layer_norm(x, normalized_shape, weight, bias, eps, offset=offset)
    axes = check_trailing(x, normalized_shape)
    mean, rstd = _A.moments(x, axes, eps)
    return y, {"mean": mean, "rstd": rstd}


def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    no_offset(offset, weight)
    return _A.run(x, _A.rms_norm(x, normalized_shape, weight, eps))[0]


def rms_norm_stats(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    raise NotImplementedError("keras.ops.rms_normalization exposes no statistic (its rsqrt(mean(x**2) + eps) is "
                              "internal)")


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return _A.run(x, _A.group_norm(x, num_groups, weight, bias, eps))[0]


def _grouped_moments(x, groups, eps):
    """GroupNormalization's statistics: x reshaped as the layer does, (N, G, C // G, *spatial),
    reduced over all but the first two axes; ``(N, G)`` each."""
    shape = np.shape(x)
    xg = np.asarray(x).reshape(shape[:1] + (groups, shape[1] // groups) + shape[2:])
    return _A.moments(xg, range(2, xg.ndim), eps)


def group_norm_stats(x, num_groups, weight=None, bias=None, eps=1e-5):
    y = group_norm(x, num_groups, weight, bias, eps)
    mean, rstd = _grouped_moments(x, int(num_groups), eps)
    return y, {"mean": mean, "rstd": rstd}


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    return _A.run(x, _A.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps))[0]


def batch_norm_stats(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if not training:
        raise NotImplementedError("Keras's BatchNormalization computes no statistics in inference (it normalizes by "
                                  "its moving statistics)")
    y = batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    mean, rstd = _A.moments(x, [0] + list(range(2, np.ndim(x))), eps)
    return y, {"mean": mean, "rstd": rstd}


def batch_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                             convention="torch"):
    return _A.running_stats(x, running_mean, running_var, momentum, convention)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    return _A.run(x, _A.instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, eps))[0]


def instance_norm_stats(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                        momentum=0.1, eps=1e-5):
    y = instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    mean, rstd = _grouped_moments(x, np.shape(x)[1], eps)
    return y, {"mean": mean, "rstd": rstd}


def instance_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, convention="torch"):
    raise NotImplementedError("Keras has no InstanceNorm running statistics")


FORWARD = ("layer_norm", "layer_norm_stats", "rms_norm", "rms_norm_stats", "group_norm", "group_norm_stats",
           "batch_norm", "batch_norm_stats", "batch_norm_running_stats", "instance_norm", "instance_norm_stats",
           "instance_norm_running_stats")
