"""The conformance harness against the committed golden corpus: the reference
passes bit for bit, the shipped xfail files are exact (no stale rule, no
unlisted failure), every mutant is caught (the FUZZ_ONLY ones, built to pass
the corpus, pass it), and the outcome rules (error types, not-implemented,
unexpected passes) behave as documented."""

from __future__ import annotations

import re
import types
from functools import lru_cache

import numpy as np
import pytest

import refnorm
from refnorm.conformance.backends import load_backend
from refnorm.conformance.cli_check import default_xfails
from refnorm.conformance.harness import check, check_function, match_xfail, read_xfails
from refnorm.conformance.mutants import FUZZ_ONLY, MUTANTS, load_mutant
from refnorm.golden import load_cases

# The options a mutant needs to be caught at all (documented in the mutant modules).
MUTANT_OPTIONS = {"racy_reduction": {"repeat": 3}, "batch_variant": {"batch_invariance": True}}


def _failed(report) -> set[tuple[str, str]]:
    return {(o.case_id, o.function) for o in report.outcomes if o.status == "failed"}


@lru_cache(maxsize=None)
def _baseline_failures() -> frozenset:
    """What numpy32 (every mutant's unmutated base) fails without any xfail file."""
    return frozenset(_failed(check(load_backend("numpy32"))))


def test_reference_backend_passes_every_case_bit_for_bit():
    report = check(refnorm, backend_name="refnorm")
    c = report.counts()
    assert report.ok and c["failed"] == 0 and c["not_implemented"] == 0
    assert c["passed"] == len(report.outcomes) > 1000
    # the corpus *is* refnorm's float64 output: every compared value is exact
    assert max(o.worst_ratio or 0.0 for o in report.outcomes) == 0.0


@pytest.mark.parametrize("name", ["numpy32", "torch", "torch-fwfw"])
def test_shipped_xfail_file_is_exact(name):
    """With its shipped xfail file the backend passes; without it, it fails
    exactly the listed (case, function) pairs -- so a rule can neither hide an
    unlisted failure nor outlive the behaviour it describes."""
    if name.startswith("torch"):
        pytest.importorskip("torch")
    backend = load_backend(name)
    rules = read_xfails(default_xfails(name))
    assert rules and all(r.reason for r in rules)
    with_rules = check(backend, xfails=rules)
    assert with_rules.ok, [f"{o.case_id}::{o.function} {o.status}: {o.message}" for o in with_rules.unexpected]
    bare = check(backend)
    listed = {(o.case_id, o.function) for o in bare.outcomes if match_xfail(rules, o.case_id, o.function)}
    assert _failed(bare) == listed
    assert with_rules.counts()["xfailed"] == len(listed) > 0


def test_jax_with_shipped_xfails_on_a_subset():
    """The whole corpus takes JAX ~4 minutes (a compilation per shape); the
    float32 RMSNorm cases exercise the adapter and its xfail rules."""
    pytest.importorskip("jax")
    rules = read_xfails(default_xfails("jax"))
    report = check(load_backend("jax"), ops=["rms_norm"], dtypes=["float32"], xfails=rules)
    assert report.ok, [f"{o.case_id}::{o.function}: {o.message}" for o in report.unexpected]
    assert report.counts()["xfailed"] >= 1 and report.counts()["passed"] > 20


@pytest.mark.parametrize("name", sorted(set(MUTANTS) - FUZZ_ONLY))
def test_every_mutant_is_caught(name):
    """Catch rate 100%: each mutant fails at least one (case, function) that
    its unmutated base (numpy32) passes -- all but the FUZZ_ONLY ones, whose
    bugs no committed case can show (next test)."""
    report = check(load_mutant(name), **MUTANT_OPTIONS.get(name, {}))
    caught = _failed(report) - _baseline_failures()
    assert caught, f"mutant {name} ({MUTANTS[name]}) passes the golden suite"


@pytest.mark.parametrize("name", sorted(FUZZ_ONLY))
def test_fuzz_only_mutants_pass_the_committed_corpus(name):
    """The FUZZ_ONLY mutants fail nothing numpy32 passes: the committed corpus
    (at most 10007 elements per reduction set, at most 1024 sets, C-contiguous
    fresh copies, no check that the inputs are unchanged) cannot show their
    bugs, which is why ``refnorm fuzz`` exists.  If one of these ever fails, a
    committed case has grown into fuzz territory: move the mutant out of
    FUZZ_ONLY."""
    report = check(load_mutant(name))
    beyond = _failed(report) - _baseline_failures()
    assert not beyond, f"{name} fails committed cases: {sorted(beyond)[:5]}"
    assert report.counts()["passed"] > 1000


@pytest.mark.parametrize("name, option", [("racy_reduction", "repeat"), ("batch_variant", "batch_invariance")])
def test_hidden_mutants_need_their_option(name, option):
    """Without repeat runs / the batch-invariance check these two are accurate
    on every case: the options are what catches them, not luck."""
    report = check(load_mutant(name))
    assert not (_failed(report) - _baseline_failures()), f"{name} caught without {option}"


@pytest.mark.parametrize("name", sorted(MUTANT_OPTIONS))
def test_option_failures_print_plain_numbers(name):
    """What the repeat runs and the batch-invariance check report: the first
    differing element's index and both values as Python numbers (no NumPy
    wrappers), the values at full precision (they parse back to float64)."""
    report = check(load_mutant(name), ops=["layer_norm"], dtypes=["float32"], **MUTANT_OPTIONS[name])
    msgs = [o.message for o in report.unexpected if o.message.startswith(("nondeterministic", "batch-variant"))]
    assert msgs and not any("np." in m for m in msgs)
    for m in msgs:
        a, b = re.search(r": (\S+) vs (\S+?)\)?$", m).groups()
        assert float(a) != float(b)


def test_mutant_catch_rate_through_the_cli(capsys):
    from refnorm.cli import main

    assert main(["check", "--backend", "mutant:one_pass_variance", "--ops", "layer_norm", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "layer_norm/" in out


# ----------------------------------------------------------------------------- outcome rules


def _one_case(case_id):
    (case,) = [c for c in load_cases(ops=[case_id.split("/")[0]]) if c.id == case_id]
    return case


def test_error_case_accepts_only_the_declared_or_backend_declared_type():
    case = _one_case("layer_norm/err_normalized_shape_mismatch__float32")

    def raising(exc):
        def layer_norm(*a, **k):
            raise exc("bad normalized_shape")
        return layer_norm

    plain = types.SimpleNamespace(layer_norm=raising(RuntimeError))
    assert check_function(plain, case, "layer_norm").status == "failed"
    declared = types.SimpleNamespace(layer_norm=raising(RuntimeError),
                                     BACKEND_INFO={"name": "x", "error_types": (RuntimeError,)})
    assert check_function(declared, case, "layer_norm").status == "passed"
    assert check_function(types.SimpleNamespace(layer_norm=raising(ValueError)), case, "layer_norm").status == "passed"
    silent = types.SimpleNamespace(layer_norm=lambda *a, **k: np.zeros((3, 5)))
    oc = check_function(silent, case, "layer_norm")
    assert oc.status == "failed" and "no error was raised" in oc.message


def test_missing_functions_are_not_implemented_not_failures():
    partial = types.SimpleNamespace(rms_norm=refnorm.rms_norm)
    report = check(partial, ops=["rms_norm"])
    c = report.counts()
    assert report.ok and c["passed"] > 0 and c["not_implemented"] > 0 and c["failed"] == 0

    def rms_norm_backward(*a, **k):
        raise NotImplementedError("no backward yet")

    partial.rms_norm_backward = rms_norm_backward
    report = check(partial, ops=["rms_norm"])
    assert {o.status for o in report.outcomes if o.function == "rms_norm_backward"} == {"not_implemented"}


def test_wrong_values_fail_with_location_and_margin():
    case = next(c for c in load_cases(ops=["layer_norm"], dtypes=["float32"]) if c.expect.get("kind") == "value")
    off = types.SimpleNamespace(layer_norm=lambda *a: refnorm.layer_norm(*a) * (1 + 1e-3))
    oc = check_function(off, case, "layer_norm")
    assert oc.status == "failed" and oc.worst_ratio > 1 and "x tolerance at" in oc.message


def test_xfail_rules(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("# comment\n\nlayer_norm/e7_*__float32  # overflow\nrms_norm/*::rms_norm_stats  # stats\n")
    rules = read_xfails(p)
    assert [r.line for r in rules] == [3, 4]
    assert match_xfail(rules, "layer_norm/e7_1e30__float32", "layer_norm_backward") is rules[0]
    assert match_xfail(rules, "rms_norm/a__float16", "rms_norm_stats") is rules[1]
    assert match_xfail(rules, "rms_norm/a__float16", "rms_norm") is None
    p.write_text("layer_norm/e7_1e30__float32\n")
    with pytest.raises(ValueError, match=r"x.txt:1: expected"):
        read_xfails(p)


def test_an_unexpected_pass_fails_the_report(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("rms_norm/*__float64::rms_norm  # wrongly listed\n")
    report = check(refnorm, ops=["rms_norm"], dtypes=["float64"], xfails=read_xfails(p))
    assert not report.ok and report.counts()["xpassed"] > 0


def test_a_backend_without_a_keyword_the_case_passes_does_not_implement_that_variant():
    """A layer_norm without ``offset=`` is *not implemented* on the zero-centred
    cases (a variant it does not offer), never a crash or a failure, and passes
    the others; with ``**kwargs`` it is called and judged."""
    def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
        return refnorm.layer_norm(x, normalized_shape, weight, bias, eps)

    plain = types.SimpleNamespace(layer_norm=layer_norm)
    zero_centred = next(c for c in load_cases(ops="layer_norm", dtypes="float32")
                        if "offset" in c.attrs and "weight" in c.inputs)
    ordinary = next(c for c in load_cases(ops="layer_norm", dtypes="float32", tiers="statistical")
                    if "offset" not in c.attrs)
    oc = check_function(plain, zero_centred, "layer_norm")
    assert oc.status == "not_implemented" and "layer_norm() takes no offset= (the case passes offset=1.0)" in oc.message
    assert check_function(plain, ordinary, "layer_norm").status == "passed"

    def ignores_offset(x, normalized_shape, weight=None, bias=None, eps=1e-5, **kwargs):
        return refnorm.layer_norm(x, normalized_shape, weight, bias, eps)

    oc = check_function(types.SimpleNamespace(layer_norm=ignores_offset), zero_centred, "layer_norm")
    assert oc.status == "failed" and oc.mismatches[0].output == "y"
