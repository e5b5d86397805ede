"""Memory layouts of a case's tensors: the strided views a backend is called with.

A case stores every tensor contiguous (C order).  A case may also state, per
tensor, the *layout* the backend receives it in (the manifest's optional
``layout`` field; ``refnorm fuzz`` draws them): the same values, placed in a
larger buffer so that the backend sees a transposed, Fortran-ordered,
channels-last, stepped, reversed or offset view.  A kernel that reads the
buffer as if it were contiguous reads other values (or the NaNs that fill the
rest of the buffer) and fails.

A layout is a JSON object; every key is optional:

``order``
    the logical axes from the outermost in memory to the innermost, a
    permutation of ``0 .. ndim-1``: ``[0, 1, 2]`` is C order, ``[2, 1, 0]``
    Fortran order, ``[0, 2, 3, 1]`` channels-last for an ``(N, C, H, W)``
    tensor (default: C order).
``step``
    per logical axis, the step of a slice ``a[::step]`` taken from a buffer
    ``step`` times longer along that axis (default: all 1).
``flip``
    the logical axes whose stride is negative (``a[::-1]`` of a buffer that
    holds them reversed).  PyTorch refuses negative strides; NumPy, JAX's host
    arrays and C kernels meet them.
``offset``
    how many elements of the buffer precede the first element of the view
    (a storage offset, as in ``buffer[offset:]``).

:func:`strided_view` builds the view; its values equal the stored tensor's,
bit for bit.  The buffer's other elements are NaN, so a read outside the view
shows.  A 0-d or empty tensor has no layout to speak of: only the offset
applies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LAYOUT_KEYS", "check_layout", "describe", "strided_view"]

LAYOUT_KEYS = ("order", "step", "flip", "offset")


def check_layout(layout, ndim: int, where: str = "layout") -> None:
    """Raise ValueError unless ``layout`` is a valid layout of a tensor of ``ndim`` axes."""
    if not isinstance(layout, dict):
        raise ValueError(f"{where} must be an object, got {type(layout).__name__}")
    unknown = sorted(set(layout) - set(LAYOUT_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; known: {', '.join(LAYOUT_KEYS)}")

    def ints(key):
        v = layout[key]
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            raise ValueError(f"{where}.{key} must be a list of integers, got {v!r}")
        return v

    if "order" in layout and sorted(ints("order")) != list(range(ndim)):
        raise ValueError(f"{where}.order {layout['order']} is not a permutation of the {ndim} axes")
    if "step" in layout:
        step = ints("step")
        if len(step) != ndim or any(s < 1 for s in step):
            raise ValueError(f"{where}.step {step} must give a step >= 1 for each of the {ndim} axes")
    if "flip" in layout:
        flip = ints("flip")
        if len(set(flip)) != len(flip) or any(not 0 <= a < ndim for a in flip):
            raise ValueError(f"{where}.flip {flip} must name distinct axes of the {ndim}")
    if "offset" in layout:
        off = layout["offset"]
        if not isinstance(off, int) or isinstance(off, bool) or off < 0:
            raise ValueError(f"{where}.offset must be an integer >= 0, got {off!r}")


def strided_view(a: np.ndarray, layout: dict | None) -> np.ndarray:
    """A new array with ``a``'s values in ``layout`` (a fresh C-ordered copy
    when ``layout`` is empty or None).  The view owns its buffer: writing to
    it never touches ``a``."""
    a = np.asarray(a)
    if not layout:
        return a.copy()
    check_layout(layout, a.ndim)
    nd = a.ndim
    order = list(layout.get("order", range(nd)))
    step = list(layout.get("step", [1] * nd))
    flip = list(layout.get("flip", []))
    offset = int(layout.get("offset", 0))
    if a.size == 0 or nd == 0:
        order, step, flip = list(range(nd)), [1] * nd, []
    inner_shape = [a.shape[ax] * step[ax] for ax in order]  # the buffer, axes in memory order
    n = int(np.prod(inner_shape, dtype=np.int64))
    buf = np.full(offset + n, np.nan, dtype=np.float64).astype(a.dtype)
    mem = buf[offset:].reshape(inner_shape)
    mem = mem[(Ellipsis,) + tuple(slice(None, None, step[ax]) for ax in order)]  # a view, even 0-d
    view = np.transpose(mem, np.argsort(order))  # logical axis order
    for ax in flip:
        view = np.flip(view, ax)
    view[...] = a
    return view


def describe(layout: dict | None, ndim: int | None = None) -> str:
    """A short name for a layout: ``contiguous``, ``fortran``, ``order[0,2,3,1]``,
    ``step[1,2]``, ``flip[0]``, ``offset 3``, joined by ``+``."""
    if not layout:
        return "contiguous"
    parts = []
    order = layout.get("order")
    if order is not None and order != sorted(order):
        parts.append("fortran" if order == sorted(order)[::-1] and len(order) > 1 else
                     "order[" + ",".join(map(str, order)) + "]")
    step = layout.get("step")
    if step and any(s != 1 for s in step):
        parts.append("step[" + ",".join(map(str, step)) + "]")
    if layout.get("flip"):
        parts.append("flip[" + ",".join(map(str, layout["flip"])) + "]")
    if layout.get("offset"):
        parts.append(f"offset {layout['offset']}")
    return "+".join(parts) or "contiguous"
