"""keras-jax: Keras 3 normalization layers on Keras's jax backend (``KERAS_BACKEND=jax``), on CPU.

The layers, their arguments, dtype policies, statistics and running-statistics convention are
those of :mod:`refnorm.conformance.backends._keras` (``LayerNormalization``,
``RMSNormalization``, ``BatchNormalization``, ``GroupNormalization``; every semantic option
passed explicitly).  ``jax_enable_x64`` is switched on before Keras is imported, so float64
inputs and float64 layer variables exist as float64 (what Keras then computes in is measured,
not changed).  Keras picks its backend once per process: importing this module after Keras was
imported with another backend raises ``ImportError`` -- run it in its own process.

Backward: ``jax.vjp`` of ``layer.stateless_call`` (the layer's variables as arguments) with the
given ``dy``.  Forward mode: ``jax.jvp`` of the same function along the tangents (rounded to
their arguments' dtypes); double backward: ``jax.vjp`` of that backward with the given
cotangents (zeros for a missing key).
"""

from __future__ import annotations

import jax

from ._jax_setup import configure  # noqa: E402

configure()  # x64 on, the CPU unless the user chose a platform

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ..._validate import check_directions  # noqa: E402
from . import _keras  # noqa: E402
from ._keras import (  # noqa: E402
    batch_norm, batch_norm_running_stats, batch_norm_stats, group_norm, group_norm_stats, instance_norm,
    instance_norm_running_stats, instance_norm_stats, layer_norm, layer_norm_stats, rms_norm, rms_norm_stats)

keras = _keras.import_keras("jax")

BACKEND_INFO = {
    "name": "keras-jax",
    "description": f"keras {keras.__version__} layers on the jax backend (jax {jax.__version__}, CPU, x64 enabled); "
                   "backward by jax.vjp of layer.stateless_call, jvp by jax.jvp, double backward by jax.vjp of "
                   "jax.vjp",
}


def _to_tensor(a):
    return jnp.asarray(np.array(a, copy=True))


def _to_numpy(t):
    return np.array(t, copy=True)


_A = _keras.Adapter(keras, _to_tensor, _to_numpy)
_keras.bind(_A)

_PARAM = {"weight": ("gamma", "scale"), "bias": ("beta",)}


def _fn(spec, x, weight, bias):
    """``(g, names, primals)``: ``g(*primals) -> y`` over the given arguments among
    ``x``, ``weight``, ``bias`` (in that order), through the layer's stateless call."""
    layer, values, training = spec
    f, var_names = _A.model(layer, x, values, training)
    arguments = {"x": x, "weight": weight, "bias": bias}
    names = [n for n, a in arguments.items() if a is not None]
    to_var = {}
    for n in names[1:]:
        to_var[n] = next(v for v in _PARAM[n] if v in var_names)

    def g(*args):
        kw = dict(zip(names, args))
        params = [kw[n] for v in var_names for n in names[1:] if to_var[n] == v]
        return f(kw["x"], *params)[0]

    return g, names, [_to_tensor(arguments[n]) for n in names]


def _vjp(spec, dy, x, weight, bias):
    g, names, primals = _fn(spec, x, weight, bias)
    y, pullback = jax.vjp(g, *primals)
    grads = pullback(_to_tensor(dy).astype(y.dtype))
    return {n: _to_numpy(v) for n, v in zip(names, grads)}


def _like(a, ref):
    """``a`` as a jax array of ``ref``'s dtype (one rounding), or zeros like ``ref`` when None."""
    return jnp.zeros_like(ref) if a is None else _to_tensor(a).astype(ref.dtype)


def _jvp(spec, tangents, x, weight, bias):
    dirs = check_directions("tangents", tangents, {"x": x, "weight": weight, "bias": bias}, upcast=False)
    g, names, primals = _fn(spec, x, weight, bias)
    y, ty = jax.jvp(g, primals, [_like(dirs[n], p) for n, p in zip(names, primals)])
    return _to_numpy(y), _to_numpy(ty)


def _double_backward(spec, cotangents, dy, x, weight, bias):
    cots = check_directions("cotangents", cotangents, {"x": x, "weight": weight, "bias": bias}, upcast=False)
    g, names, primals = _fn(spec, x, weight, bias)

    def backward(dy_, *args):
        return jax.vjp(g, *args)[1](dy_)

    y = jax.eval_shape(g, *primals)
    grads, pullback = jax.vjp(backward, _to_tensor(dy).astype(y.dtype), *primals)
    second = pullback(tuple(_like(cots[n], gr) for n, gr in zip(names, grads)))
    return {k: _to_numpy(v) for k, v in zip(["dy"] + names, second)}


# ----------------------------------------------------------------------------- the layers' specs
def _ln(x, normalized_shape, weight, bias, eps, offset):
    _keras.no_offset(offset, weight)
    return _A.layer_norm(x, normalized_shape, weight, bias, eps)


def _rms(x, normalized_shape, weight, eps, offset):
    _keras.no_offset(offset, weight)
    return _A.rms_norm(x, normalized_shape, weight, eps)


def _in(x, running_mean, running_var, weight, bias, use_input_stats, eps):
    return _A.instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, eps)


# ----------------------------------------------------------------------------- backward
def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    return _vjp(_ln(x, normalized_shape, weight, bias, eps, offset), dy, x, weight, bias)


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _vjp(_rms(x, normalized_shape, weight, eps, offset), dy, x, weight, None)


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _vjp(_A.group_norm(x, num_groups, weight, bias, eps), dy, x, weight, bias)


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                        eps=1e-5):
    return _vjp(_A.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps), dy, x, weight,
                bias)


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                           momentum=0.1, eps=1e-5):
    return _vjp(_in(x, running_mean, running_var, weight, bias, use_input_stats, eps), dy, x, weight, bias)


# ----------------------------------------------------------------------------- forward mode
def layer_norm_jvp(tangents, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    return _jvp(_ln(x, normalized_shape, weight, bias, eps, offset), tangents, x, weight, bias)


def rms_norm_jvp(tangents, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _jvp(_rms(x, normalized_shape, weight, eps, offset), tangents, x, weight, None)


def group_norm_jvp(tangents, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _jvp(_A.group_norm(x, num_groups, weight, bias, eps), tangents, x, weight, bias)


def batch_norm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
    return _jvp(_A.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps), tangents, x,
                weight, bias)


def instance_norm_jvp(tangents, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
    return _jvp(_in(x, running_mean, running_var, weight, bias, use_input_stats, eps), tangents, x, weight, bias)


# ----------------------------------------------------------------------------- double backward
def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                               offset=0.0):
    return _double_backward(_ln(x, normalized_shape, weight, bias, eps, offset), cotangents, dy, x, weight, bias)


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _double_backward(_rms(x, normalized_shape, weight, eps, offset), cotangents, dy, x, weight, None)


def group_norm_double_backward(cotangents, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _double_backward(_A.group_norm(x, num_groups, weight, bias, eps), cotangents, dy, x, weight, bias)


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    return _double_backward(_A.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps),
                            cotangents, dy, x, weight, bias)


def instance_norm_double_backward(cotangents, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                                  use_input_stats=True, momentum=0.1, eps=1e-5):
    return _double_backward(_in(x, running_mean, running_var, weight, bias, use_input_stats, eps), cotangents, dy, x,
                            weight, bias)

__all__ = ["BACKEND_INFO", "batch_norm", "batch_norm_running_stats", "batch_norm_stats", "group_norm",
           "group_norm_stats", "instance_norm", "instance_norm_running_stats", "instance_norm_stats", "layer_norm",
           "layer_norm_stats", "rms_norm", "rms_norm_stats", "layer_norm_backward", "rms_norm_backward",
           "group_norm_backward", "batch_norm_backward", "instance_norm_backward", "layer_norm_jvp", "rms_norm_jvp",
           "group_norm_jvp", "batch_norm_jvp", "instance_norm_jvp", "layer_norm_double_backward",
           "rms_norm_double_backward", "group_norm_double_backward", "batch_norm_double_backward",
           "instance_norm_double_backward"]
