"""Selecting cases by op, dtype and tier: the ``ops=``, ``dtypes=``, ``tiers=``
arguments of the reader and the generator, and the ``--ops``, ``--dtypes``,
``--tiers`` options of the command line and the pytest plugin.

On the reader's side of :mod:`refnorm.golden`: the values a selection may name
are the registry's ops, :data:`~refnorm.golden.dtypes.DTYPE_NAMES` and
:data:`~refnorm.golden.casespec.TIERS`.
"""

from __future__ import annotations

from .._registry import registry
from .casespec import TIERS
from .dtypes import DTYPE_NAMES

__all__ = ["SelectionError", "as_list", "choices", "parse", "selected"]


class SelectionError(ValueError):
    """A selection (ops/dtypes/tiers) names an unknown value or matches nothing."""


def as_list(values, what: str, allowed=None) -> list[str] | None:
    """``values`` (None, a name, a comma-separated string or a list of them) as
    a list of names, or None for "all"; a name not in ``allowed`` (when given)
    raises :class:`SelectionError` naming ``what`` and the known values."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        out.extend(s for s in str(v).split(",") if s)
    if allowed is not None:
        bad = [v for v in out if v not in allowed]
        if bad:
            raise SelectionError(f"unknown {what} {', '.join(map(repr, bad))}; expected one of {', '.join(allowed)}")
    return out


def choices(what: str) -> tuple[str, ...]:
    """The values a selection may name for ``what``: ``"op"`` -> the registry's
    ops (which the catalogue covers), ``"dtype"`` -> :data:`DTYPE_NAMES`,
    ``"tier"`` -> :data:`TIERS`; the ``allowed`` of :func:`as_list`."""
    if what == "op":
        return tuple(registry())
    if what == "dtype":
        return DTYPE_NAMES
    if what == "tier":
        return TIERS
    raise ValueError(f"what must be 'op', 'dtype' or 'tier', got {what!r}")


def parse(ops, dtypes, tiers) -> tuple[list[str] | None, list[str] | None, list[str] | None]:
    """``(ops, dtypes, tiers)`` as lists of :func:`as_list`; an unknown dtype or
    tier raises :class:`SelectionError` (an op is not checked here: one that no
    case has selects nothing)."""
    return as_list(ops, "op"), as_list(dtypes, "dtype", DTYPE_NAMES), as_list(tiers, "tier", TIERS)


def selected(item, ops, dtypes, tiers) -> bool:
    """Whether ``item`` (a case spec or a manifest entry) matches the lists
    of :func:`as_list` (None matches everything)."""
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    return ((ops is None or get("op") in ops) and (dtypes is None or get("dtype") in dtypes)
            and (tiers is None or get("tier") in tiers))
