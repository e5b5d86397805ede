"""THE FAST PATH: argument checks, canonical views and Numba kernels.

One module per op (``refnorm.ops.<op>``) holding the public forward, its
hand-derived ``<op>_backward`` and a ``<op>_stats`` variant returning the
saved statistics.  The shared kernels are called through
:mod:`refnorm.ops._kernels` and read at two levels: :mod:`refnorm.ops._sets`
(the math, one reduction set at a time) and :mod:`refnorm.ops._lanes` /
:mod:`refnorm.ops._runs` (the same bits, eight sets or positions per SIMD
vector, on the intrinsics of :mod:`refnorm.ops._simd`); double-double
arithmetic in :mod:`refnorm.ops._dd`, the Numba options in
:mod:`refnorm.ops._jit`.  Nothing is compiled at import.
"""
