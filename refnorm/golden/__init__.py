"""Golden fixtures: the case catalogue (``spec/cases.toml`` via
:mod:`refnorm.golden.catalogue`), bit-reproducible input recipes
(:mod:`refnorm.golden.recipes`), the derived tolerance model
(:mod:`refnorm.golden.tolerance`) and the fixture format/IO
(:mod:`refnorm.golden.safetensors`, :mod:`refnorm.golden.manifest`,
:mod:`refnorm.golden.corpus`)."""

from .corpus import GoldenCase, Problem, generate, load_case, load_cases, verify
from .safetensors import GoldenFormatError

__all__ = ["GoldenCase", "GoldenFormatError", "Problem", "generate", "load_case", "load_cases", "verify"]
