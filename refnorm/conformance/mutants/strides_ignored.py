"""Mutant: every array argument is read as if it were C-contiguous.

Bug class: layouts, strides, views (E20): a kernel that takes a tensor's
data pointer and reads ``size`` consecutive elements from it, ignoring the
strides.  Right for every C-contiguous array (whatever its storage offset);
for a transposed, Fortran-ordered, channels-last, stepped (``a[::2]``) or
reversed view it reads other values of the buffer -- or what lies past the
view's last element.  Seen in: pytorch/pytorch#174345 (MPS BatchNorm2d on a
channels-last tensor with a storage offset); NVIDIA/TransformerEngine PR
#1017 (LayerNorm wrong on non-contiguous input); unslothai/unsloth PR #10617
(the RMSNorm backward read a strided ``dY`` with the wrong column offsets).
The harness passes the committed corpus as C-contiguous copies, so this
mutant passes the whole corpus; ``refnorm fuzz`` passes strided views.
Affects: every function, for every array argument (``x``, ``dy``, ``dh``,
``weight``, ``bias``, running statistics, ``residual``) that is not
C-contiguous.

The read is simulated safely, without raw pointers: :func:`read_as_contiguous`
finds the array that owns the view's memory (the end of its ``.base``
chain), takes the owner's bytes in memory order, and reads ``size``
elements from the view's data pointer (``__array_interface__["data"][0]``)
on.  It never reads outside the owner: elements past its end come back as
NaN, the garbage a real kernel would read there.
"""

import functools

import numpy as np

from ..backends.numpy32 import PROTOCOL, NumpyBackend, export
from . import _demo


def _owner(a: np.ndarray) -> np.ndarray:
    """The array at the end of ``a``'s ``.base`` chain: the one whose memory ``a`` views."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def read_as_contiguous(a):
    """``a`` as a kernel that ignores strides reads it: ``a.size`` elements from its data pointer on.

    Anything but a non-C-contiguous ndarray is returned unchanged (so a
    contiguous array, at any offset, is read correctly).  An array whose
    owner is not itself contiguous has no memory extent known here; it is
    read correctly rather than guessed at.
    """
    if not isinstance(a, np.ndarray) or a.flags.c_contiguous:
        return a
    owner = _owner(a)
    if not (owner.flags.c_contiguous or owner.flags.f_contiguous):
        return np.ascontiguousarray(a)
    memory = owner.reshape(-1, order="A").view(np.uint8)  # the owner's bytes, in memory order
    start = _address(a) - _address(owner)
    item = a.dtype.itemsize
    count = min(a.size, max(0, (memory.size - start) // item))  # whole elements before the owner's end
    values = memory[start:start + count * item].view(a.dtype)
    garbage = np.full(a.size - count, np.nan).astype(a.dtype)  # what lies past the owner's end
    return np.concatenate([values, garbage]).reshape(a.shape)


class Backend(NumpyBackend):
    """numpy32 behind a front door that reads every array argument with :func:`read_as_contiguous`."""


def _reads_contiguously(method):
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        args = [read_as_contiguous(a) for a in args]  # the bug
        kwargs = {k: read_as_contiguous(v) for k, v in kwargs.items()}
        return method(self, *args, **kwargs)
    return call


for _name in PROTOCOL:
    setattr(Backend, _name, _reads_contiguously(getattr(NumpyBackend, _name)))

BACKEND_INFO = {"name": "strides_ignored", "description": "non-contiguous arrays read as if C-contiguous (E20)"}
AFFECTS = ("*",)
# x of shape (24, 16) stored transposed: a Fortran-ordered view of a (16, 24) buffer
DEMO_INPUT = _demo.demo("layer_norm", _demo.noncentred((16, 24)).T, (16,))
export(Backend(), globals())
