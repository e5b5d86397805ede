"""The cross-cutting tests cover every registered op, or fail naming what is
missing: a fake op is registered (the registry is monkeypatched) and the
completeness test of each of the four files that walk the registry -- the
registry battery, the exact oracle, bad input and thread determinism -- must
fail naming it and the piece to add to tests/ops/cases/<op>.py."""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
from types import MappingProxyType

import pytest

import refnorm
from refnorm import _registry

from .. import test_registry
from . import cases, test_accuracy, test_errors, test_threads
from .cases import ExactOracle, NoExactOracle

FAKE = "fake_norm"

#: piece -> (the completeness test of the file that runs it, the sentence it must say)
CHECKS = {
    "battery": (test_registry.test_every_registered_op_has_battery_cases,
                f"op {FAKE!r} has no registry-battery cases: add battery(rng) to tests/ops/cases/{FAKE}.py"),
    "exact": (test_accuracy.test_every_registered_op_has_an_oracle_and_cases,
              f"op {FAKE!r} has no exact-oracle case: add EXACT = ExactOracle(...) to tests/ops/cases/{FAKE}.py"),
    "errors": (test_errors.test_every_registered_op_has_error_cases,
               f"op {FAKE!r} has no bad-input cases: add ERRORS to tests/ops/cases/{FAKE}.py"),
    "threads": (test_threads.test_every_registered_op_has_thread_inputs,
                f"op {FAKE!r} has no thread-determinism inputs: add threads(rng) to tests/ops/cases/{FAKE}.py"),
}


def _renamed(fn, suffix):
    """``fn`` under the fake op's public name (the record checks the names)."""
    if fn is None:
        return None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    wrapper.__name__ = wrapper.__qualname__ = FAKE + suffix
    return wrapper


def _register(monkeypatch, like="layer_norm", drop=()):
    """Register FAKE (a copy of ``like``'s record, its functions renamed; none
    if ``like`` is None) and unregister the ops ``drop``."""
    reg = {k: v for k, v in refnorm.registry().items() if k not in drop}
    if like is not None:
        spec = refnorm.registry()[like]
        running = spec.running_stats
        reg[FAKE] = dataclasses.replace(
            spec, name=FAKE, forward=_renamed(spec.forward, ""), backward=_renamed(spec.backward, "_backward"),
            forward_with_stats=_renamed(spec.forward_with_stats, "_stats"),
            running_stats=_renamed(running, running.__name__[len(like):]) if running is not None else None,
            jvp=_renamed(spec.jvp, "_jvp"), double_backward=_renamed(spec.double_backward, "_double_backward"))
    monkeypatch.setattr(_registry, "_REGISTRY", MappingProxyType(reg))
    assert list(refnorm.registry()) == list(reg)


def _case_module(monkeypatch, **attrs):
    """A stand-in tests/ops/cases/fake_norm.py holding ``attrs``."""
    mod = types.ModuleType(f"{cases.__name__}.{FAKE}")
    mod.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)


def _failure(test) -> str:
    with pytest.raises(AssertionError) as info:
        test()
    return str(info.value)


def test_the_registered_ops_are_complete():
    """The real registry passes every completeness check (so the failures below
    come from the fake op alone)."""
    for piece in cases.PIECES:
        assert not cases.gaps(piece), cases.gaps(piece)
    assert set(cases.ops()) == set(refnorm.registry())


@pytest.mark.parametrize("piece", list(CHECKS))
def test_an_op_without_a_case_module_fails_naming_it(monkeypatch, piece):
    _register(monkeypatch)
    message = _failure(CHECKS[piece][0])
    assert f"op {FAKE!r} has no case module: add tests/ops/cases/{FAKE}.py" in message
    assert "layer_norm" not in message  # only the op that lacks it


@pytest.mark.parametrize("piece", list(CHECKS))
def test_an_empty_case_module_fails_naming_each_missing_piece(monkeypatch, piece):
    _register(monkeypatch)
    _case_module(monkeypatch)
    test, sentence = CHECKS[piece]
    assert sentence in _failure(test)


def test_each_piece_passes_once_given(monkeypatch):
    """The module of a complete op (layer_norm's pieces under the fake name)
    passes all four; then removing any one piece fails only that check."""
    _register(monkeypatch)
    monkeypatch.setitem(test_accuracy.O.OPS, FAKE, test_accuracy.O.OPS["layer_norm"])
    ln = cases.module("layer_norm")
    pieces = {"battery": {"battery": ln.battery}, "exact": {"EXACT": ln.EXACT},
              "errors": {"ERRORS": ln.ERRORS, "KERNELS": ln.KERNELS}, "threads": {"threads": ln.threads}}
    full = {k: v for attrs in pieces.values() for k, v in attrs.items()}
    _case_module(monkeypatch, **full)
    for test, _ in CHECKS.values():
        test()
    for piece, attrs in pieces.items():
        _case_module(monkeypatch, **{k: v for k, v in full.items() if k not in attrs})
        for other, (test, sentence) in CHECKS.items():
            if other == piece:
                assert sentence.split(":")[0] in _failure(test)
            else:
                test()


def test_exact_oracle_declarations_are_checked(monkeypatch):
    """ExactOracle cases need an oracle in tests/oracle.py; NoExactOracle needs a reason."""
    _register(monkeypatch)
    test = CHECKS["exact"][0]
    _case_module(monkeypatch, EXACT=cases.module("layer_norm").EXACT)
    assert isinstance(cases.get(FAKE, "EXACT"), ExactOracle)
    assert f"tests/oracle.py has no oracle for it: add {FAKE} and {FAKE}_backward to OPS" in _failure(test)
    _case_module(monkeypatch, EXACT=NoExactOracle("  "))
    assert f"op {FAKE!r} has no exact-oracle case" in _failure(test)
    _case_module(monkeypatch, EXACT=NoExactOracle("checked elsewhere"))
    test()


def test_an_op_with_running_statistics_needs_their_arguments(monkeypatch):
    _register(monkeypatch, like="batch_norm")
    _case_module(monkeypatch, battery=cases.module("batch_norm").battery)
    assert (f"op {FAKE!r} has a running-statistics update but no running_stats_args(kwargs)"
            in _failure(CHECKS["battery"][0]))


def test_a_case_module_of_an_unregistered_op_fails(monkeypatch):
    _register(monkeypatch, like=None, drop=("gn_plus",))
    message = _failure(test_registry.test_registry_is_explicit_and_complete)
    assert "modules for ops the registry does not have: ['gn_plus']" in message
