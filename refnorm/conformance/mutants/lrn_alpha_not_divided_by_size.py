"""Mutant: LRN with ``alpha`` applied to the raw window sum, not to the window mean.

Bug class: a convention trap between frameworks.  ``torch.nn.functional.local_response_norm``
(and Caffe, cuDNN, ONNX ``LRN``) compute ``b = k + alpha / size * sum_{window} x^2``: PyTorch's
``avg_pool`` divides the sum of squares by ``size``.  The AlexNet paper's equation and
TensorFlow's ``tf.nn.local_response_normalization`` write ``b = k + alpha * sum_{window} x^2``
(no division), so a port that copies PyTorch's ``alpha`` into TensorFlow's formula, or writes
the paper's sum with PyTorch's arguments, uses an ``alpha`` ``size`` times too large.  With the
default ``alpha = 1e-4`` and unit-sized activations the two agree to ~1e-4 relative, so only a
case where the window term matters shows it.  Caught by the corpus cases
``local_response_norm/even_size4``, ``local_response_norm/size_gt_c_5d``,
``local_response_norm/alexnet_nchw`` and the others with a large ``alpha`` or large activations.
Affects: local_response_norm, local_response_norm_backward, local_response_norm_stats.

Only the LRN functions are offered (the other ops are not implemented by this backend), and
numpy32 has no LRN: :data:`CONTROL` is the same code with ``alpha / size``.  The computation is
float64 NumPy (the window sums in a fixed order), rounded once to the input dtype; the backward
is the hand formula ``dx = dy / div - 2 beta kappa x sum_{c: i in W(c)} dy_c y_c / b_c`` with
``kappa = alpha / size`` (control) or ``alpha`` (mutant).
"""

from __future__ import annotations

import numpy as np

from . import _demo


def _windows(t, size, transposed=False):
    """``sum_{j in W(c)} t_j`` along axis 1 (``transposed``: over the channels whose window holds c)."""
    C = t.shape[1]
    first = (size - 1) // 2 if transposed else size // 2
    out = np.zeros_like(t)
    for c in range(C):
        lo, hi = max(0, c - first), min(C - 1, c - first + size - 1)
        out[:, c] = t[:, lo:hi + 1].sum(axis=1)
    return out


class LRNBackend:
    """F.local_response_norm in float64, ``kappa`` the factor of the window sum of squares."""

    def kappa(self, alpha, size):
        return alpha / size

    def _prepare(self, x, size, alpha, k):
        xa = np.asarray(x)
        if xa.ndim < 3:
            raise ValueError(f"x must have at least 3 dimensions, got shape {xa.shape}")
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        x3 = xa.astype(np.float64).reshape(xa.shape[0], xa.shape[1], -1)
        return xa, x3, k + self.kappa(alpha, size) * _windows(x3 * x3, size)

    def local_response_norm_stats(self, x, size, alpha=1e-4, beta=0.75, k=1.0):
        xa, x3, b = self._prepare(x, size, alpha, k)
        with np.errstate(all="ignore"):
            div = b ** beta
            y = x3 / div
        return y.reshape(xa.shape).astype(xa.dtype), {"div": div.reshape(xa.shape).astype(xa.dtype)}

    def local_response_norm(self, x, size, alpha=1e-4, beta=0.75, k=1.0):
        return self.local_response_norm_stats(x, size, alpha, beta, k)[0]

    def local_response_norm_backward(self, dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
        xa, x3, b = self._prepare(x, size, alpha, k)
        g = np.asarray(dy).astype(np.float64).reshape(x3.shape)
        with np.errstate(all="ignore"):
            div = b ** beta
            q = g * (x3 / div) / b
            dx = g / div - 2.0 * beta * self.kappa(alpha, size) * x3 * _windows(q, size, transposed=True)
        return {"x": dx.reshape(xa.shape).astype(xa.dtype)}


class Backend(LRNBackend):
    def kappa(self, alpha, size):
        return alpha  # the bug: alpha on the raw sum (TensorFlow's / the paper's form), not alpha / size


_FUNCTIONS = ("local_response_norm", "local_response_norm_backward", "local_response_norm_stats")

#: the unmutated control ({function name: callable}: numpy32 has no LRN)
CONTROL = {name: getattr(LRNBackend(), name) for name in _FUNCTIONS}

BACKEND_INFO = {"name": "lrn_alpha_not_divided_by_size",
                "description": "LRN applies alpha to the window sum of squares, not to its mean (sum / size): "
                               "TensorFlow's and the AlexNet paper's convention with PyTorch's alpha"}
AFFECTS = _FUNCTIONS
DEMO_INPUT = _demo.demo("local_response_norm", _demo.noncentred((2, 6, 3), loc=0.0, scale=1.0), 4, alpha=0.5)
_mutant = Backend()
for _name in _FUNCTIONS:
    globals()[_name] = getattr(_mutant, _name)
