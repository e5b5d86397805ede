"""What a golden case is: :class:`CaseSpec`, its tiers and expected kinds.

In the chain of :mod:`refnorm.golden` it imports nothing from the package;
the manifest, the selection of cases and the catalogue take the tiers from
here.  The catalogue (:mod:`refnorm.golden.catalogue`) expands
``spec/cases.toml`` into these records; the manifest stores every field of one
next to its file, and :func:`refnorm.golden.corpus.verify` rebuilds the record
from there (:meth:`CaseSpec.from_fields`) to recompute the case.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["KINDS", "TIERS", "CaseSpec"]

#: The tiers of the catalogue: constructed exact inputs, random data, adversarial data.
TIERS = ("exact", "statistical", "adversarial")
#: What a case expects (``expect["kind"]``): values, NaN where stated, or an error.
KINDS = ("value", "nan", "error")


@dataclass(frozen=True)
class CaseSpec:
    """One golden case, ``id = "<op>/<name>__<dtype>"``: the op's attributes,
    the shape and recipe of each input (drawn from ``seed``), what it expects
    (``{"kind": ...}`` of :data:`KINDS`) and whether it is a large case."""

    id: str
    op: str
    name: str
    tier: str
    dtype: str
    attrs: dict
    shapes: dict
    recipe: dict
    seed: int
    expect: dict
    description: str
    large: bool = False

    @classmethod
    def from_fields(cls, fields: dict) -> CaseSpec:
        """The spec whose fields ``fields`` holds (a manifest entry: its other keys are ignored)."""
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})
