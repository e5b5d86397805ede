"""jax: Flax linen normalization layers (and jax.numpy where Flax has no equivalent) on CPU.

``jax_enable_x64`` is switched on at import so float64 cases run in float64.
Flax layers used, with every semantic option passed explicitly
(``use_fast_variance=False`` -- Flax's default is the one-pass variance, E1 --,
``epsilon``, reduction/feature axes, ``use_bias``/``use_scale``,
``force_float32_reductions=True``, ``dtype`` = the input dtype):

* ``layer_norm``: ``nn.LayerNorm`` with ``reduction_axes = feature_axes`` = the
  trailing ``len(normalized_shape)`` axes;
* ``rms_norm``: ``nn.RMSNorm`` likewise; ``eps=None`` becomes refnorm's default
  (PyTorch's kernel: float64 epsilon for float64, float32 epsilon otherwise) --
  Flax has no "None";
* ``group_norm``, ``instance_norm`` (input statistics), ``batch_norm``: Flax is
  channels-last, so ``x`` is moved from ``(N, C, *spatial)`` to ``(N, *spatial, C)``
  and back; ``nn.GroupNorm(num_groups)``, ``nn.InstanceNorm``,
  ``nn.BatchNorm(axis=-1, use_running_average=not training)``;
* jax.numpy: ``instance_norm(use_input_stats=False)`` (Flax has no running
  statistics for InstanceNorm), every ``<op>_stats`` (Flax returns no saved
  statistics; two-pass, float32 for half types), running statistics in the
  torch convention (Flax implements only its own: ``"flax"``/``"onnx"`` go
  through ``nn.BatchNorm`` with ``momentum`` = the weight of the old value).

Backward: ``jax.vjp`` of the same function with the given ``dy``.  Forward
mode: ``jax.jvp`` of it along the tangents (rounded to their arguments'
dtypes); double backward: ``jax.vjp`` of that backward (``jax.vjp`` of
``jax.vjp``) with the given cotangents.  Flax has no fused residual add, so
``add_rms_norm`` / ``add_layer_norm`` are not implemented at all.
"""

from __future__ import annotations

import jax

from ._jax_setup import configure  # noqa: E402

configure()  # x64 on, the CPU unless the user chose a platform

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ..._validate import check_directions  # noqa: E402

try:
    import flax.errors as flax_errors  # noqa: E402
    import flax.linen as nn  # noqa: E402

    HAVE_FLAX = True
except ImportError:  # pragma: no cover - flax is optional
    nn = flax_errors = None
    HAVE_FLAX = False

BACKEND_INFO = {
    "name": "jax",
    "description": f"jax {jax.__version__}" + (" + flax.linen normalization layers" if HAVE_FLAX else
                                                 " (jax.numpy only: flax not installed)")
                   + " on CPU, x64 enabled; backward by jax.vjp, jvp by jax.jvp, double backward by jax.vjp of "
                     "jax.vjp",
    # jax.numpy reports incompatible shapes as TypeError; Flax reports a parameter
    # of the wrong shape as flax.errors.ScopeParamShapeError (a FlaxError)
    "error_types": (TypeError,) + ((flax_errors.FlaxError,) if HAVE_FLAX else ()),
}


def _j(a):
    return None if a is None else jnp.asarray(np.array(a, copy=True))


def _np(a):
    return None if a is None else np.asarray(a)


def _ns(normalized_shape):
    return (int(normalized_shape),) if np.ndim(normalized_shape) == 0 else tuple(int(d) for d in normalized_shape)


def _check_trailing(x, normalized_shape):
    """Flax layers take reduction axes, not a normalized_shape: the adapter checks
    what torch.nn.functional's API promises (the trailing dimensions of x)."""
    ns = _ns(normalized_shape)
    shape = np.shape(x)
    if len(ns) > len(shape) or tuple(shape[len(shape) - len(ns):]) != ns:
        raise ValueError(f"normalized_shape {list(ns)} must equal the trailing dimensions of x {tuple(shape)}")


def _acc(dtype):
    return jnp.float64 if np.dtype(dtype) == np.float64 else jnp.float32


def _rms_eps(eps, dtype):
    if eps is not None:
        return float(eps)
    return float(np.finfo(np.float64 if np.dtype(dtype) == np.float64 else np.float32).eps)


def _to_last(x):
    return jnp.moveaxis(x, 1, -1)


def _to_first(y):
    return jnp.moveaxis(y, -1, 1)


def _params(weight, bias):
    p = {}
    if weight is not None:
        p["scale"] = weight
    if bias is not None:
        p["bias"] = bias
    return p


def _vjp(f, dy, x, weight, bias):
    """Gradients of ``f(x, weight, bias)`` for the given ``dy``; None arguments are not differentiated."""
    names = [n for n, a in (("x", x), ("weight", weight), ("bias", bias)) if a is not None]
    vals = {"x": _j(x), "weight": _j(weight), "bias": _j(bias)}

    def g(*args):
        kw = dict(zip(names, args))
        return f(kw.get("x"), kw.get("weight"), kw.get("bias"))

    y, pullback = jax.vjp(g, *[vals[n] for n in names])
    grads = pullback(_j(dy).astype(y.dtype))
    return {n: _np(v) for n, v in zip(names, grads)}


def _common(dtype):
    return dict(use_fast_variance=False, force_float32_reductions=True, dtype=jnp.dtype(dtype),
                param_dtype=jnp.dtype(dtype))


# ----------------------------------------------------------------------------- jnp statistics
def _moments(x, axes, eps, center=True):
    """Two-pass mean and rstd in the accumulation dtype (keepdims)."""
    xa = x.astype(_acc(x.dtype))
    mean = jnp.mean(xa, axis=axes, keepdims=True) if center else jnp.zeros((), xa.dtype)
    var = jnp.mean(jnp.square(xa - mean), axis=axes, keepdims=True)
    return mean, jax.lax.rsqrt(var + jnp.asarray(eps, xa.dtype))


# ----------------------------------------------------------------------------- LayerNorm
def _ln_fn(normalized_shape, eps, dtype, use_scale, use_bias):
    k = len(_ns(normalized_shape))
    axes = tuple(range(-k, 0))
    mod = nn.LayerNorm(epsilon=eps, use_bias=use_bias, use_scale=use_scale, reduction_axes=axes, feature_axes=axes,
                       **_common(dtype))
    return lambda x, w, b: mod.apply({"params": _params(w, b)}, x)


def _no_offset(offset, weight):
    if offset != 0.0 and weight is not None:
        raise NotImplementedError("zero-centred weights (offset != 0): Flax's LayerNorm/RMSNorm have no offset")


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _ln_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None, bias is not None)
    return _np(f(_j(x), _j(weight), _j(bias)))


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _ln_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None, bias is not None)
    return _vjp(f, dy, x, weight, bias)


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    _no_offset(offset, weight)
    k = len(_ns(normalized_shape))
    xj = _j(x)
    mean, rstd = _moments(xj, tuple(range(xj.ndim - k, xj.ndim)), eps)
    lead = xj.shape[: xj.ndim - k]
    return layer_norm(x, normalized_shape, weight, bias, eps), {"mean": _np(mean).reshape(lead),
                                                                "rstd": _np(rstd).reshape(lead)}


# ----------------------------------------------------------------------------- RMSNorm
def _rms_fn(normalized_shape, eps, dtype, use_scale):
    k = len(_ns(normalized_shape))
    axes = tuple(range(-k, 0))
    mod = nn.RMSNorm(epsilon=_rms_eps(eps, dtype), use_scale=use_scale, reduction_axes=axes, feature_axes=axes,
                     **_common(dtype))
    return lambda x, w, b: mod.apply({"params": _params(w, None)}, x)


def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _rms_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None)
    return _np(f(_j(x), _j(weight), None))


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _rms_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None)
    return _vjp(f, dy, x, weight, None)


def rms_norm_stats(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    _no_offset(offset, weight)
    k = len(_ns(normalized_shape))
    xj = _j(x)
    _, rstd = _moments(xj, tuple(range(xj.ndim - k, xj.ndim)), _rms_eps(eps, xj.dtype), center=False)
    return rms_norm(x, normalized_shape, weight, eps), {"rstd": _np(rstd).reshape(xj.shape[: xj.ndim - k])}


# ----------------------------------------------------------------------------- GroupNorm
def _gn_fn(num_groups, eps, dtype, use_scale, use_bias, ndim):
    mod = nn.GroupNorm(num_groups=int(num_groups), group_size=None, epsilon=eps, use_bias=use_bias,
                       use_scale=use_scale, reduction_axes=tuple(range(1, ndim)), **_common(dtype))
    return lambda x, w, b: _to_first(mod.apply({"params": _params(w, b)}, _to_last(x)))


def _check_groups(x, num_groups):
    C = np.shape(x)[1]
    if num_groups < 1 or C % num_groups:
        raise ValueError(f"num_groups must divide the number of channels C = {C}, got {num_groups}")


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    _check_groups(x, num_groups)
    f = _gn_fn(num_groups, eps, np.asarray(x).dtype, weight is not None, bias is not None, np.ndim(x))
    return _np(f(_j(x), _j(weight), _j(bias)))


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    _check_groups(x, num_groups)
    f = _gn_fn(num_groups, eps, np.asarray(x).dtype, weight is not None, bias is not None, np.ndim(x))
    return _vjp(f, dy, x, weight, bias)


def group_norm_stats(x, num_groups, weight=None, bias=None, eps=1e-5):
    y = group_norm(x, num_groups, weight, bias, eps)
    xj = _j(x)
    N, C = xj.shape[:2]
    # explicit set size: reshape(..., -1) is ambiguous (and raises) when x is empty
    k = (C // num_groups) * int(np.prod(xj.shape[2:], dtype=np.int64))
    mean, rstd = _moments(xj.reshape(N, num_groups, k), (2,), eps)
    return y, {"mean": _np(mean).reshape(N, num_groups), "rstd": _np(rstd).reshape(N, num_groups)}


# ----------------------------------------------------------------------------- BatchNorm
def _bn_fn(training, momentum, eps, dtype, use_scale, use_bias, running_mean, running_var, C):
    """``f(x, w, b) -> (y, updated batch_stats)``; Flax's momentum weights the old value."""
    mod = nn.BatchNorm(use_running_average=not training, axis=-1, momentum=momentum, epsilon=eps,
                       use_bias=use_bias, use_scale=use_scale, **_common(dtype))
    acc = _acc(dtype)
    stats = {"mean": jnp.zeros(C, acc) if running_mean is None else _j(running_mean),
             "var": jnp.ones(C, acc) if running_var is None else _j(running_var)}

    def f(x, w, b):
        y, upd = mod.apply({"params": _params(w, b), "batch_stats": stats}, _to_last(x), mutable=["batch_stats"])
        return _to_first(y), upd["batch_stats"]

    return f


def _bn_check(x, running_mean, training):
    if not training and running_mean is None:
        raise ValueError("running_mean and running_var are required when training=False")
    if training and np.size(x) // max(1, np.shape(x)[1]) == 1:
        raise ValueError("Expected more than 1 value per channel when training")


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    _bn_check(x, running_mean, training)
    f = _bn_fn(training, 0.9, eps, np.asarray(x).dtype, weight is not None, bias is not None, running_mean,
               running_var, np.shape(x)[1])
    return _np(f(_j(x), _j(weight), _j(bias))[0])


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                        eps=1e-5):
    _bn_check(x, running_mean, training)
    f = _bn_fn(training, 0.9, eps, np.asarray(x).dtype, weight is not None, bias is not None, running_mean,
               running_var, np.shape(x)[1])
    return _vjp(lambda x_, w, b: f(x_, w, b)[0], dy, x, weight, bias)


def batch_norm_stats(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    y = batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    xj = _j(x)
    if training:
        N, C = xj.shape[:2]
        mean, rstd = _moments(jnp.moveaxis(xj, 1, 0).reshape(C, -1), (1,), eps)
    else:
        acc = _acc(xj.dtype)
        mean = _j(running_mean).astype(acc)
        rstd = jax.lax.rsqrt(_j(running_var).astype(acc) + jnp.asarray(eps, acc))
    return y, {"mean": _np(mean).reshape(-1), "rstd": _np(rstd).reshape(-1)}


def _torch_running(x3, running_mean, running_var, factor, per_sample):
    """Torch convention in jax.numpy: unbiased variance, ``factor`` weights the new value.
    ``x3`` is ``(N, C, HW)``; ``per_sample``: InstanceNorm (statistics per (n, c), averaged over n)."""
    acc = _acc(x3.dtype)
    xa = x3.astype(acc)
    axes = (2,) if per_sample else (0, 2)
    n = xa.shape[2] if per_sample else xa.shape[0] * xa.shape[2]
    mean = jnp.mean(xa, axis=axes, keepdims=True)
    var = jnp.sum(jnp.square(xa - mean), axis=axes, keepdims=True) / (n - 1)
    mean, var = (jnp.mean(mean, axis=0).reshape(-1), jnp.mean(var, axis=0).reshape(-1)) if per_sample else (
        mean.reshape(-1), var.reshape(-1))
    f = jnp.asarray(factor, acc)
    rm, rv = _j(running_mean).astype(acc), _j(running_var).astype(acc)
    return (_np((f * mean + (1 - f) * rm).astype(np.asarray(running_mean).dtype)),
            _np((f * var + (1 - f) * rv).astype(np.asarray(running_var).dtype)))


def batch_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                             convention="torch"):
    xj = _j(x)
    N, C = xj.shape[:2]
    if np.size(x) // max(1, C) == 1:
        raise ValueError("Expected more than 1 value per channel when training")
    if convention == "torch":
        if momentum is None:
            if num_batches_tracked is None:
                raise ValueError("num_batches_tracked is required when momentum=None")
            momentum = 1.0 / (int(num_batches_tracked) + 1)
        return _torch_running(xj.reshape(N, C, -1), running_mean, running_var, momentum, per_sample=False)
    if convention not in ("flax", "onnx"):
        raise ValueError(f"convention must be 'torch', 'onnx' or 'flax', got {convention!r}")
    if momentum is None:
        raise ValueError("momentum=None exists only in convention='torch'")
    f = _bn_fn(True, float(momentum), 1e-5, np.asarray(x).dtype, False, False, running_mean, running_var, C)
    _, upd = f(xj, None, None)
    return (_np(upd["mean"]).astype(np.asarray(running_mean).dtype),
            _np(upd["var"]).astype(np.asarray(running_var).dtype))


# ----------------------------------------------------------------------------- InstanceNorm
def _in_fn(eps, dtype, use_scale, use_bias):
    mod = nn.InstanceNorm(epsilon=eps, use_bias=use_bias, use_scale=use_scale, feature_axes=-1, **_common(dtype))
    return lambda x, w, b: _to_first(mod.apply({"params": _params(w, b)}, _to_last(x)))


def _in_const_fn(running_mean, running_var, eps, dtype):
    """Normalization by running statistics (jax.numpy; Flax has no such InstanceNorm mode)."""
    acc = _acc(dtype)

    def f(x, w, b):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x.astype(acc) - _j(running_mean).astype(acc).reshape(shape)) * jax.lax.rsqrt(
            _j(running_var).astype(acc).reshape(shape) + jnp.asarray(eps, acc))
        if w is not None:
            y = y * w.astype(acc).reshape(shape)
        if b is not None:
            y = y + b.astype(acc).reshape(shape)
        return y.astype(dtype)

    return f


def _in_select(x, running_mean, running_var, weight, bias, use_input_stats, eps):
    dtype = np.asarray(x).dtype
    if use_input_stats:
        if np.prod(np.shape(x)[2:]) == 1:
            raise ValueError("Expected more than 1 spatial element when training")
        return _in_fn(eps, dtype, weight is not None, bias is not None)
    if running_mean is None or running_var is None:
        raise ValueError("running_mean and running_var are required when use_input_stats=False")
    return _in_const_fn(running_mean, running_var, eps, dtype)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    f = _in_select(x, running_mean, running_var, weight, bias, use_input_stats, eps)
    return _np(f(_j(x), _j(weight), _j(bias)))


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                           momentum=0.1, eps=1e-5):
    f = _in_select(x, running_mean, running_var, weight, bias, use_input_stats, eps)
    return _vjp(f, dy, x, weight, bias)


def instance_norm_stats(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                        momentum=0.1, eps=1e-5):
    y = instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps)
    xj = _j(x)
    N, C = xj.shape[:2]
    if use_input_stats:
        mean, rstd = _moments(xj.reshape(N, C, -1), (2,), eps)
        return y, {"mean": _np(mean).reshape(N, C), "rstd": _np(rstd).reshape(N, C)}
    acc = _acc(xj.dtype)
    return y, {"mean": _np(_j(running_mean).astype(acc)),
               "rstd": _np(jax.lax.rsqrt(_j(running_var).astype(acc) + jnp.asarray(eps, acc)))}


def instance_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, convention="torch"):
    if convention != "torch":
        raise NotImplementedError(f"instance norm running statistics exist only in convention='torch', "
                                  f"not {convention!r}")
    xj = _j(x)
    N, C = xj.shape[:2]
    if np.prod(xj.shape[2:]) == 1:
        raise ValueError("Expected more than 1 spatial element when training")
    return _torch_running(xj.reshape(N, C, -1), running_mean, running_var, momentum, per_sample=True)



# ============================================================================= forward mode and double backward
# On the same functions ``f(x, weight, bias)`` the forward and backward above use (the Flax layers, the
# jax.numpy InstanceNorm with running statistics), in the case dtype.  ``<op>_jvp``: jax.jvp of f along
# the tangents (a missing key is a zero tangent; tangents rounded to their argument's dtype).
# ``<op>_double_backward``: jax.vjp of the backward ``(dy, *args) -> jax.vjp(f, *args)[1](dy)`` with the
# cotangents of its results (zeros for a missing key).  Flax has no fused residual add, so this backend
# has no add_rms_norm/add_layer_norm (forward, backward or derivatives).


def _directions(kind, value, arguments):
    """The ``tangents`` / ``cotangents`` dict checked as refnorm checks it
    (:func:`refnorm._validate.check_directions`), each array in its own dtype."""
    return check_directions(kind, value, arguments, upcast=False)


def _like(a, ref):
    """``a`` as a jax array of ``ref``'s dtype (one rounding), or zeros like ``ref`` when None."""
    return jnp.zeros_like(ref) if a is None else _j(a).astype(ref.dtype)


def _positional(f, names):
    """``f(x, weight, bias)`` as a function of the given arguments only, in order."""
    def g(*args):
        kw = dict(zip(names, args))
        return f(kw.get("x"), kw.get("weight"), kw.get("bias"))
    return g


def _jvp(f, tangents, x, weight, bias):
    """``(y, ty)``: jax.jvp of ``f(x, weight, bias)`` along ``tangents``; None arguments stay constant."""
    arguments = {"x": x, "weight": weight, "bias": bias}
    dirs = _directions("tangents", tangents, arguments)
    names = [n for n, a in arguments.items() if a is not None]
    primals = [_j(arguments[n]) for n in names]
    y, ty = jax.jvp(_positional(f, names), primals, [_like(dirs[n], p) for n, p in zip(names, primals)])
    return _np(y), _np(ty)


def _double_backward(f, cotangents, dy, x, weight, bias):
    """jax.vjp of the backward of ``f`` with the given cotangents: ``{"dy", "x", given weight/bias}``."""
    arguments = {"x": x, "weight": weight, "bias": bias}
    cots = _directions("cotangents", cotangents, arguments)
    names = [n for n, a in arguments.items() if a is not None]
    g = _positional(f, names)
    primals = [_j(arguments[n]) for n in names]

    def backward(dy_, *args):
        return jax.vjp(g, *args)[1](dy_)

    y = jax.eval_shape(g, *primals)
    dyj = _j(dy).astype(y.dtype)
    grads, pullback = jax.vjp(backward, dyj, *primals)
    second = pullback(tuple(_like(cots[n], gr) for n, gr in zip(names, grads)))
    return {k: _np(v) for k, v in zip(["dy"] + names, second)}


def layer_norm_jvp(tangents, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _ln_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None, bias is not None)
    return _jvp(f, tangents, x, weight, bias)


def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                               offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _ln_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None, bias is not None)
    return _double_backward(f, cotangents, dy, x, weight, bias)


def rms_norm_jvp(tangents, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _rms_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None)
    return _jvp(f, tangents, x, weight, None)


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    _no_offset(offset, weight)
    _check_trailing(x, normalized_shape)
    f = _rms_fn(normalized_shape, eps, np.asarray(x).dtype, weight is not None)
    return _double_backward(f, cotangents, dy, x, weight, None)


def group_norm_jvp(tangents, x, num_groups, weight=None, bias=None, eps=1e-5):
    _check_groups(x, num_groups)
    f = _gn_fn(num_groups, eps, np.asarray(x).dtype, weight is not None, bias is not None, np.ndim(x))
    return _jvp(f, tangents, x, weight, bias)


def group_norm_double_backward(cotangents, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    _check_groups(x, num_groups)
    f = _gn_fn(num_groups, eps, np.asarray(x).dtype, weight is not None, bias is not None, np.ndim(x))
    return _double_backward(f, cotangents, dy, x, weight, bias)


def _bn_y(x, running_mean, running_var, weight, bias, training, eps):
    _bn_check(x, running_mean, training)
    f = _bn_fn(training, 0.9, eps, np.asarray(x).dtype, weight is not None, bias is not None, running_mean,
               running_var, np.shape(x)[1])
    return lambda x_, w, b: f(x_, w, b)[0]


def batch_norm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
    return _jvp(_bn_y(x, running_mean, running_var, weight, bias, training, eps), tangents, x, weight, bias)


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    return _double_backward(_bn_y(x, running_mean, running_var, weight, bias, training, eps), cotangents, dy, x,
                            weight, bias)


def instance_norm_jvp(tangents, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
    f = _in_select(x, running_mean, running_var, weight, bias, use_input_stats, eps)
    return _jvp(f, tangents, x, weight, bias)


def instance_norm_double_backward(cotangents, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                                  use_input_stats=True, momentum=0.1, eps=1e-5):
    f = _in_select(x, running_mean, running_var, weight, bias, use_input_stats, eps)
    return _double_backward(f, cotangents, dy, x, weight, bias)

if not HAVE_FLAX:  # pragma: no cover
    raise ImportError("the jax backend needs flax (pip install flax)")
