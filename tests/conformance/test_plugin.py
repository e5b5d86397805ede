"""The pytest plugin (registered through the pytest11 entry point): the golden
suite as test items, strict xfails from the shipped file, the golden_cases
decorator and the refnorm_backend fixture, run in an inner pytest."""

from __future__ import annotations

import pytest

from refnorm.conformance.backends import load_backend
from refnorm.conformance.cli_check import default_xfails
from refnorm.conformance.harness import check, read_xfails
from refnorm.golden import GoldenFormatError, load_cases
from refnorm.golden.selection import choices

from .test_backend_loading import _syntax_error

pytest_plugins = ["pytester"]


def _counts(result):
    return result.parseoutcomes()


def test_suite_against_numpy32_passes_with_shipped_xfails(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    r = pytester.runpytest("--refnorm-backend=numpy32",
                           "--refnorm-ops=layer_norm", "--refnorm-dtypes=float32,float64", "-q")
    c = _counts(r)
    assert r.ret == 0, r.stdout.str()[-3000:]
    # the same selection through the harness API gives the same counts
    want = check(load_backend("numpy32"), ops=["layer_norm"], dtypes=["float32", "float64"],
                 xfails=read_xfails(default_xfails("numpy32"))).counts()
    assert c["passed"] == want["passed"] + 1 and c["xfailed"] == want["xfailed"] > 0


def test_suite_against_a_mutant_fails_and_names_the_case(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    r = pytester.runpytest("--refnorm-backend=mutant:gn_strided_groups",
                           "--refnorm-ops=group_norm", "--refnorm-dtypes=float32", "-q")
    assert r.ret == 1
    assert _counts(r)["failed"] > 0
    r.stdout.fnmatch_lines(["*group_norm/*__float32::group_norm*"])


def test_suite_against_a_backend_file(pytester):
    backend = pytester.makepyfile(my_rms="""
        import refnorm
        BACKEND_INFO = {"name": "my_rms", "description": "refnorm's RMSNorm under another name"}
        def rms_norm(x, normalized_shape, weight=None, eps=None):
            return refnorm.rms_norm(x, normalized_shape, weight, eps)
    """)
    r = pytester.runpytest(f"--refnorm-backend={backend}",
                           "--refnorm-ops=rms_norm", "-q", "-rs")
    c = _counts(r)
    assert r.ret == 0 and c["passed"] > 0 and c["skipped"] > 0  # backward/stats: not implemented


def test_golden_cases_decorator_and_backend_fixture(pytester):
    pytester.makepyfile("""
        import refnorm
        from refnorm.conformance.plugin import golden_cases

        @golden_cases(ops=["rms_norm"], dtypes=["float32"])
        def test_mine(case):
            if case.expect.get("kind") != "value":
                return
            y = refnorm.rms_norm(case.inputs["x"], tuple(case.attrs["normalized_shape"]),
                                 case.inputs.get("weight"), case.attrs.get("eps"),
                                 offset=case.attrs.get("offset", 0.0))
            case.assert_close("y", y)

        def test_fixture(refnorm_backend):
            assert hasattr(refnorm_backend, "layer_norm")
    """)
    suite = {"ops": ["layer_norm"], "dtypes": ["float64"], "tiers": ["exact"]}
    r = pytester.runpytest("--refnorm-backend=numpy32", *(f"--refnorm-{k}={v[0]}" for k, v in suite.items()), "-q")
    # --refnorm-ops/dtypes/tiers filter the suite only; the decorator selects its own cases
    c = _counts(r)
    assert r.ret == 0, r.stdout.str()[-2000:]
    want = check(load_backend("numpy32"), xfails=read_xfails(default_xfails("numpy32")), **suite).counts()
    assert c["passed"] == len(list(load_cases(ops=["rms_norm"], dtypes=["float32"]))) + 1 + want["passed"]


def test_backend_file_is_loaded_once_and_shared_with_the_fixture(pytester, monkeypatch):
    pytester.makepyfile(counted="""
        import os, refnorm
        with open(os.environ["REFNORM_TEST_LOADS"], "a") as f:
            f.write("loaded\\n")
        BACKEND_INFO = {"name": "counted", "description": "refnorm's RMSNorm, counting its loads"}
        rms_norm = refnorm.rms_norm
    """)
    pytester.makepyfile(test_uses_it="""
        import os

        def test_fixture(refnorm_backend):
            assert refnorm_backend.BACKEND_INFO["name"] == "counted"
            with open(os.environ["REFNORM_TEST_LOADS"], "a") as f:
                f.write("fixture\\n")
    """)
    loads = pytester.path / "loads.txt"
    monkeypatch.setenv("REFNORM_TEST_LOADS", str(loads))
    r = pytester.runpytest("--refnorm-backend=counted.py", "--refnorm-ops=rms_norm", "--refnorm-dtypes=float64",
                           "--refnorm-tiers=exact", "-q")
    assert r.ret == 0, r.stdout.str()[-2000:]
    assert loads.read_text().splitlines() == ["loaded", "fixture"]  # one load, and the fixture test ran


# ----------------------------------------------------------------------------- usage errors


def _usage_error(result) -> str:
    """The one ``ERROR:`` line of a pytest run that ended in a usage error (exit 4)."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.mark.parametrize("spec", ["broken.py", "broken"])
def test_backend_that_cannot_be_loaded_is_a_usage_error(pytester, spec):
    source = "def layer_norm(x:\n"
    path = pytester.path / "broken.py"
    path.write_text(source)
    r = pytester.runpytest(f"--refnorm-backend={spec}", "-q")
    assert _usage_error(r) == f"ERROR: cannot load backend {spec!r} from {path}: {_syntax_error(source, path)}"


def test_missing_corpus_is_a_usage_error(pytester):
    nowhere = pytester.path / "nowhere"
    with pytest.raises(GoldenFormatError) as info:
        list(load_cases(root=nowhere))
    r = pytester.runpytest("--refnorm-backend=numpy32", f"--refnorm-golden-dir={nowhere}", "-q")
    assert _usage_error(r) == f"ERROR: refnorm golden corpus: {info.value}"


def test_golden_cases_over_a_missing_corpus_is_a_clean_collection_error(pytester):
    nowhere = pytester.path / "nowhere"
    with pytest.raises(GoldenFormatError) as info:
        list(load_cases(root=nowhere))
    pytester.makepyfile(f"""
        from refnorm.conformance.plugin import golden_cases

        @golden_cases(root={str(nowhere)!r})
        def test_mine(case):
            pass
    """)
    r = pytester.runpytest("-q")
    r.assert_outcomes(errors=1)
    assert f"refnorm golden corpus: {info.value}" in r.stdout.lines and "Traceback" not in r.stdout.str()


def test_missing_xfail_file_is_a_usage_error(pytester):
    r = pytester.runpytest("--refnorm-backend=numpy32", "--refnorm-xfail=no_such_file.txt", "-q")
    line = _usage_error(r)
    assert line.startswith("ERROR: xfail file: ") and "no_such_file.txt" in line


@pytest.mark.parametrize("what", ["op", "dtype", "tier"])
def test_unknown_selection_values_are_usage_errors(pytester, what):
    r = pytester.runpytest(f"--refnorm-{what}s={choices(what)[0]}, bogus", "-q")
    assert _usage_error(r) == (f"ERROR: --refnorm-{what}s: unknown {what} 'bogus'; "
                               f"expected one of {', '.join(choices(what))}")
