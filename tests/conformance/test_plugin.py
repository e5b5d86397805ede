"""The pytest plugin (registered through the pytest11 entry point): the golden
suite as test items, strict xfails from the shipped file, the golden_cases
decorator and the refnorm_backend fixture, run in an inner pytest."""

from __future__ import annotations

import pytest

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
    from refnorm.conformance.backends import load_backend
    from refnorm.conformance.cli_check import default_xfails
    from refnorm.conformance.harness import check, read_xfails

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
                                 case.inputs.get("weight"), case.attrs.get("eps"))
            case.assert_close("y", y)

        def test_fixture(refnorm_backend):
            assert hasattr(refnorm_backend, "layer_norm")
    """)
    r = pytester.runpytest("--refnorm-backend=numpy32",
                           "--refnorm-ops=none_selected_here", "-q")
    # --refnorm-ops filters the suite only; the decorator selects its own cases
    c = _counts(r)
    assert r.ret == 0, r.stdout.str()[-2000:]
    from refnorm.golden import load_cases

    assert c["passed"] == len(list(load_cases(ops=["rms_norm"], dtypes=["float32"]))) + 1
