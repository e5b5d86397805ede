"""One module per registered op: ``tests/ops/cases/<op>.py`` holds every input the
cross-cutting tests run that op on.  Adding an op to ``refnorm/_registry.py``
means adding its module here (and, for tests about that op alone,
``tests/ops/test_<op>.py``, beside it); no cross-cutting test file is edited.
The package lives under ``tests/ops/`` with those per-op test files; the
registry battery (``tests/test_registry.py``) and ``tests/_util.py`` import it
from there.

The cross-cutting tests walk ``refnorm.registry()`` and take their inputs from
these modules; each also has a completeness test that fails naming the op and
the missing piece (:func:`gaps`).  A module defines:

``battery(rng) -> [(case_id, kwargs)]``
    small, odd-sized, well-conditioned inputs covering the op's argument space:
    the registry battery (``tests/test_registry.py``: forward vs reference,
    backward vs autograd and finite differences, no input modified).
``running_stats_args(kwargs) -> tuple | None``
    only for an op with a running-statistics update (``OpSpec.running_stats``):
    the update's arguments for one battery case (None: not applicable), run by
    the battery's no-mutation test.
``ERRORS = [(case_id, call, exception type, substring of the message)]``
    bad input (``tests/ops/test_errors.py``, every kernel replaced by a
    tripwire).  ``call`` is a lambda calling ``refnorm.<function>``: the
    coverage test records those calls to check that every public function of
    the op is refused bad input.
``KERNELS = [(module, (name, ...))]``
    the op's own kernels, beyond the shared ones of ``refnorm/ops/_kernels.py``,
    for that tripwire (``[]`` if it has none).
``threads(rng) -> [kwargs]``
    inputs large enough to spread over threads (``tests/ops/test_threads.py``:
    forward and backward bits with NUMBA_NUM_THREADS=1 and =2);
    ``thread_extras(kwargs_list) -> [array]`` optionally adds other outputs
    (of the op's other functions, on those inputs).
``EXACT``
    an :class:`ExactOracle` (cases for ``tests/ops/test_accuracy.py``, against
    the exact oracle ``tests/oracle.py``, which must then have the op), or a
    :class:`NoExactOracle` saying why the op has none.

Optional hooks: ``reference_kwargs(kwargs)`` (the arguments the reference
receives, when they differ from the forward's),
``gradient_scale(spec, kwargs, dy, name)`` (the magnitude of the terms a
gradient is summed from; default: ``tests/_util.standard_gradient_scale``) and
``finite_differences_apply(kwargs)`` (False where the forward is a step
function of an input, e.g. a rounding whose derivative is the identity by
definition: the finite-difference check is skipped there, the autograd one
still runs; its docstring is the reason).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import numpy as np

import refnorm

#: small arrays the ERRORS lists of several ops share
X4 = np.random.default_rng(0).standard_normal((2, 6, 3, 3))
X2 = np.random.default_rng(1).standard_normal((4, 5))
C6 = np.ones(6)


@dataclass(frozen=True)
class ExactOracle:
    """How ``tests/ops/test_accuracy.py`` builds an op's exact-oracle cases.

    variants : ``[(shape, attrs)]`` covering the argument space (attrs: the
        op's non-array arguments).
    exact_tier : ``(shape, attrs)`` with even set sizes, for the E28 exact tier.
    single_element : ``(shape, attrs)`` whose reduction sets hold one element.
    layout : ``(shape, attrs) -> (B, n, to_x)``: the number of reduction sets,
        their size, and a map from a ``(B, n)`` array of per-set values to x.
    affine : ``"trailing"`` (weight/bias shaped like normalized_shape) or
        ``"channel"`` (one per channel, axis 1).
    has_bias : whether the op takes a bias.
    complete : ``(kwargs, rng) -> None``: adds the op's mode flags and running
        statistics to kwargs holding x, attrs, weight, bias and eps.
    mode : ``kwargs -> "batch" | "rms" | "running"``: the kernel path (centred
        batch statistics, RMS, or running statistics), which fixes the error bound.
    view : ``(x, kwargs) -> (x3, lead)``: the canonical ``(P, sets, n)`` view the
        kernels reduce, and the shape of its statistics (``mode == "running"``: unused).
    draw : ``(draw, st, N, C, spatial) -> (shape, attrs)``: a hypothesis-drawn
        geometry.
    long_cases : ``rng -> [(case_id, x, attrs)]``: long reductions (slow in the oracle).
    """

    variants: list
    exact_tier: tuple
    single_element: tuple
    layout: Callable
    affine: str
    has_bias: bool
    complete: Callable
    mode: Callable
    view: Callable
    draw: Callable
    long_cases: Callable = lambda rng: []


@dataclass(frozen=True)
class NoExactOracle:
    """The op has no exact oracle; ``reason`` says how it is checked instead."""

    reason: str


def ops() -> list[str]:
    """The names of the case modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def module(op: str) -> ModuleType | None:
    """``tests/ops/cases/<op>.py``, or None when there is none."""
    try:
        return importlib.import_module(f"{__name__}.{op}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{op}":
            raise
        return None


def get(op: str, attr: str, default=None):
    """``attr`` of the op's case module (``default`` when it or the module is missing):
    the cross-cutting tests collect what there is; :func:`gaps` reports what is not."""
    mod = module(op)
    return default if mod is None else getattr(mod, attr, default)


def _where(op):
    return f"tests/ops/cases/{op}.py"


def _battery_gaps(op, mod):
    if not callable(getattr(mod, "battery", None)):
        return [f"op {op!r} has no registry-battery cases: add battery(rng) to {_where(op)} "
                "(run by tests/test_registry.py)"]
    out = []
    if not mod.battery(np.random.default_rng(0)):
        out.append(f"op {op!r}: battery(rng) in {_where(op)} returns no cases")
    if refnorm.registry()[op].running_stats is not None and not callable(getattr(mod, "running_stats_args", None)):
        out.append(f"op {op!r} has a running-statistics update but no running_stats_args(kwargs) in {_where(op)} "
                   "(the battery's no-mutation test calls the update with them)")
    return out


def _errors_gaps(op, mod):
    out = []
    if not getattr(mod, "ERRORS", None):
        out.append(f"op {op!r} has no bad-input cases: add ERRORS to {_where(op)} (run by tests/ops/test_errors.py)")
    if not isinstance(getattr(mod, "KERNELS", None), list):
        out.append(f"op {op!r} does not list its kernels for the bad-input tripwire: add KERNELS "
                   f"([] if it only uses refnorm/ops/_kernels.py) to {_where(op)}")
    return out


def _threads_gaps(op, mod):
    if callable(getattr(mod, "threads", None)):
        return []
    return [f"op {op!r} has no thread-determinism inputs: add threads(rng) to {_where(op)} "
            "(run by tests/ops/test_threads.py)"]


def _exact_gaps(op, mod):
    from tests import oracle

    exact = getattr(mod, "EXACT", None)
    if isinstance(exact, ExactOracle):
        if op not in oracle.OPS:
            return [f"op {op!r} has exact-oracle cases in {_where(op)} but tests/oracle.py has no oracle for it: "
                    f"add {op} and {op}_backward to OPS there"]
        return []
    if isinstance(exact, NoExactOracle) and exact.reason.strip():
        return []
    return [f"op {op!r} has no exact-oracle case: add EXACT = ExactOracle(...) to {_where(op)} "
            "(run by tests/ops/test_accuracy.py), or EXACT = NoExactOracle('<how it is checked instead>')"]


PIECES = {"battery": _battery_gaps, "errors": _errors_gaps, "threads": _threads_gaps, "exact": _exact_gaps}


def gaps(piece: str, ops=None) -> list[str]:
    """What the registered ops (or ``ops``) lack for one piece of the
    cross-cutting tests (a key of :data:`PIECES`), one sentence each."""
    out = []
    for op in refnorm.registry() if ops is None else ops:
        mod = module(op)
        if mod is None:
            out.append(f"op {op!r} has no case module: add {_where(op)} (see tests/ops/cases/__init__.py)")
        else:
            out += PIECES[piece](op, mod)
    return out


def assert_complete(piece: str) -> None:
    """Fail naming every registered op that lacks ``piece`` and what to add."""
    missing = gaps(piece)
    assert not missing, "\n".join(missing)
