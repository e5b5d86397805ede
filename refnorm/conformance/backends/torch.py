"""torch: ``torch.nn.functional`` on CPU, in the case dtype.

Inputs are converted to CPU tensors of the same dtype (bfloat16 via float32
-> ``torch.bfloat16``; float16, float32, float64 directly); PyTorch then
computes as its CPU kernels do (half types accumulate in float32, outputs are
rounded to the input dtype).  Backward: autograd with the given ``dy``.
Saved statistics: ``torch.native_layer_norm``, ``torch.native_group_norm``,
``torch.native_batch_norm`` (training mode; in eval mode PyTorch saves no
statistics: NotImplementedError) and ``torch._fused_rms_norm`` (rstd); ``F.normalize`` saves
none, so ``normalize_stats`` returns its own denominator ``x.norm(p, dim).clamp_min(eps)``.
InstanceNorm exposes no statistics (no ``instance_norm_stats``).  Zero-centred
weights (``offset=``) as the Hugging Face Gemma RMSNorm module computes them:
float32 (float64 for float64), scale ``offset + weight`` in that dtype, one
rounding to the input dtype.  Running
statistics: ``F.batch_norm`` / ``F.instance_norm`` with ``training=True`` on
copies of the buffers, torch convention only; ``momentum=None`` as
``nn.BatchNorm`` does it (factor ``1 / (num_batches_tracked + 1)``).
Forward mode and second order (the five standard ops, the fused residual
adds and ``F.normalize``): ``<op>_jvp`` is ``torch.func.jvp`` of the forward's own functional path
(the same ``F.*`` call, the same offset path and residual add) along the
tangents, rounded to their arguments' dtypes; ``<op>_double_backward`` is
autograd's double backward -- ``torch.autograd.grad(..., create_graph=True)``
with ``dy`` (``dh``) as leaves, then ``torch.autograd.grad`` of the sum of
``<cotangents[k], first gradient k>`` -- with zeros where that sum does not
depend on an input.  Whatever PyTorch raises there propagates (weight None with
a bias given crashes its double backward; ``F.group_norm(x, G, None, bias)``
its first backward).  Inputs are never mutated (every tensor is a copy).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F

from ..._validate import check_directions

BACKEND_INFO = {
    "name": "torch",
    "description": f"torch.nn.functional {torch.__version__} on CPU in the case dtype; backward by autograd, "
                   "jvp by torch.func.jvp, double backward by autograd reverse over reverse",
    # PyTorch reports bad arguments (shapes, missing running statistics) as RuntimeError
    "error_types": (RuntimeError,),
}

_BF16 = np.dtype(ml_dtypes.bfloat16)


def _t(a, grad=False):
    """A CPU tensor copy of ``a`` in its own dtype (None stays None)."""
    if a is None:
        return None
    arr = np.asarray(a)
    if arr.dtype == _BF16:
        t = torch.tensor(arr.astype(np.float32)).to(torch.bfloat16)
    elif all(s >= 0 for s in arr.strides) and arr.size:
        # the memory layout kept (a transposed, channels-last, stepped or offset view reaches PyTorch as a
        # strided tensor), in a copy of the buffer so nothing PyTorch does can reach the caller's array
        t = torch.from_numpy(np.lib.stride_tricks.as_strided(_buffer_copy(arr), arr.shape, arr.strides))
    else:  # PyTorch has no negative strides: a contiguous copy
        t = torch.tensor(np.array(arr, copy=True))
    return t.requires_grad_(True) if grad else t


def _buffer_copy(arr):
    """A copy of the memory ``arr`` spans, positioned so that ``arr``'s strides
    index it from its start (all strides non-negative)."""
    span = sum((n - 1) * s for n, s in zip(arr.shape, arr.strides)) + arr.itemsize
    flat = np.lib.stride_tricks.as_strided(arr, (span // arr.itemsize,), (arr.itemsize,)) \
        if span % arr.itemsize == 0 else None
    if flat is None:
        return np.array(arr, copy=True)
    return flat.copy()


def _np(t):
    """A NumPy array in the tensor's dtype (bfloat16 as ml_dtypes.bfloat16)."""
    if t is None:
        return None
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(_BF16)
    return t.numpy().copy()


def _grads(y, dy, leaves):
    y.backward(_t(dy).to(y.dtype))
    out = {}
    for name, leaf in leaves.items():
        if leaf is not None:
            out[name] = _np(leaf.grad) if leaf.grad is not None else np.zeros(leaf.shape, _np(leaf).dtype)
    return out


def _ns(normalized_shape):
    return [int(normalized_shape)] if np.ndim(normalized_shape) == 0 else [int(d) for d in normalized_shape]


# ----------------------------------------------------------------------------- zero-centred weights
# A model with zero-centred weights (offset != 0) is written the way the Hugging Face Gemma RMSNorm
# module and TransformerEngine's zero_centered_gamma compute it: upcast to float32 (float64 stays
# float64), scale by (offset + weight) formed in that dtype, round the output to the input dtype once.


def _acc(t):
    return None if t is None else t.to(torch.promote_types(t.dtype, torch.float32))


def _ln_offset(x, ns, weight, bias, eps, offset):
    return F.layer_norm(_acc(x), ns, offset + _acc(weight), _acc(bias), eps).to(x.dtype)


def _rms_offset(x, ns, weight, eps, offset):
    xf = _acc(x)
    if eps is None:
        eps = torch.finfo(xf.dtype).eps  # float64 -> 2^-52, everything else -> float32's (as F.rms_norm)
    dims = tuple(range(-len(ns), 0))
    y = xf * torch.rsqrt(xf.pow(2).mean(dims, keepdim=True) + eps)
    return (y * (offset + _acc(weight))).to(x.dtype)


# ----------------------------------------------------------------------------- LayerNorm
def _ln(x, ns, weight, bias, eps, offset):
    if offset == 0.0 or weight is None:
        return F.layer_norm(x, ns, weight, bias, eps)
    return _ln_offset(x, ns, weight, bias, eps, offset)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    with torch.no_grad():
        return _np(_ln(_t(x), _ns(normalized_shape), _t(weight), _t(bias), eps, offset))


def layer_norm_backward(dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    leaves = {"x": _t(x, True), "weight": _t(weight, True), "bias": _t(bias, True)}
    y = _ln(leaves["x"], _ns(normalized_shape), leaves["weight"], leaves["bias"], eps, offset)
    return _grads(y, dy, leaves)


def layer_norm_stats(x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    ns = _ns(normalized_shape)
    with torch.no_grad():
        y, mean, rstd = torch.native_layer_norm(_t(x), ns, _t(weight), _t(bias), eps)
        if offset != 0.0 and weight is not None:
            y = _ln_offset(_t(x), ns, _t(weight), _t(bias), eps, offset)
    lead = np.shape(x)[: np.ndim(x) - len(ns)]
    return _np(y), {"mean": _np(mean).reshape(lead), "rstd": _np(rstd).reshape(lead)}


# ----------------------------------------------------------------------------- RMSNorm
def _rms(x, ns, weight, eps, offset):
    if offset == 0.0 or weight is None:
        return F.rms_norm(x, ns, weight, eps)
    return _rms_offset(x, ns, weight, eps, offset)


def rms_norm(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    with torch.no_grad():
        return _np(_rms(_t(x), _ns(normalized_shape), _t(weight), eps, offset))


def rms_norm_backward(dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    leaves = {"x": _t(x, True), "weight": _t(weight, True)}
    y = _rms(leaves["x"], _ns(normalized_shape), leaves["weight"], eps, offset)
    return _grads(y, dy, leaves)


if hasattr(torch, "_fused_rms_norm"):
    def rms_norm_stats(x, normalized_shape, weight=None, eps=None, *, offset=0.0):
        """``torch._fused_rms_norm`` (private ATen op) returns ``(y, rstd)``."""
        ns = _ns(normalized_shape)
        with torch.no_grad():
            y, rstd = torch._fused_rms_norm(_t(x), ns, _t(weight), eps)
            if offset != 0.0 and weight is not None:
                y = _rms_offset(_t(x), ns, _t(weight), eps, offset)
        lead = np.shape(x)[: np.ndim(x) - len(ns)]
        return _np(y), {"rstd": _np(rstd).reshape(lead)}


# ----------------------------------------------------------------------------- fused residual add
# Written the way a PyTorch model does it (Hugging Face decoder layers): h = x + residual in the
# inputs' dtype (or both cast to residual_dtype first: flash-attn's residual_in_fp32), then the norm
# of that h; the backward is autograd with both cotangents.

_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
                 "bfloat16": torch.bfloat16}


def _residual(x, residual, residual_dtype):
    if residual_dtype is None:
        return x + residual.to(x.dtype)
    rd = _TORCH_DTYPES[residual_dtype] if isinstance(residual_dtype, str) else _TORCH_DTYPES[np.dtype(
        residual_dtype).name]
    return x.to(rd) + residual.to(rd)


def _fused(norm, dy, dh, x, residual, ns, residual_dtype, *rest):
    leaves = {"x": _t(x, True), "residual": _t(residual, True)}
    params = {k: _t(v, True) for k, v in rest[0].items()}
    h = _residual(leaves["x"], leaves["residual"], residual_dtype)
    y = norm(h, ns, *params.values())
    outs, cots = [], []
    for o, d in ((y, dy), (h, dh)):
        if d is not None:
            outs.append(o)
            cots.append(_t(d).to(o.dtype))
    torch.autograd.backward(outs, cots)
    grads = {}
    for name, leaf in {**leaves, **params}.items():
        if leaf is not None:
            grads[name] = _np(leaf.grad) if leaf.grad is not None else np.zeros(leaf.shape, _np(leaf).dtype)
    return grads


def add_rms_norm(x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0, residual_dtype=None):
    with torch.no_grad():
        h = _residual(_t(x), _t(residual), residual_dtype)
        return _np(_rms(h, _ns(normalized_shape), _t(weight), eps, offset)), _np(h)


def add_rms_norm_backward(dy, dh, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                          residual_dtype=None):
    return _fused(lambda h, ns, w: _rms(h, ns, w, eps, offset), dy, dh, x, residual, _ns(normalized_shape),
                  residual_dtype, {"weight": weight})


def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                   residual_dtype=None):
    with torch.no_grad():
        h = _residual(_t(x), _t(residual), residual_dtype)
        return _np(_ln(h, _ns(normalized_shape), _t(weight), _t(bias), eps, offset)), _np(h)


def add_layer_norm_backward(dy, dh, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                            residual_dtype=None):
    return _fused(lambda h, ns, w, b: _ln(h, ns, w, b, eps, offset), dy, dh, x, residual, _ns(normalized_shape),
                  residual_dtype, {"weight": weight, "bias": bias})


# ----------------------------------------------------------------------------- GroupNorm
def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    with torch.no_grad():
        return _np(F.group_norm(_t(x), num_groups, _t(weight), _t(bias), eps))


def group_norm_backward(dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    leaves = {"x": _t(x, True), "weight": _t(weight, True), "bias": _t(bias, True)}
    y = F.group_norm(leaves["x"], num_groups, leaves["weight"], leaves["bias"], eps)
    return _grads(y, dy, leaves)


def group_norm_stats(x, num_groups, weight=None, bias=None, eps=1e-5):
    # the ATen op wants a contiguous input (F.group_norm makes it so before calling it, as done here)
    xt = _t(x).contiguous()
    N, C = xt.shape[:2]
    HW = int(np.prod(xt.shape[2:]))
    with torch.no_grad():
        y, mean, rstd = torch.native_group_norm(xt, _t(weight), _t(bias), N, C, HW, num_groups, eps)
    return _np(y), {"mean": _np(mean).reshape(N, num_groups), "rstd": _np(rstd).reshape(N, num_groups)}


# ----------------------------------------------------------------------------- Lp normalization
def normalize(x, p=2.0, dim=1, eps=1e-12):
    with torch.no_grad():
        return _np(F.normalize(_t(x), p, dim, eps))


def normalize_backward(dy, x, p=2.0, dim=1, eps=1e-12):
    leaves = {"x": _t(x, True)}
    return _grads(F.normalize(leaves["x"], p, dim, eps), dy, leaves)


def normalize_stats(x, p=2.0, dim=1, eps=1e-12):
    """PyTorch saves no statistic for F.normalize; ``norm`` is its own denominator,
    ``x.norm(p, dim).clamp_min(eps)``, as torch/nn/functional.py forms it."""
    xt = _t(x)
    with torch.no_grad():
        return _np(F.normalize(xt, p, dim, eps)), {"norm": _np(xt.norm(p, dim).clamp_min(eps))}


# ----------------------------------------------------------------------------- BatchNorm
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    with torch.no_grad():
        return _np(F.batch_norm(_t(x), _t(running_mean), _t(running_var), _t(weight), _t(bias), training,
                                0.1 if momentum is None else momentum, eps))


def batch_norm_backward(dy, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                        eps=1e-5):
    leaves = {"x": _t(x, True), "weight": _t(weight, True), "bias": _t(bias, True)}
    y = F.batch_norm(leaves["x"], _t(running_mean), _t(running_var), leaves["weight"], leaves["bias"], training,
                     0.1 if momentum is None else momentum, eps)
    return _grads(y, dy, leaves)


def batch_norm_stats(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    if not training:
        raise NotImplementedError("torch.native_batch_norm saves no statistics in eval mode")
    with torch.no_grad():
        y, mean, rstd = torch.native_batch_norm(_t(x), _t(weight), _t(bias), _t(running_mean), _t(running_var),
                                                True, 0.1 if momentum is None else momentum, eps)
    return _np(y), {"mean": _np(mean), "rstd": _np(rstd)}


def _torch_factor(momentum, num_batches_tracked, convention):
    if convention != "torch":
        raise NotImplementedError(f"PyTorch implements only the 'torch' running-statistics convention, "
                                  f"not {convention!r}")
    if momentum is None:  # nn.BatchNorm: exponential_average_factor = 1 / num_batches_tracked (after += 1)
        if num_batches_tracked is None:
            raise ValueError("num_batches_tracked is required when momentum=None")
        return 1.0 / float(int(num_batches_tracked) + 1)
    return momentum


def batch_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, num_batches_tracked=None,
                             convention="torch"):
    factor = _torch_factor(momentum, num_batches_tracked, convention)
    rm, rv = _t(running_mean), _t(running_var)
    with torch.no_grad():
        F.batch_norm(_t(x), rm, rv, None, None, True, factor, 1e-5)  # eps does not affect the running statistics
    return _np(rm), _np(rv)


def instance_norm_running_stats(x, running_mean, running_var, momentum=0.1, *, convention="torch"):
    factor = _torch_factor(momentum, 0, convention)
    rm, rv = _t(running_mean), _t(running_var)
    with torch.no_grad():
        F.instance_norm(_t(x), rm, rv, None, None, True, factor, 1e-5)  # eps does not affect the running statistics
    return _np(rm), _np(rv)


# ----------------------------------------------------------------------------- InstanceNorm
def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    with torch.no_grad():
        return _np(F.instance_norm(_t(x), _t(running_mean), _t(running_var), _t(weight), _t(bias), use_input_stats,
                                   0.1 if momentum is None else momentum, eps))


def instance_norm_backward(dy, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                           momentum=0.1, eps=1e-5):
    leaves = {"x": _t(x, True), "weight": _t(weight, True), "bias": _t(bias, True)}
    y = F.instance_norm(leaves["x"], _t(running_mean), _t(running_var), leaves["weight"], leaves["bias"],
                        use_input_stats, 0.1 if momentum is None else momentum, eps)
    return _grads(y, dy, leaves)


# ============================================================================= forward mode and double backward
# Each op is written once as a *model*: ``(fn, arguments, outputs)`` where ``fn`` takes the differentiable
# arguments by name (x, weight, bias; fused: x, residual, weight, bias) and returns the tuple of the
# forward's outputs through exactly the functional path of the forward above (F.layer_norm, the offset
# path, the residual add ...), in the case dtype; ``arguments`` maps each differentiable argument to the
# value the call was given (None when it was not).
#
# ``<op>_jvp``: torch.func.jvp of fn at the given arguments along the tangents (a missing key is a zero
# tangent), tangents rounded to the dtype of their argument.  ``<op>_double_backward``: the first
# gradients by torch.autograd.grad(..., create_graph=True) with the given cotangent(s) dy (dh) as
# leaves, then torch.autograd.grad of L = sum_k <cotangents[k], first gradient k> with respect to
# dy (dh) and every given argument (zeros where L does not depend on one).  Whatever PyTorch raises
# on the way propagates: a crash of its double-backward formulas is a finding, not "not implemented".


def _directions(kind, value, arguments):
    """The ``tangents`` / ``cotangents`` dict checked as refnorm checks it
    (:func:`refnorm._validate.check_directions`), each array in its own dtype."""
    return check_directions(kind, value, arguments, upcast=False)


def _like(a, ref):
    """The array ``a`` as a CPU tensor of ``ref``'s dtype (one rounding), or zeros like ``ref`` when None."""
    if a is None:
        return torch.zeros_like(ref)
    return _t(a).to(ref.dtype)


def _given(arguments):
    return [n for n, a in arguments.items() if a is not None]


def _call_model(fn, arguments, names, values):
    kw = dict.fromkeys(arguments)
    kw.update(zip(names, values))
    return fn(**kw)


def _jvp_model(model, tangents):
    """``(outputs, output tangents)`` as NumPy arrays: torch.func.jvp of the model along ``tangents``."""
    fn, arguments, outputs = model
    dirs = _directions("tangents", tangents, arguments)
    names = _given(arguments)
    primals = tuple(_t(arguments[n]) for n in names)
    tans = tuple(_like(dirs[n], p) for n, p in zip(names, primals))
    out, tout = torch.func.jvp(lambda *ps: _call_model(fn, arguments, names, ps), primals, tans)
    if len(outputs) == 1:
        return _np(out[0]), _np(tout[0])
    return tuple(_np(o) for o in out), tuple(_np(t) for t in tout)


def _double_backward_model(model, cotangents, douts):
    """Autograd double backward of the model: ``{d<output>: ..., argument: ...}`` as NumPy arrays."""
    fn, arguments, outputs = model
    cots = _directions("cotangents", cotangents, arguments)
    names = _given(arguments)
    leaves = [_t(arguments[n], True) for n in names]
    outs = _call_model(fn, arguments, names, leaves)
    # the cotangents dy (dh) are leaves in their own dtype (zeros in the output's when not given), cast to
    # the output's dtype inside the graph: their gradients come back in the dtype they were given in
    dleaves = [(_t(d) if d is not None else torch.zeros_like(o.detach())).requires_grad_(True)
               for d, o in zip(douts, outs)]
    first = torch.autograd.grad(outs, leaves, [d.to(o.dtype) for d, o in zip(dleaves, outs)], create_graph=True,
                                allow_unused=True)
    terms = [(g * _like(cots[n], g.detach())).sum() for n, g in zip(names, first)
             if g is not None and cots[n] is not None]
    wrt = dleaves + leaves
    second = [None] * len(wrt)
    if terms:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        if total.requires_grad:
            second = torch.autograd.grad(total, wrt, allow_unused=True)
    keys = ["d" + o for o in outputs] + names
    return {k: _np(s) if s is not None else _np(torch.zeros_like(w.detach())) for k, w, s in zip(keys, wrt, second)}


def _model_layer_norm(x, normalized_shape, weight, bias, eps, offset):
    ns = _ns(normalized_shape)
    return (lambda x, weight, bias: (_ln(x, ns, weight, bias, eps, offset),),
            {"x": x, "weight": weight, "bias": bias}, ("y",))


def _model_rms_norm(x, normalized_shape, weight, eps, offset):
    ns = _ns(normalized_shape)
    return lambda x, weight: (_rms(x, ns, weight, eps, offset),), {"x": x, "weight": weight}, ("y",)


def _model_group_norm(x, num_groups, weight, bias, eps):
    return (lambda x, weight, bias: (F.group_norm(x, num_groups, weight, bias, eps),),
            {"x": x, "weight": weight, "bias": bias}, ("y",))


def _model_normalize(x, p, dim, eps):
    return lambda x: (F.normalize(x, p, dim, eps),), {"x": x}, ("y",)


def _model_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    m = 0.1 if momentum is None else momentum
    # fresh copies of the buffers at every call: training mode updates them in place
    return (lambda x, weight, bias: (F.batch_norm(x, _t(running_mean), _t(running_var), weight, bias, training, m,
                                                  eps),),
            {"x": x, "weight": weight, "bias": bias}, ("y",))


def _model_instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps):
    m = 0.1 if momentum is None else momentum
    return (lambda x, weight, bias: (F.instance_norm(x, _t(running_mean), _t(running_var), weight, bias,
                                                     use_input_stats, m, eps),),
            {"x": x, "weight": weight, "bias": bias}, ("y",))


def _model_add_rms_norm(x, residual, normalized_shape, weight, eps, offset, residual_dtype):
    ns = _ns(normalized_shape)

    def fn(x, residual, weight):
        h = _residual(x, residual, residual_dtype)
        return _rms(h, ns, weight, eps, offset), h

    return fn, {"x": x, "residual": residual, "weight": weight}, ("y", "h")


def _model_add_layer_norm(x, residual, normalized_shape, weight, bias, eps, offset, residual_dtype):
    ns = _ns(normalized_shape)

    def fn(x, residual, weight, bias):
        h = _residual(x, residual, residual_dtype)
        return _ln(h, ns, weight, bias, eps, offset), h

    return fn, {"x": x, "residual": residual, "weight": weight, "bias": bias}, ("y", "h")


def layer_norm_jvp(tangents, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0):
    return _jvp_model(_model_layer_norm(x, normalized_shape, weight, bias, eps, offset), tangents)


def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                               offset=0.0):
    return _double_backward_model(_model_layer_norm(x, normalized_shape, weight, bias, eps, offset), cotangents,
                                  [dy])


def rms_norm_jvp(tangents, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _jvp_model(_model_rms_norm(x, normalized_shape, weight, eps, offset), tangents)


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _double_backward_model(_model_rms_norm(x, normalized_shape, weight, eps, offset), cotangents, [dy])


def group_norm_jvp(tangents, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _jvp_model(_model_group_norm(x, num_groups, weight, bias, eps), tangents)


def group_norm_double_backward(cotangents, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _double_backward_model(_model_group_norm(x, num_groups, weight, bias, eps), cotangents, [dy])


def batch_norm_jvp(tangents, x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                   eps=1e-5):
    return _jvp_model(_model_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps),
                      tangents)


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    return _double_backward_model(_model_batch_norm(x, running_mean, running_var, weight, bias, training, momentum,
                                                    eps), cotangents, [dy])


def instance_norm_jvp(tangents, x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                      momentum=0.1, eps=1e-5):
    return _jvp_model(_model_instance_norm(x, running_mean, running_var, weight, bias, use_input_stats, momentum,
                                           eps), tangents)


def instance_norm_double_backward(cotangents, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                                  use_input_stats=True, momentum=0.1, eps=1e-5):
    return _double_backward_model(_model_instance_norm(x, running_mean, running_var, weight, bias, use_input_stats,
                                                       momentum, eps), cotangents, [dy])


def add_rms_norm_jvp(tangents, x, residual, normalized_shape, weight=None, eps=None, *, offset=0.0,
                     residual_dtype=None):
    return _jvp_model(_model_add_rms_norm(x, residual, normalized_shape, weight, eps, offset, residual_dtype),
                      tangents)


def add_rms_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, eps=None, *,
                                 offset=0.0, residual_dtype=None):
    return _double_backward_model(_model_add_rms_norm(x, residual, normalized_shape, weight, eps, offset,
                                                      residual_dtype), cotangents, [dy, dh])


def add_layer_norm_jvp(tangents, x, residual, normalized_shape, weight=None, bias=None, eps=1e-5, *, offset=0.0,
                       residual_dtype=None):
    return _jvp_model(_model_add_layer_norm(x, residual, normalized_shape, weight, bias, eps, offset,
                                            residual_dtype), tangents)


def add_layer_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, bias=None,
                                   eps=1e-5, *, offset=0.0, residual_dtype=None):
    return _double_backward_model(_model_add_layer_norm(x, residual, normalized_shape, weight, bias, eps, offset,
                                                        residual_dtype), cotangents, [dy, dh])


def normalize_jvp(tangents, x, p=2.0, dim=1, eps=1e-12):
    return _jvp_model(_model_normalize(x, p, dim, eps), tangents)


def normalize_double_backward(cotangents, dy, x, p=2.0, dim=1, eps=1e-12):
    return _double_backward_model(_model_normalize(x, p, dim, eps), cotangents, [dy])


# ----------------------------------------------------------------------------- Local Response Normalization
# F.local_response_norm in the case dtype; torch 2.13's CPU avg_pool3d has no float16/bfloat16 kernel, so
# a 4-D or 5-D half input is reported as not implemented (a 3-D one pools with avg_pool2d and passes).
# It saves no statistic: local_response_norm_stats returns its denominator as torch/nn/functional.py
# forms it; jvp by torch.func.jvp, double backward by autograd, as the other ops above.
def _lrn_div(x, size, alpha, beta, k):
    """``div`` of F.local_response_norm, by its own steps (the 3-D branch pools with avg_pool2d)."""
    div = x.mul(x)
    if x.dim() == 3:
        div = F.avg_pool2d(F.pad(div.unsqueeze(1), (0, 0, size // 2, (size - 1) // 2)), (size, 1),
                           stride=1).squeeze(1)
    else:
        s = x.size()
        div = F.pad(div.view(s[0], 1, s[1], s[2], -1), (0, 0, 0, 0, size // 2, (size - 1) // 2))
        div = F.avg_pool3d(div, (size, 1, 1), stride=1).squeeze(1).view(s)
    return div.mul(alpha).add(k).pow(beta)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    with torch.no_grad():
        return _np(F.local_response_norm(_t(x), size, alpha, beta, k))


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    leaves = {"x": _t(x, True)}
    return _grads(F.local_response_norm(leaves["x"], size, alpha, beta, k), dy, leaves)


def local_response_norm_stats(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch saves no statistic for F.local_response_norm; ``div`` is its own denominator."""
    xt = _t(x).contiguous()
    with torch.no_grad():
        return _np(F.local_response_norm(xt, size, alpha, beta, k)), {"div": _np(_lrn_div(xt, size, alpha, beta, k))}


def _model_local_response_norm(x, size, alpha, beta, k):
    return lambda x: (F.local_response_norm(x, size, alpha, beta, k),), {"x": x}, ("y",)


def local_response_norm_jvp(tangents, x, size, alpha=1e-4, beta=0.75, k=1.0):
    return _jvp_model(_model_local_response_norm(x, size, alpha, beta, k), tangents)


def local_response_norm_double_backward(cotangents, dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    return _double_backward_model(_model_local_response_norm(x, size, alpha, beta, k), cotangents, [dy])


# ----------------------------------------------------------------------------- Weight Normalization
# torch._weight_norm(v, g, dim), the function behind torch.nn.utils.parametrizations.weight_norm
# (dim=None is passed as -1: the whole tensor); backward by autograd (the fused CPU kernel for dim 0
# and the last dim, differentiable primitives otherwise); norm_except_dim gives the saved norm.
def _wn_dim(dim):
    return -1 if dim is None else int(dim)


def weight_norm(v, g, dim=0):
    with torch.no_grad():
        return _np(torch._weight_norm(_t(v), _t(g), _wn_dim(dim)))


def weight_norm_backward(dy, v, g, dim=0):
    leaves = {"v": _t(v, True), "g": _t(g, True)}
    return _grads(torch._weight_norm(leaves["v"], leaves["g"], _wn_dim(dim)), dy, leaves)


def weight_norm_stats(v, g, dim=0):
    """The norm as ``torch.norm_except_dim(v, 2, dim)`` returns it (``_weight_norm_interface`` saves
    the same, in float32 for half inputs, for dim 0 and the last dim only)."""
    vt = _t(v)
    with torch.no_grad():
        return (_np(torch._weight_norm(vt, _t(g), _wn_dim(dim))),
                {"norm": _np(torch.norm_except_dim(vt, 2, _wn_dim(dim)))})


def _model_weight_norm(v, g, dim):
    return lambda v, g: (torch._weight_norm(v, g, _wn_dim(dim)),), {"v": v, "g": g}, ("y",)


def weight_norm_jvp(tangents, v, g, dim=0):
    return _jvp_model(_model_weight_norm(v, g, dim), tangents)


def weight_norm_double_backward(cotangents, dy, v, g, dim=0):
    return _double_backward_model(_model_weight_norm(v, g, dim), cotangents, [dy])
