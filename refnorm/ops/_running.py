"""Running-statistics updates shared by BatchNorm and InstanceNorm.

Conventions (a sentence each, because frameworks differ):

``"torch"``  ``new = (1 - m) * old + m * batch`` with the *unbiased* batch
             variance (divisor n - 1); ``momentum=None`` is a cumulative
             average, ``m = 1 / (num_batches_tracked + 1)``.
             Evaluated as PyTorch's CPU kernel does: ``m * batch + (1 - m) * old``.
``"onnx"``   ONNX BatchNormalization-14 (training mode): ``new = m * old +
             (1 - m) * batch`` with the *biased* batch variance; ONNX's
             default momentum is 0.9.
``"flax"``   Flax ``nn.BatchNorm``: the same formula as ONNX (momentum weights
             the old value, biased variance); Flax's default momentum is 0.99.

With ``"onnx"``/``"flax"`` the ``momentum`` argument has *that* framework's
meaning (weight of the old value): pass 0.9 or 0.99 explicitly.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V

CONVENTIONS = ("torch", "onnx", "flax")


def check_convention(convention) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def momentum_factor(momentum, num_batches_tracked, convention: str) -> float:
    """The weight of the *new* statistic."""
    if convention == "torch":
        if momentum is None:
            if num_batches_tracked is None:
                raise ValueError("num_batches_tracked is required when momentum=None "
                                 "(cumulative average: factor 1 / (num_batches_tracked + 1))")
            nbt = V.check_int("num_batches_tracked", num_batches_tracked, minimum=0)
            return 1.0 / float(nbt + 1)
        return V.check_real("momentum", momentum)
    if momentum is None:
        raise ValueError(f"momentum=None (cumulative average) exists only in convention='torch', "
                         f"got convention={convention!r}")
    return 1.0 - V.check_real("momentum", momentum)


def update(old: np.ndarray, batch: np.ndarray, factor: float) -> np.ndarray:
    """``factor * batch + (1 - factor) * old`` (PyTorch's evaluation order)."""
    return factor * batch + (1.0 - factor) * old
