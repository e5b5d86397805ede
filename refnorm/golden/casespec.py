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
from dataclasses import dataclass, field

__all__ = ["CHECKS", "KINDS", "OPTIONAL_FIELDS", "TIERS", "CaseSpec"]

#: The tiers of the catalogue: constructed exact inputs, random data, adversarial data.
TIERS = ("exact", "statistical", "adversarial")
#: What a case expects (``expect["kind"]``): values, NaN where stated, or an error.
KINDS = ("value", "nan", "error")
#: The properties a case may ask for (its ``checks``): ``inputs_unchanged`` (true:
#: every input is bitwise the same after each call), ``repeat`` (an integer n >= 2:
#: n calls give identical bits), ``batch_invariance`` (true: a sample's forward
#: output does not depend on the rest of the batch).
CHECKS = {"inputs_unchanged": bool, "repeat": int, "batch_invariance": bool}
#: Fields of a case spec that the manifest holds only when they are not empty.
OPTIONAL_FIELDS = ("layout", "checks")


@dataclass(frozen=True)
class CaseSpec:
    """One golden case, ``id = "<op>/<name>__<dtype>"``: the op's attributes,
    the shape and recipe of each input (drawn from ``seed``), what it expects
    (``{"kind": ...}`` of :data:`KINDS`) and whether it is a large case.

    Two fields are optional and empty in the catalogue's cases (and then left
    out of the manifest): ``layout``, tensor -> the memory layout the backend
    receives it in (:mod:`refnorm.golden.layouts`), and ``checks``, the
    properties checked beyond the values (:data:`CHECKS`): cases written by
    ``refnorm fuzz`` carry them so that ``refnorm check`` replays a failure."""

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
    layout: dict = field(default_factory=dict)
    checks: dict = field(default_factory=dict)

    @classmethod
    def from_fields(cls, fields: dict) -> CaseSpec:
        """The spec whose fields ``fields`` holds (a manifest entry: its other keys are ignored)."""
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})
