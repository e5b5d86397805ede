"""THE FAST PATH: argument checks, canonical views and Numba kernels.

One module per op (``refnorm.ops.<op>``) holding the public forward, its
hand-derived ``<op>_backward`` and a ``<op>_stats`` variant returning the
saved statistics.  Shared kernels live in :mod:`refnorm.ops._kernels`; the
Numba options in :mod:`refnorm.ops._jit`.  Nothing is compiled at import.
"""
