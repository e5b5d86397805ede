"""refnorm fuzz: the schedule reaches what it promises, honest backends pass, the property mutants are
caught, and a failure is shrunk into a corpus case that `refnorm check` replays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refnorm._registry import registry
from refnorm.cli import main
from refnorm.conformance import fuzz as F
from refnorm.conformance.backends import load_backend
from refnorm.conformance.cli_check import default_xfails
from refnorm.conformance.harness import check, check_case, read_xfails
from refnorm.conformance.mutants import FUZZ_ONLY, load_mutant
from refnorm.golden.build import build_case
from refnorm.golden.corpus import verify
from refnorm.golden.dtypes import DTYPES

OPS = list(registry())
SEEDS = (0, 1, 2, 7, 12345)


def test_every_op_has_a_drawing_rule():
    """A new op cannot be silently left out of the fuzzer."""
    for op in OPS:
        assert F.required_features(op, list(DTYPES))


def test_the_same_seed_draws_the_same_cases():
    a = [e.spec for e in F.plan(3, 40, OPS)]
    b = [e.spec for e in F.plan(3, 40, OPS)]
    c = [e.spec for e in F.plan(4, 40, OPS)]
    assert a == b and a != c


#: every op reaches its required classes within its first PER_OP examples (ops round robin)
PER_OP = 16


@pytest.mark.parametrize("seed", SEEDS)
def test_every_required_feature_within_16_examples_of_each_op(seed):
    """By design, not by luck: for any seed, every op reaches every size class, dtype, layout of every
    tensor (dy included), affine and eps class within its first 16 examples (a run of 16 examples per op)."""
    reached = F.first_reached(F.plan(seed, PER_OP * len(OPS), OPS))
    assert set(reached) == set(OPS)
    missed = {op: m for op, m in F.missed_features(reached).items() if m}
    assert not missed
    row = reached["layer_norm"]
    assert {"set>2^17", "sets>2^16", "layout negative strides: dy", "eps=0", "mixed dtypes"} <= set(row)


def test_the_big_classes_are_what_they_say():
    exs = [e for e in F.plan(0, 200, ["layer_norm"]) if e is not None]
    big = [e for e in exs if "set>2^17" in e.features]
    many = [e for e in exs if "sets>2^16" in e.features]
    assert big and all(e.spec.attrs["normalized_shape"][0] > 2 ** 17 for e in big)
    assert many and all(e.spec.shapes["x"][0] > 2 ** 16 for e in many)
    assert all(np.prod(e.spec.shapes["x"]) <= 2 ** 18 for e in exs)
    capped = [e for e in F.plan(0, 50, ["layer_norm"], max_elements=5000) if e is not None]
    assert capped and all(np.prod(e.spec.shapes["x"]) <= 5000 for e in capped)


def _shared_examples(n, seed=0):
    """Examples drawn once with every derivative input, built once (the oracle), for several backends."""
    derivs = {op: ("jvp", "double_backward") for op in OPS}
    out = []
    for ex in F.plan(seed, n, OPS, derivatives=derivs, checks={"inputs_unchanged": True}):
        with np.errstate(all="ignore"):
            out.append((ex, F.golden_case(build_case(ex.spec))))
    return out


@pytest.fixture(scope="module")
def shared():
    return _shared_examples(66)  # six per op; `refnorm fuzz --examples 200` runs the full schedule


@pytest.mark.parametrize("name", ["refnorm", "numpy32", "torch"])
def test_honest_backends_pass(name, shared):
    if name == "torch":
        pytest.importorskip("torch")
    backend = load_backend(name)
    path = default_xfails(name)
    rules = read_xfails(path) if path else []
    bad = []
    for ex, case in shared:
        for o in check_case(backend, case, xfails=rules):
            if o.status == "failed":
                bad.append(f"{o.case_id}::{o.function} [{ex.label()}]: {o.message[:300]}")
    assert not bad, "\n".join(bad[:10])


# which op exercises each mutant's bug; the mutants affect every op of numpy32
MUTANT_OPS = {"set_size_block_limit": ["layer_norm"], "grid_limit_sets": ["rms_norm"],
              "strides_ignored": ["layer_norm", "batch_norm"], "inplace_float64": ["group_norm"]}


def test_fuzz_only_mutants_are_the_four():
    assert set(MUTANT_OPS) == set(FUZZ_ONLY)


@pytest.mark.parametrize("name", sorted(MUTANT_OPS))
@pytest.mark.parametrize("seed", (0, 1, 5))
def test_fuzz_catches_the_property_mutants(name, seed):
    report = F.fuzz(load_mutant(name), ops=MUTANT_OPS[name], examples=200, seed=seed, max_failures=1,
                    shrink_budget=0)
    assert report.failures, f"{name} passed 200 examples of seed {seed}"
    assert report.examples <= 200


def test_a_failure_is_shrunk_written_and_replayed(tmp_path, capsys):
    out = tmp_path / "failures"
    code = main(["fuzz", "--backend", "mutant:strides_ignored", "--ops", "layer_norm", "--examples", "40",
                 "--max-failures", "1", "--out", str(out), "--quiet", "--json", str(tmp_path / "r.json")])
    text = capsys.readouterr().out
    assert code == 1
    assert "FAILED layer_norm/fuzz_s0_" in text and "seed 0, example" in text and "refnorm check" in text
    report = json.loads((tmp_path / "r.json").read_text())
    (f,) = report["failures"]
    assert f["layout"] and f["property"] == "values"
    assert not verify(out)
    # the written case replays: the mutant fails it the same way, numpy32 and refnorm pass it
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["cases"]
    assert entry["id"] == f["case_id"] and entry["layout"] and entry["checks"] == {"inputs_unchanged": True}
    replay = check(load_mutant("strides_ignored"), root=out)
    assert {(o.case_id, o.function) for o in replay.unexpected} >= {(f["case_id"], f["function"])}
    assert check(load_backend("numpy32"), root=out).ok and check(load_backend("refnorm"), root=out).ok
    # shrunk: no larger than the example drawn, and no layout that the failure does not need
    assert np.prod(entry["shapes"]["x"]) <= 2 ** 18


def test_an_in_place_failure_replays_as_such(tmp_path):
    out = tmp_path / "failures"
    report = F.fuzz(load_mutant("inplace_float64"), ops=["group_norm"], dtypes=["float64"], examples=30,
                    max_failures=1, out_dir=out)
    (fail,) = report.failures
    assert F._kind(fail.outcomes[0]) == "inputs unchanged"
    assert "modified in place" in fail.message()
    replay = check(load_mutant("inplace_float64"), root=out)
    assert any("modified in place" in o.message for o in replay.unexpected)
    assert check(load_backend("numpy32"), root=out).ok


def test_cli_usage_errors_exit_2(capsys):
    for argv in (["fuzz", "--backend", "numpy32", "--examples", "0"],
                 ["fuzz", "--backend", "numpy32", "--ops", "no_such_op"],
                 ["fuzz", "--backend", "no.such.module.anywhere"]):
        with pytest.raises(SystemExit) as e:
            rc = main(argv)
            raise SystemExit(rc)
        assert e.value.code == 2, argv
    capsys.readouterr()


def test_cli_passing_run_prints_coverage_and_speed(capsys, tmp_path):
    code = main(["fuzz", "--backend", "numpy32", "--ops", "rms_norm", "--examples", "12", "--quiet",
                 "--max-elements", "4096", "--out", str(tmp_path / "none")])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "coverage" in text and "rms_norm:" in text and "examples/s" in text
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("name, option", [("racy_reduction", {"repeat": 2}),
                                          ("batch_variant", {"batch_invariance": True})])
def test_repeat_and_batch_invariance_catch_their_mutants(name, option):
    """The optional properties work in a fuzz run as in refnorm check (and only with the option)."""
    caught = F.fuzz(load_mutant(name), ops=["layer_norm"], dtypes=["float32"], examples=40, max_failures=1,
                    shrink_budget=0, **option)
    assert caught.failures and F._kind(caught.failures[0].outcomes[0]) in ("repeat", "batch invariance")
    assert not F.fuzz(load_mutant(name), ops=["layer_norm"], dtypes=["float32"], examples=12).failures
