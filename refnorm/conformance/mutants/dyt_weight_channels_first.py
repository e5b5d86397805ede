"""Mutant: DyT applies weight and bias over dimension 1 of a channels-last ``(..., C)`` tensor.

Bug class: a layout convention trap of the authors' own module.  ``DynamicTanh`` (Zhu et al. 2025,
``jiachenzhu/DyT`` ``dynamic_tanh.py``) has two branches::

    x = torch.tanh(self.alpha * x)
    if self.channels_last:
        x = x * self.weight + self.bias                                  # (..., C): the last dim
    else:
        x = x * self.weight[:, None, None] + self.bias[:, None, None]     # (N, C, H, W): dim 1

``refnorm.dyt`` is the ``channels_last=True`` branch.  Built with ``channels_last=False`` (the
ConvNet flag) and fed a channels-last tensor, the module puts ``weight[c]`` on index ``c`` of
dimension 1 instead of the last.  It raises a broadcasting error -- which the user notices --
unless dimension 1 has exactly C entries: a ``(B, T, C)`` sequence with ``T = C``, or an
``(N, H, W, C)`` map with ``H = C``.  There the output is silently wrong (for a 2-d ``(N, C)``
input dimension 1 *is* the last, and the bug is invisible).  So this mutant takes the affine over
dimension 1 exactly where the authors' code would run without error (ndim >= 3 and
``x.shape[1] == C``) and over the last dimension elsewhere; the corpus catches it on
``dyt/btc_t_equals_c`` and ``dyt/nhwc_h_equals_c``.  ``dweight``/``dbias`` are summed over the
other dimensions accordingly, and ``dx`` uses the misplaced weight.

The arithmetic is a plain NumPy DyT (float64 for float64, float32 otherwise; ``1 - t^2`` as
PyTorch's tanh backward; outputs rounded to their argument's dtype); :data:`CONTROL` is the same
code with the affine on the last dimension (the unmutated base: numpy32 has no DyT).
Affects: dyt, dyt_backward (the other protocol functions are numpy32's).
"""

from __future__ import annotations

import numpy as np

from ..backends.numpy32 import NumpyBackend, export
from . import _demo


def _acc(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def _affine_axis(shape, C, channels_first):
    """The axis weight/bias lie on: the last, or (the bug) 1 where the authors' code would run."""
    if channels_first and len(shape) >= 3 and shape[1] == C:
        return 1
    return len(shape) - 1


class DynamicTanh:
    """``dyt`` and ``dyt_backward`` in NumPy; ``channels_first`` puts the affine on dimension 1."""

    def __init__(self, channels_first: bool):
        self.channels_first = channels_first

    def _prep(self, x, alpha, weight, bias):
        x = np.asarray(x)
        f = _acc(x.dtype)
        C = x.shape[-1]
        ax = _affine_axis(x.shape, C, self.channels_first)
        sh = tuple(C if i == ax else 1 for i in range(x.ndim))
        a = np.asarray(alpha)
        w = None if weight is None else np.asarray(weight).astype(f).reshape(sh)
        b = None if bias is None else np.asarray(bias).astype(f).reshape(sh)
        return x, f, ax, a, f(a.astype(f).reshape(())), w, b

    def dyt(self, x, alpha, weight=None, bias=None):
        x, f, _, _, a, w, b = self._prep(x, alpha, weight, bias)
        y = np.tanh(a * x.astype(f))
        if w is not None:
            y = y * w
        if b is not None:
            y = y + b
        return y.astype(x.dtype)

    def dyt_backward(self, dy, x, alpha, weight=None, bias=None):
        x, f, ax, a_in, a, w, b = self._prep(x, alpha, weight, bias)
        xf = x.astype(f)
        dyf = np.asarray(dy).astype(f)
        t = np.tanh(a * xf)
        g = dyf if w is None else dyf * w
        q = g * (f(1) - t * t)
        with np.errstate(invalid="ignore"):  # 0 * inf at an infinite x: NaN, as PyTorch
            da = np.sum(q * xf, dtype=f)
        out = {"x": (q * a).astype(x.dtype), "alpha": np.full(a_in.shape, da).astype(a_in.dtype)}
        others = tuple(i for i in range(x.ndim) if i != ax)
        if weight is not None:
            out["weight"] = np.sum(dyf * t, axis=others, dtype=f).astype(np.asarray(weight).dtype)
        if bias is not None:
            out["bias"] = np.sum(dyf, axis=others, dtype=f).astype(np.asarray(bias).dtype)
        return out


_BUGGY = DynamicTanh(channels_first=True)
_RIGHT = DynamicTanh(channels_first=False)
#: the unmutated base for DyT (numpy32 has none): the same arithmetic, the affine on the last dim
CONTROL = {"dyt": _RIGHT.dyt, "dyt_backward": _RIGHT.dyt_backward}

BACKEND_INFO = {"name": "dyt_weight_channels_first",
                "description": "DyT weight/bias over dim 1 of a channels-last tensor (DynamicTanh channels_last=False)"}
AFFECTS = ("dyt", "dyt_backward")
DEMO_INPUT = _demo.demo("dyt", _demo.noncentred((2, 4, 3, 4), loc=0.3, scale=1.5), np.array([0.5], np.float32),
                        *_demo.affine((4,)))
export(NumpyBackend(), globals())
dyt = _BUGGY.dyt
dyt_backward = _BUGGY.dyt_backward
