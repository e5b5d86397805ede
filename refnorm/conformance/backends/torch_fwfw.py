"""torch-fwfw: PyTorch's *nested forward mode* (forward over forward) as a double backward.

This backend has only ``<op>_double_backward`` (the five standard ops and the
two fused residual adds): no forward, backward, statistics or JVP of its own,
so every other check of the harness reports "not implemented".  It exists to
check PyTorch's forward-mode derivative formulas differentiated once more in
forward mode -- a path reverse-over-reverse (the ``torch`` backend) never
takes.

For ``L = sum_k <cotangents[k], backward(dy, ...)[k]> = <dy, J c>``, with
``J`` the Jacobian of the forward and ``c = (cotangents["x"],
cotangents["weight"], cotangents["bias"])`` (fused: also ``"residual"``; a
missing key is zero):

* ``dL/d(dy)`` (fused: also ``dL/d(dh)``) is ``J c``, one forward-mode JVP of
  the forward along ``c`` (the backward is linear in ``dy``, so this is
  exact);
* for each given argument ``p``, element ``k``: ``dL/dp_k = d/ds <dy, J(p + s
  e_k) c>`` at ``s = 0``: ``torch.func.jvp``, along the basis direction
  ``e_k``, of a function that itself returns ``<dy, torch.func.jvp(forward, c)>``
  -- forward over forward, one basis direction per element of ``p``, batched
  with ``torch.func.vmap`` over the basis.

The forward is exactly the ``torch`` backend's functional path
(``F.layer_norm``, ``F.rms_norm``, ``F.group_norm``, ``F.batch_norm``,
``F.instance_norm``, the zero-centred-weight path for ``offset=``, the
residual add in ``residual_dtype``), in the case dtype on CPU; inputs are
copies, results NumPy arrays in the case dtype.  The work grows with the
square of the case size: a case whose differentiable arguments hold more than
:data:`MAX_DIRECTIONS` elements in all is ``NotImplementedError`` (naming the
size).  Whatever PyTorch raises otherwise propagates.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import jvp, vmap

from .torch import (_call_model, _directions, _given, _like, _model_add_layer_norm, _model_add_rms_norm,
                    _model_batch_norm, _model_group_norm, _model_instance_norm, _model_layer_norm, _model_rms_norm,
                    _np, _t)

#: The largest number of basis directions (elements of x, weight, bias, residual together) one call
#: differentiates along; each costs one nested JVP over the whole case.
MAX_DIRECTIONS = 4096

#: Elements of one vmapped chunk (chunk size times the size of x), bounding the memory of the batch.
_CHUNK_ELEMENTS = 1 << 22

BACKEND_INFO = {
    "name": "torch-fwfw",
    "description": (f"torch {torch.__version__} nested forward mode on CPU in the case dtype: <op>_double_backward "
                    "only, dL/d(dy) (fused: and dL/d(dh)) = torch.func.jvp of the forward along the cotangents, "
                    "dL/d(argument) element by element = torch.func.jvp along each basis direction of "
                    "<dy, torch.func.jvp of the forward along the cotangents> (forward over forward, vmapped over "
                    "the basis); no forward, backward or jvp of its own"),
    "error_types": (RuntimeError,),
}


def _double_backward(model, cotangents, douts):
    fn, arguments, outputs = model
    cots = _directions("cotangents", cotangents, arguments)
    names = _given(arguments)
    size = sum(int(np.size(arguments[n])) for n in names)
    if size > MAX_DIRECTIONS:
        raise NotImplementedError(
            f"forward-over-forward needs one nested JVP per element of {', '.join(names)}: {size} elements "
            f"(x {tuple(np.shape(arguments['x']))}) exceed this backend's limit of {MAX_DIRECTIONS}")
    primals = tuple(_t(arguments[n]) for n in names)
    c = tuple(_like(cots[n], p) for n, p in zip(names, primals))

    def forward(*ps):
        return _call_model(fn, arguments, names, ps)

    outs, touts = jvp(forward, primals, c)
    ds = [_like(d, o) for d, o in zip(douts, outs)]
    # dL/d(dy) in the dtype dy was given in (the output's when it was not), as the torch backend returns it
    result = {"d" + o: _np(t if d is None else t.to(_t(d).dtype)) for o, t, d in zip(outputs, touts, douts)}

    def contracted(*ps):
        """<dy, J c> (fused: + <dh, J_h c>) at the arguments ``ps``, by one forward-mode JVP."""
        tangent_outs = jvp(forward, ps, c)[1]
        total = (tangent_outs[0] * ds[0]).sum()
        for t, d in zip(tangent_outs[1:], ds[1:]):
            total = total + (t * d).sum()
        return total

    chunk = max(1, _CHUNK_ELEMENTS // max(1, int(outs[0].numel())))
    for i, name in enumerate(names):
        p = primals[i]
        if p.numel() == 0:
            result[name] = _np(torch.zeros_like(p))
            continue

        def along(e, i=i, p=p):
            tangents = tuple(e.reshape(p.shape) if j == i else torch.zeros_like(q) for j, q in enumerate(primals))
            return jvp(contracted, primals, tangents)[1]

        basis = torch.eye(p.numel(), dtype=p.dtype)
        # the contraction is in the outputs' dtype (fused with residual_dtype: wider than x); the gradient of
        # an argument comes back in that argument's dtype, as autograd returns it
        result[name] = _np(vmap(along, chunk_size=min(chunk, p.numel()))(basis).reshape(p.shape).to(p.dtype))
    return result


def layer_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                               offset=0.0):
    return _double_backward(_model_layer_norm(x, normalized_shape, weight, bias, eps, offset), cotangents, [dy])


def rms_norm_double_backward(cotangents, dy, x, normalized_shape, weight=None, eps=None, *, offset=0.0):
    return _double_backward(_model_rms_norm(x, normalized_shape, weight, eps, offset), cotangents, [dy])


def group_norm_double_backward(cotangents, dy, x, num_groups, weight=None, bias=None, eps=1e-5):
    return _double_backward(_model_group_norm(x, num_groups, weight, bias, eps), cotangents, [dy])


def batch_norm_double_backward(cotangents, dy, x, running_mean, running_var, weight=None, bias=None, training=False,
                               momentum=0.1, eps=1e-5):
    return _double_backward(_model_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps),
                            cotangents, [dy])


def instance_norm_double_backward(cotangents, dy, x, running_mean=None, running_var=None, weight=None, bias=None,
                                  use_input_stats=True, momentum=0.1, eps=1e-5):
    return _double_backward(_model_instance_norm(x, running_mean, running_var, weight, bias, use_input_stats,
                                                 momentum, eps), cotangents, [dy])


def add_rms_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, eps=None, *,
                                 offset=0.0, residual_dtype=None):
    return _double_backward(_model_add_rms_norm(x, residual, normalized_shape, weight, eps, offset, residual_dtype),
                            cotangents, [dy, dh])


def add_layer_norm_double_backward(cotangents, dy, dh, x, residual, normalized_shape, weight=None, bias=None,
                                   eps=1e-5, *, offset=0.0, residual_dtype=None):
    return _double_backward(_model_add_layer_norm(x, residual, normalized_shape, weight, bias, eps, offset,
                                                  residual_dtype), cotangents, [dy, dh])
