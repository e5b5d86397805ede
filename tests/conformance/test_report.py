"""The text report of ``refnorm check`` (:mod:`refnorm.conformance.report`) and
the JSON report it points to: short plain lines grouped by case under the
case's description, a cut-off line that counts the rest and says where they
all are, the dtype and tier that fail most, and every fact of a failure kept
both in the text and, as fields, in the JSON."""

from __future__ import annotations

import inspect
import json
import re
import types
from collections import Counter

import numpy as np
import pytest

from refnorm.cli import main
from refnorm.conformance.harness import Outcome, Report, check, check_function
from refnorm.conformance.mutants import load_mutant
from refnorm.conformance.report import HANG, failures, table
from refnorm.golden import load_case, load_cases
from refnorm.golden.comparison import compare
from refnorm.golden.dtypes import DTYPE_NAMES

MAX_LINE = 160  # the brief the report is written to: a terminal-width listing
OPS = ["layer_norm", "rms_norm", "group_norm"]


def _unexpected(outcomes) -> list:
    """Counted here from the statuses, not through Report.unexpected."""
    return [o for o in outcomes if o.status in ("failed", "xpassed")]


def _logical(text: str) -> list[str]:
    """The report's lines with each wrapped line joined back onto the line it
    continues (a continuation is indented HANG or more; the levels of the
    listing are at 0, 2 and 4)."""
    out = []
    for line in text.splitlines():
        if out and len(line) - len(line.lstrip(" ")) >= HANG:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def _blocks(lines: list[str]) -> dict[str, list[str]]:
    """Case header line -> the lines below it, up to the next header."""
    blocks, head = {}, None
    for line in lines:
        if not line.startswith(" ") and not line.startswith("... and"):
            head = line
            assert head not in blocks, f"case header repeated: {head}"
            blocks[head] = []
        elif head is not None and line.startswith(" "):
            blocks[head].append(line)
    return blocks


@pytest.fixture(scope="module")
def mutant_report():
    report = check(load_mutant("one_pass_variance"), backend_name="mutant:one_pass_variance", ops=OPS)
    assert len(_unexpected(report.outcomes)) > 20
    return report


# ----------------------------------------------------------------------------- a real failing run


def test_lines_are_short_and_free_of_numpy_reprs(mutant_report):
    r = mutant_report
    text = table(r) + "\n" + failures(r, limit=len(r.outcomes)) + "\n" + failures(r, limit=5)
    too_long = [line for line in text.splitlines() if len(line) > MAX_LINE]
    assert not too_long, too_long[:3]
    assert "np.float64(" not in text and "np.int64(" not in text
    assert "np.float64(" not in json.dumps(r.to_json())
    assert all(isinstance(o.message, str) for o in r.outcomes)


def test_failures_are_grouped_by_case_under_its_description(mutant_report):
    r = mutant_report
    bad = _unexpected(r.outcomes)
    corpus = {c.id: c for c in load_cases(ops=OPS)}
    text = failures(r, limit=len(bad))
    blocks = _blocks(_logical(text))
    case_ids = list(dict.fromkeys(o.case_id for o in bad))
    assert list(blocks) == [f"{i} ({corpus[i].tier}): {corpus[i].description}" for i in case_ids]
    # the description once per failing case: as often as the failing cases that share it
    flat = " ".join(text.split())
    for desc, n in Counter(corpus[i].description for i in case_ids).items():
        assert flat.count(" ".join(desc.split())) == n, desc
    for head, body in blocks.items():
        outcomes = [o for o in bad if head.startswith(f"{o.case_id} (")]
        assert [line for line in body if not line.startswith("    ")] == \
            [f"  {o.status.upper()} {o.function}" for o in outcomes]
        details = [line for line in body if line.startswith("    ")]
        mismatches = [m for o in outcomes for m in o.mismatches]
        assert len(details) == len(mismatches) > 0  # one line per output, even for several outputs of a function
        for line, m in zip(details, mismatches):
            assert line.startswith(f"    {m.output}: {m.n_bad} of {m.size} out of tolerance")
            assert f"at {m.index}: expected {m.expected!r}, got {m.got!r}" in line
    assert any(len(o.mismatches) > 1 for o in bad)  # the run does exercise several outputs per function


def test_cut_off_line_counts_the_rest_and_says_where_all_are(mutant_report):
    r = mutant_report
    total = len(_unexpected(r.outcomes))
    limit = total // 3
    lines = _logical(failures(r, limit=limit))
    assert sum(line.startswith("  ") and not line.startswith("    ") for line in lines) == limit
    (rest,) = re.match(r"\.\.\. and (\d+) more unexpected results", lines[-1]).groups()
    assert int(rest) == total - limit
    assert "--json FILE" in lines[-1]
    with_json = _logical(failures(r, limit=limit, json_path="out/report.json"))[-1]
    assert with_json.startswith(f"... and {total - limit} more") and "out/report.json has all of them" in with_json
    assert "... and" not in failures(r, limit=total)


def test_summary_names_the_dtype_and_tier_that_fail_most(mutant_report):
    r = mutant_report
    lines = table(r).splitlines()
    totals = next(i for i, line in enumerate(lines) if re.match(r"\d+ passed, \d+ failed", line))
    bad = _unexpected(r.outcomes)
    for attr in ("dtype", "tier"):
        want = Counter(getattr(o, attr) for o in bad)
        (i,) = [i for i, line in enumerate(lines) if line.startswith(f"unexpected by {attr}: ")]
        assert i > totals  # under the op x dtype table
        body, most = re.fullmatch(rf"unexpected by {attr}: (.*) \(most: (.*)\)", lines[i]).groups()
        got = [(v, int(n)) for v, n in (item.rsplit(" ", 1) for item in body.split(", "))]
        assert dict(got) == dict(want)
        assert [n for _, n in got] == sorted(want.values(), reverse=True)
        assert set(most.split(" and ")) == {v for v, n in want.items() if n == max(want.values())}
    passing = Report(r.backend, [o for o in r.outcomes if o.status == "passed"], r.seconds, r.options)
    assert "unexpected by" not in table(passing)


def test_summary_ties_are_all_named_in_dtype_order():
    def oc(dtype, tier):
        return Outcome(f"layer_norm/x__{dtype}", "layer_norm", dtype, tier, "layer_norm", "failed")

    dtypes = list(reversed(DTYPE_NAMES[:2]))  # given out of order
    r = Report("b", [oc(dtypes[0], "exact"), oc(dtypes[1], "exact"), oc(dtypes[1], "adversarial"),
                     oc(dtypes[0], "statistical")], 0.0, {})
    lines = table(r).splitlines()
    assert f"(most: {DTYPE_NAMES[0]} and {DTYPE_NAMES[1]})" in lines[-2]
    assert lines[-1].startswith("unexpected by tier: exact 2, ") and lines[-1].endswith("(most: exact)")


# ----------------------------------------------------------------------------- a constructed failure


CASE = "layer_norm/d17_affine__float32"
AT = (3, 11)
DWEIGHT_AT = (7,)


def _constructed():
    """A backend that returns the golden values except: y and dx off by one at
    one element, dweight NaN at one element, and no dbias at all."""
    case = load_case(CASE)
    y = case.expected["y"].copy()
    y[AT] += 1.0
    dx = case.expected["dx"].copy()
    dx[AT] -= 1.0
    dweight = case.expected["dweight"].copy()
    dweight[DWEIGHT_AT] = np.nan
    backend = types.SimpleNamespace(layer_norm=lambda *a, **k: y,
                                    layer_norm_backward=lambda *a, **k: {"x": dx, "weight": dweight})
    outcomes = [check_function(backend, case, fn) for fn in ("layer_norm", "layer_norm_backward")]
    return case, {"y": y, "dx": dx, "dweight": dweight}, Report("constructed", outcomes, 0.0, {})


def _facts(case, name, got, index):
    """What the report must say about one wrong output, from the comparison itself."""
    cmp = compare(case.expected[name], got, case.tolerances[name], case.scales.get(name), dtype=case.dtype)
    assert not cmp.ok and cmp.worst_index == index and cmp.n_bad == 1
    return {"output": name, "n_bad": 1, "size": case.expected[name].size, "index": index,
            "expected": float(case.expected[name][index]), "got": float(got[index]),
            "ratio": cmp.worst_ratio, "ulps": cmp.worst_ulps}


def test_every_fact_of_a_constructed_failure_is_in_the_text():
    case, got, report = _constructed()
    lines = _logical(failures(report))
    assert lines[0] == f"{case.id} ({case.tier}): {case.description}"
    assert lines[1] == "  FAILED layer_norm" and lines[3] == "  FAILED layer_norm_backward"
    # y under layer_norm; dx, dweight, dbias under the backward, one line each
    for line, name, index in ((lines[2], "y", AT), (lines[4], "dx", AT), (lines[5], "dweight", DWEIGHT_AT)):
        f = _facts(case, name, got[name], index)
        assert line.startswith(f"    {name}: ")
        for fact in (f"{f['n_bad']} of {f['size']}", f"at {index}:", f"expected {f['expected']!r}",
                     f"got {f['got']!r}", f"{f['ratio']:.3g} x tolerance", f"({f['ulps']:.3g} ulp)"):
            assert fact in line, (fact, line)
    assert "got nan" in lines[5] and "inf x tolerance" in lines[5]
    assert lines[6].startswith("    dbias: missing") and len(lines) == 7
    # the same lines are the outcome's message (what the pytest plugin prints)
    assert report.outcomes[1].message.splitlines() == [line.strip() for line in lines[4:7]]


def test_every_fact_of_a_constructed_failure_is_in_the_json():
    case, got, report = _constructed()
    data = json.loads(json.dumps(report.to_json()), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    fwd, bwd = data["outcomes"]
    assert (bwd["case_id"], bwd["function"], bwd["status"], bwd["description"]) == \
        (case.id, "layer_norm_backward", "failed", case.description)
    assert bwd["message"] == report.outcomes[1].message  # the existing keys stay
    assert bwd["worst_ratio"] == "inf" and set(bwd["outputs"]) == {"dx", "dweight"}
    by_name = {m["output"]: m for m in fwd["mismatches"] + bwd["mismatches"]}
    assert list(by_name) == ["y", "dx", "dweight", "dbias"]
    for name, index in (("y", AT), ("dx", AT)):
        f = _facts(case, name, got[name], index)
        assert {k: by_name[name][k] for k in f} == {**f, "index": list(index)}  # floats exact: full precision
    f = _facts(case, "dweight", got["dweight"], DWEIGHT_AT)
    assert {k: by_name["dweight"][k] for k in f} == {**f, "index": list(DWEIGHT_AT), "got": "nan", "ratio": "inf",
                                                     "ulps": "inf"}
    assert by_name["dbias"]["note"].startswith("missing") and by_name["dbias"]["index"] is None


def test_long_headers_and_messages_wrap_within_the_width():
    case = max(load_cases(ops=OPS), key=lambda c: len(c.description))
    assert len(case.description) > MAX_LINE  # else this test would not wrap anything
    why = "the kernel raised " + " ".join(f"word{i}" for i in range(60))

    def raising(*a, **k):
        raise RuntimeError(why)

    oc = check_function(types.SimpleNamespace(**{case.op: raising}), case, case.op)
    text = failures(Report("raising", [oc], 0.0, {}))
    assert len(text.splitlines()) > 4 and max(len(line) for line in text.splitlines()) <= MAX_LINE
    assert _logical(text) == [f"{case.id} ({case.tier}): {case.description}", f"  FAILED {case.op}",
                              f"    raised RuntimeError: {why}"]


# ----------------------------------------------------------------------------- through the CLI


def test_cli_cut_off_names_the_json_file_which_has_every_failure(tmp_path, capsys):
    path = tmp_path / "report.json"
    assert main(["check", "--backend", "mutant:eps_outside_sqrt", "--ops", "layer_norm", "--quiet",
                 "--json", str(path)]) == 1
    lines = _logical(capsys.readouterr().out)
    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    bad = _unexpected(types.SimpleNamespace(**o) for o in data["outcomes"])
    limit = inspect.signature(failures).parameters["limit"].default
    assert len(bad) > limit
    assert lines[-1].startswith(f"... and {len(bad) - limit} more ") and lines[-1].endswith(f"{path} has all of them")
    compared = [o for o in bad if "out of tolerance" in o.message]
    assert compared and all(len(o.mismatches) == len(o.message.splitlines()) for o in compared)
    assert all({"output", "index", "expected", "got", "ratio", "ulps", "n_bad", "size"} <= set(m)
               for o in compared for m in o.mismatches)
