"""The one place Numba options live.

Every kernel in refnorm is compiled through :func:`jit` (serial) or :func:`pjit`
(parallel over independent reduction sets).  The options are fixed here so that
no kernel can drift from them:

* ``cache=True``: compiled machine code is cached next to the module, so a second
  process does not recompile.
* ``fastmath=False``: no reassociation, no contraction of ``a*b + c`` into an FMA
  behind our back, no assumptions about NaN/Inf.  Every rounding in a kernel is
  the one written in the source.
* ``error_model="numpy"``: ``1.0 / 0.0`` is ``inf`` and ``0.0 / 0.0`` is NaN, as in
  IEEE 754 and NumPy, instead of raising ``ZeroDivisionError`` inside a kernel.
* ``nogil=True``: kernels release the GIL.

Determinism: a parallel kernel distributes *whole reduction sets* over threads
(``prange`` over rows, channels or blocks of affine parameters); every sum is
accumulated by one thread in a fixed order.  The result is therefore bit for bit
the same for any ``NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = dict(cache=True, fastmath=False, error_model="numpy", nogil=True)

jit = numba.njit(**JIT_OPTIONS)
pjit = numba.njit(parallel=True, **JIT_OPTIONS)
prange = numba.prange

__all__ = ["JIT_OPTIONS", "jit", "pjit", "prange"]
