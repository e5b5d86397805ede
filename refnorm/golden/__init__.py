"""Golden fixtures: the case catalogue (``spec/cases.toml`` via
:mod:`refnorm.golden.catalogue`), bit-reproducible input recipes
(:mod:`refnorm.golden.recipes`), the derived tolerance model
(:mod:`refnorm.golden.tolerance`) and the fixture format/IO
(:mod:`refnorm.golden.safetensors`, :mod:`refnorm.golden.manifest`,
:mod:`refnorm.golden.reader`, :mod:`refnorm.golden.corpus`).

The modules form a one-way chain, each importing only modules before it:

* the reader's side -- :mod:`~refnorm.golden.locations`,
  :mod:`~refnorm.golden.dtypes`, :mod:`~refnorm.golden.comparison`,
  :mod:`~refnorm.golden.casespec`, :mod:`~refnorm.golden.safetensors`,
  :mod:`~refnorm.golden.manifest`, :mod:`~refnorm.golden.selection`,
  :mod:`~refnorm.golden.reader` -- is all that loading and checking cases
  needs;
* the generator's side builds on it: :mod:`~refnorm.golden.recipes`,
  :mod:`~refnorm.golden.catalogue`, :mod:`~refnorm.golden.rounding`,
  :mod:`~refnorm.golden.error_bounds`, :mod:`~refnorm.golden.tolerance`,
  :mod:`~refnorm.golden.build`, :mod:`~refnorm.golden.corpus` (generate,
  verify, write cases), :mod:`~refnorm.golden.usercase` (a case made from
  your own tensors).

``import refnorm.golden`` imports the reader's side only; :func:`generate`,
:func:`verify`, :func:`write_cases`, :class:`Problem` and
:func:`case_from_tensors` import the generator when first used.
"""

from .reader import GoldenCase, load_case, load_cases
from .safetensors import GoldenFormatError

__all__ = ["GoldenCase", "GoldenFormatError", "Problem", "case_from_tensors", "generate", "load_case", "load_cases",
           "verify", "write_cases"]

#: Names re-exported from :mod:`refnorm.golden.corpus`, which is imported on first use.
_FROM_CORPUS = ("Problem", "generate", "verify", "write_cases")
#: Names re-exported from :mod:`refnorm.golden.usercase`, which is imported on first use.
_FROM_USERCASE = ("case_from_tensors",)


def __getattr__(name: str):
    if name in _FROM_CORPUS:
        from . import corpus

        return getattr(corpus, name)
    if name in _FROM_USERCASE:
        from . import usercase

        return getattr(usercase, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_CORPUS) | set(_FROM_USERCASE))
